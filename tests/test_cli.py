"""The `kartra` command line, through --fake (an embedded, seeded FakeKartra)."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from kartra_async import ItemState
from kartra_async._bulk import Journal
from kartra_async.cli import command_line, main
from kartra_async.cli.shell import secrets_note
from kartra_async.testing import FakeKartra, FakeServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "leads.csv"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "leads.csv"
    path.write_text(
        "email,first_name,last_name,cf:company_size,cf:interests\n"
        "ann@example.com,Ann,Lee,11-50,Marketing|Sales\n"
        "ben@example.com,Ben,Ray,200+,\n"
        "broken-email,Cy,Doe,,\n"
        "dan@example.com,Dan,Poe,huge,\n"
        "alice@example.com,Alice,Smith,,\n"
    )
    return path


def test_import_with_fake(csv_file: Path) -> None:
    code, out, _err = run(
        "--fake", "--json", "import", str(csv_file), "--tag", "Customer", "--list", "Newsletter"
    )
    report = json.loads(out)
    assert code == 1  # alice@example.com exists in the demo account: that call failed
    assert (report["ok"], report["failed"], report["ambiguous"]) == (2, {"LeadExistsError": 1}, 0)
    assert report["rejected"] == [
        {
            "number": 4,
            "reason": "email: must be an email address like name@example.com (got 'broken-email')",
        },
        {
            "number": 5,
            "reason": "cf:company_size: 'huge' is not an option (1-10, 11-50, 51-200, 200+)",
        },
    ]
    assert report["problems"][0]["row"] == 6
    assert report["problems"][0]["error"].startswith(
        "LeadExistsError: create_lead (action 0): Lead already exists"
    )


def test_import_update_existing_and_strict(csv_file: Path) -> None:
    code, out, _ = run(
        "--fake", "--json", "import", str(csv_file), "--tag", "VIP", "--update-existing"
    )
    report = json.loads(out)
    assert code == 0
    assert (report["ok"], report["failed"]) == (3, {})
    code, _, _ = run(
        "--fake", "--json", "import", str(csv_file), "--tag", "VIP", "--update-existing", "--strict"
    )
    assert code == 1  # two rows were rejected


def test_import_human_output(csv_file: Path) -> None:
    code, out, err = run(
        "--fake", "import", str(csv_file), "--list", "Newsletter", "--update-existing"
    )
    assert code == 0
    assert "kartra import" in out
    assert "rejected rows" in out
    assert "row 4: email: must be an email address" in err


def test_dry_run_prints_payloads_and_needs_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KARTRA_APP_ID", "KARTRA_API_KEY", "KARTRA_API_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    code, out, err = run("import", str(EXAMPLES), "--tag", "Customer", "--points", "5", "--dry-run")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 296  # 300 rows, 4 rejected (option names need an account to check)
    first = lines[0]
    assert first["row"] == 2
    assert first["payload"]["lead"]["email"] == "zoe.muller0@example.com"
    assert first["payload"]["actions"] == [
        {"cmd": "create_lead"},
        {"cmd": "assign_tag", "tag_name": "Customer"},
        {"cmd": "give_points_to_lead", "points": 5},
    ]
    assert "row 19: email: must be an email address" in err


def test_readme_example_rejects_exactly_the_bad_rows() -> None:
    code, out, err = run(
        "--fake", "import", str(EXAMPLES), "--tag", "Customer", "--list", "Newsletter", "--dry-run"
    )
    assert code == 0
    assert len(out.splitlines()) == 294
    assert err.count("  row ") == 6


def test_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KARTRA_APP_ID", "KARTRA_API_KEY", "KARTRA_API_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run("account", "tags")
    assert code == 2
    assert (
        err == "kartra: error: no credentials: give --app-id or set KARTRA_APP_ID (or use --fake)\n"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("email,nickname\na@b.co,x\n")
    code, _, err = run("--fake", "import", str(bad))
    assert code == 2
    assert "unknown column(s) 'nickname'" in err
    code, _, err = run("--fake", "import", str(tmp_path / "missing.csv"))
    assert (code, err.startswith("kartra: error: cannot read")) == (2, True)
    code, _, _ = run("--fake", "import", str(bad), "--sequence", "Welcome")
    assert code == 2
    code, _, _ = run("--fake", "no-such-command")
    assert code == 2
    code, _, _ = run(
        "--fake",
        "--app-id",
        "A",
        "--api-key",
        "K",
        "--api-password",
        "P",
        "--base-url",
        "http://example.com/api",
        "account",
        "tags",
    )
    assert code == 0  # --fake wins over credentials


def test_credentials_are_never_echoed() -> None:
    code, out, err = run(
        "--app-id", "APPSECRET1", "--api-key", "KEYSECRET1", "--api-password", "PWSECRET1",
        "--base-url", "http://127.0.0.1:9/api", "-vv", "account", "tags",
    )  # fmt: skip
    assert code == 1
    assert "KartraConnectionError" in err
    for secret in ("KEYSECRET1", "PWSECRET1"):
        assert secret not in out + err


def test_lead_and_account_commands() -> None:
    code, out, _ = run("--fake", "--json", "lead", "get", "alice@example.com")
    assert code == 0
    lead = json.loads(out)
    assert (lead["email"], lead["first_name"], lead["tags"]) == (
        "alice@example.com",
        "Alice",
        ["Customer"],
    )
    code, out, _ = run(
        "--fake",
        "--json",
        "lead",
        "apply",
        "bob@example.com",
        "--tag",
        "VIP",
        "--list",
        "Customers",
    )
    assert code == 0
    assert [(a["cmd"], a["ok"]) for a in json.loads(out)] == [
        ("assign_tag", True),
        ("subscribe_lead_to_list", True),
    ]
    code, _, _ = run("--fake", "lead", "apply", "bob@example.com", "--tag", "Nope")
    assert code == 1
    code, _, _err = run("--fake", "lead", "apply", "bob@example.com")
    assert code == 2
    code, out, _ = run("--fake", "account", "tags")
    assert out.splitlines() == ["Customer", "VIP", "Lead Magnet", "Webinar Attendee", "Newsletter"]
    code, out, _ = run("--fake", "--json", "account", "custom-fields")
    assert [f["identifier"] for f in json.loads(out)][:2] == ["company_size", "interests"]
    code, out, _ = run("--fake", "--json", "lead", "get", "nobody@example.com")
    assert code == 1


def test_transactions_and_subscriptions() -> None:
    code, out, _ = run("--fake", "--json", "lead", "get", "alice@example.com")
    sale = json.loads(out)["transactions"][0]["id"]
    code, out, _ = run("--fake", "--json", "transactions", "get", str(sale))
    assert (code, json.loads(out)["transaction_type"]) == (0, "sale")
    code, out, err = run("--fake", "--json", "subscriptions", "get", "1")
    assert code == 1
    assert "SubscriptionNotFoundError" in err


def test_journal_resume(csv_file: Path, tmp_path: Path) -> None:
    journal = tmp_path / "import.db"
    _, out, _ = run("--fake", "--json", "import", str(csv_file), "--journal", str(journal))
    assert json.loads(out)["ok"] == 2
    # a new embedded fake knows nothing, but the journal says these rows are done
    _code, out, _ = run("--fake", "--json", "import", str(csv_file), "--journal", str(journal))
    report = json.loads(out)
    assert (report["ok"], report["skipped"]) == (0, 3)  # 2 done, 1 failed (not retried unasked)


def test_console_script() -> None:
    # the script of this interpreter's environment, not another install's on PATH
    script = shutil.which("kartra", path=str(Path(sys.executable).parent)) or shutil.which("kartra")
    if script is None:
        pytest.fail("the kartra console script is not installed (pip install -e '.[test]')")
    done = subprocess.run(
        [script, "--fake", "account", "lists"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "Newsletter"


# ---- resumable imports: pre-checks, Ctrl-C, counting


CREDENTIALS = {
    "KARTRA_APP_ID": "fake-app",
    "KARTRA_API_KEY": "fake-key",
    "KARTRA_API_PASSWORD": "fake-password",
}


@pytest.fixture
def served() -> Iterator[tuple[FakeKartra, str]]:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    with FakeServer(fake) as url:
        yield fake, url


def leads_csv(path: Path, n: int, domain: str = "example.org") -> Path:
    path.write_text("email,first_name\n" + "".join(f"r{i}@{domain},R{i}\n" for i in range(n)))
    return path


def final_state(fake: FakeKartra, n: int, points: int, domain: str = "example.org") -> None:
    """Every lead present once, with its tag, and its points given exactly once."""
    created: Counter[str] = Counter()
    for r in fake.requests:
        if r.cmds[:1] == ("create_lead",) and json.loads(r.body).get("status") == "Success":
            created[r.lead["email"]] += 1
    assert created == Counter({f"r{i}@{domain}": 1 for i in range(n)})
    for i in range(n):
        lead = fake.lead(f"r{i}@{domain}")
        assert lead is not None
        assert (lead.tags, lead.score(fake.now())) == (["VIP"], points)


def test_import_checks_tags_lists_and_sequences_first(
    served: tuple[FakeKartra, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = served
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    path = leads_csv(tmp_path / "leads.csv", 3)
    code, out, err = run(
        "--base-url", url, "import", str(path), "--tag", "VIP", "--tag", "NoSuchTag",
        "--list", "Nope", "--list", "Newsletter", "--sequence", "Nada", "--step", "1",
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert err == (
        "kartra: error: not in the account: tag 'NoSuchTag', list 'Nope', sequence 'Nada' "
        "(names are case-sensitive); create them in Kartra first. No lead was touched.\n"
    )
    assert [r.cmds for r in fake.requests] == [
        ("retrieve_account_tags",),
        ("retrieve_account_lists",),
        ("retrieve_account_sequences",),
    ]
    code, _, err = run("--fake", "import", str(path), "--tag", "Vip")
    assert code == 2
    assert "tag 'Vip'" in err


def test_every_call_is_counted_lookups_included(
    served: tuple[FakeKartra, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = served
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    path = leads_csv(tmp_path / "leads.csv", 12)
    journal = tmp_path / "import.db"
    argv = ("--json", "--base-url", url, "import", str(path), "--tag", "VIP", "--points", "5")
    code, out, _ = run(*argv, "--journal", str(journal))
    report = json.loads(out)
    assert (code, report["ok"], report["calls"]) == (0, 12, len(fake.requests))
    assert report["calls"] == 1 + 12  # the tag lookup, then one request per row
    assert report["peak_calls_per_second"] >= 1
    with Journal(journal) as j:  # two rows were in flight when the run was cut short
        for email in ("r3@example.org", "r4@example.org"):
            entry = j.get(email)
            assert entry is not None
            j.record(attrs.evolve(entry, state=ItemState.SENT, applied=()))
    before = len(fake.requests)
    code, out, _ = run(*argv, "--journal", str(journal))
    report = json.loads(out)
    assert (code, report["skipped"], report["ambiguous"]) == (1, 10, 2)  # points: unsure
    assert report["calls"] == len(fake.requests) - before == 1 + 2  # the lookups count
    code, out, _ = run(*argv, "--journal", str(journal), "--reconcile")
    report = json.loads(out)
    assert (code, report["ok"], report["reconciled"]) == (0, 2, 2)
    final_state(fake, 12, 5)


def test_resume_flags_need_a_journal(csv_file: Path) -> None:
    for flag in ("--retry-failed", "--reconcile", "--retry-ambiguous", "--adopt-journal"):
        code, _, err = run("--fake", "import", str(csv_file), flag)
        assert code == 2
        assert f"{flag} needs --journal" in err
    code, _, err = run(
        "--fake", "import", str(csv_file), "--journal", "j.db", "--reconcile", "--retry-ambiguous"
    )
    assert (code, err) == (2, "kartra: error: give --reconcile or --retry-ambiguous, not both\n")


def test_the_resume_command_keeps_secrets_out() -> None:
    argv = ["--api-key", "KEYSECRET", "--api-password=PWSECRET", "import", "my leads.csv",
            "--journal", "j.db", "--retry-ambiguous"]  # fmt: skip
    assert command_line(argv) == (
        'kartra --api-key "$KARTRA_API_KEY" --api-password "$KARTRA_API_PASSWORD" import '
        "'my leads.csv' --journal j.db --retry-ambiguous"
    )
    assert command_line(argv, add=["--reconcile"]).endswith("--journal j.db --reconcile")
    # pasted as printed it needs the two variables: the output says so
    assert secrets_note(argv) == (
        "  (secrets are never printed: set KARTRA_API_KEY and KARTRA_API_PASSWORD in the "
        "environment before running it)"
    )
    assert secrets_note(["--fake", "import", "x.csv"]) == ""


def start_import(url: str, path: Path, journal: Path) -> subprocess.Popen[str]:
    code = "import sys; from kartra_async.cli import main; sys.exit(main())"
    argv = ["--base-url", url, "import", str(path), "--tag", "VIP", "--points", "5",
            "--journal", str(journal), "--concurrency", "10"]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **CREDENTIALS},
    )


def wait_for_requests(fake: FakeKartra, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(fake.requests) < count:
        assert time.monotonic() < deadline, "the import never got going"
        time.sleep(0.02)


def resume(text: str, what: str) -> list[str]:
    """The command the CLI printed after `what`, as argv for main()."""
    line = text.split(what, 1)[1].strip().splitlines()[0]
    argv = shlex.split(line)
    assert argv[0] == "kartra"
    return argv[1:]


def test_ctrl_c_finishes_what_is_in_flight_and_prints_the_resume_command(
    served: tuple[FakeKartra, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = served
    fake.faults.latency = (0.3, 0.6)
    n = 60
    path, journal = leads_csv(tmp_path / "leads.csv", n), tmp_path / "import.db"
    process = start_import(url, path, journal)
    wait_for_requests(fake, 15)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert "kartra: stopping: no new rows; finishing the" in err
    assert "not sent (interrupted)" in out
    with Journal(journal) as j:
        states = {e.key: e.state for e in j.entries()}
    assert set(states.values()) == {ItemState.DONE}  # what was in flight finished
    assert 0 < len(states) < n
    argv = resume(err, "interrupted; resume with:")
    assert argv == ["--base-url", url, "import", str(path), "--tag", "VIP", "--points", "5",
                    "--journal", str(journal), "--concurrency", "10"]  # fmt: skip
    fake.faults.latency = None
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    code, out, _ = run("--json", *argv)
    report = json.loads(out)
    assert (code, report["skipped"], report["ok"]) == (0, len(states), n - len(states))
    final_state(fake, n, 5)


def test_a_second_ctrl_c_aborts_and_the_resume_settles_what_was_in_flight(
    served: tuple[FakeKartra, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = served
    fake.faults.latency = (2.0, 3.0)
    n = 40
    path, journal = leads_csv(tmp_path / "leads.csv", n), tmp_path / "import.db"
    process = start_import(url, path, journal)
    wait_for_requests(fake, 1 + 10)  # the tag lookup, then ten rows in flight for 2-3 s
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "not sent (interrupted)" in out
    assert "Traceback" not in err
    assert "kartra: aborting" in err
    with Journal(journal) as j:
        assert {e.state for e in j.entries()} == {ItemState.SENT}
    argv = resume(err, "aborted; resume with:")
    fake.faults.latency = None
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(*argv)
    # the ten rows were applied, their answers lost: the lead exists, the points may not
    assert code == 1
    assert err.count("may or may not have been applied") == 10 + 1
    settle = resume(err, "it may apply it twice):")
    assert settle == [*argv, "--reconcile"]
    code, _, err = run(*settle)
    assert code == 0, err
    final_state(fake, n, 5)
