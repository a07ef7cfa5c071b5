"""The `kartra` command line, through --fake (an embedded, seeded FakeKartra)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kartra_async.cli import main

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
    script = shutil.which("kartra")
    if script is None:
        pytest.fail("the kartra console script is not installed (pip install -e '.[test]')")
    done = subprocess.run(
        [script, "--fake", "account", "lists"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "Newsletter"
