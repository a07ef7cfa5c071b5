"""The parts of the `kartra` command: rows (CSV -> lead fields), output (tables, JSON,
wrapped notes), the progress meter, the parser (global flags anywhere), the dry run
without a client, and AsyncKartra.from_env's overrides the CLI relies on."""

from __future__ import annotations

import inspect
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import kartra_async._client
import kartra_async.cli.importing
from kartra_async import AsyncKartra
from kartra_async._bulk import Summary
from kartra_async.cli import build_parser, main
from kartra_async.cli.commands import template
from kartra_async.cli.output import (
    Meter,
    Output,
    ProgressBar,
    clock_text,
    rate_text,
    remaining_text,
    wrap,
)
from kartra_async.cli.rows import Rejected, Row, UsageError, read_sheet, to_rows
from kartra_async.errors import KartraValidationError
from kartra_async.models import CustomField, CustomFieldType, FieldOption

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "leads.csv"
CREDENTIALS = ("KARTRA_APP_ID", "KARTRA_API_KEY", "KARTRA_API_PASSWORD", "KARTRA_BASE_URL")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# ---- rows


def sheet(text: str) -> tuple[list[Row], list[Rejected]]:
    return to_rows(read_sheet(io.StringIO(textwrap.dedent(text)), "leads.csv"), None)


def test_rows_are_lead_fields_and_rejections_carry_their_line() -> None:
    rows, rejected = sheet(
        """\
        Email,First_Name,cf:size
        ann@example.com, Ann ,10

        ,Nobody,
        ANN@example.com,Again,
        ben@example.com,,
        """
    )
    assert rows == [
        Row(2, "ann@example.com", {"first_name": "Ann", "custom_fields": {"size": "10"}}),
        Row(5, "ben@example.com", {}),
    ]
    assert rejected == [
        Rejected(3, "email is empty"),
        Rejected(4, "ANN@example.com appears twice in the file"),
    ]


def test_a_header_that_will_not_do_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"leads.csv: no 'email' column \(columns: Name\)"):
        read_sheet(io.StringIO("Name\nx\n"), "leads.csv")
    with pytest.raises(UsageError, match="unknown column\\(s\\) 'Nickname'"):
        read_sheet(io.StringIO("email,Nickname\na@b.co,x\n"), "leads.csv")


def test_option_names_become_ids_with_the_accounts_fields() -> None:
    options = [FieldOption(id=7, value="Small"), FieldOption(id=8, value="Large")]
    defs = {
        "size": CustomField(
            id=1, identifier="size", type=CustomFieldType.CHECKBOX, options=options
        ),
        "pick": CustomField(
            id=2, identifier="pick", type=CustomFieldType.DROP_DOWN, options=options
        ),
        "note": CustomField(id=3, identifier="note", type=CustomFieldType.TEXT_AREA),
    }
    parsed = read_sheet(
        io.StringIO(
            "email,cf:size,cf:pick,cf:note,cf:other\n"
            "a@b.co,small|8,Large,Small|x,\n"
            "b@b.co,,,,x\n"
            "c@b.co,Medium,,,\n"
            "d@b.co,,7|8,,\n"
        ),
        "f",
    )
    rows, rejected = to_rows(parsed, defs)
    assert rows == [
        Row(2, "a@b.co", {"custom_fields": {"size": [7, 8], "pick": 8, "note": "Small|x"}}),
    ]
    assert rejected == [
        Rejected(3, "cf:other: no such custom field in the account"),
        Rejected(4, "cf:size: 'Medium' is not an option (Small, Large)"),
        Rejected(5, "cf:pick: only one option allowed"),
    ]


def test_a_bad_time_zone_is_named_whole_with_the_closest_ones() -> None:
    _, rejected = sheet(
        """\
        email,lead_preferred_time_zone
        a@b.co,Pacific/Hono
        b@b.co,Mars/Olympus_Mons
        c@b.co,Europe/London
        """
    )
    assert [r.reason for r in rejected] == [
        "lead_preferred_time_zone: 'Pacific/Hono' is not a Kartra time zone; did you mean "
        "'Pacific/Honolulu'?",
        "lead_preferred_time_zone: 'Mars/Olympus_Mons' is not a Kartra time zone; one of "
        "Kartra's 76 time zones, such as 'America/New_York' or 'Europe/London'",
    ]


def test_the_file_is_opened_once(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: object, **kwargs: object) -> object:
        if self == EXAMPLES:
            opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", counting_open)
    code, _, _ = run("--fake", "import", str(EXAMPLES), "--tag", "Customer", "--dry-run")
    assert (code, opened) == (0, [EXAMPLES])


# ---- output


def test_wrap_breaks_between_words_only() -> None:
    reason = (
        "row 103: lead_preferred_time_zone: must be one of 'America/Los_Angeles', "
        "'America/Boise', 'America/Argentina/Buenos_Aires', 'Pacific/Honolulu' (got 'Mars')"
    )
    text = wrap(f"  {reason}", 40)
    lines = text.splitlines()
    assert len(lines) > 1
    assert all(line.startswith("    ") for line in lines[1:])
    assert " ".join(line.strip() for line in lines) == reason  # every word whole
    assert wrap("x" * 60, 40) == "x" * 60  # a word longer than a line is not cut


def test_rejected_reasons_are_never_cut_mid_word(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    long_name = "Pacific/" + "Hono" * 30
    path.write_text(f"email,lead_preferred_time_zone\na@b.co,{long_name}\nb@b.co,Mars/Base\n")
    code, _, err = run("--fake", "import", str(path), "--dry-run")
    assert code == 0
    lines = err.splitlines()
    assert lines[0] == "2 row(s) rejected:"
    assert "..." not in err
    first = " ".join(line.strip() for line in lines[1:-2])
    assert first == (
        f"row 2: lead_preferred_time_zone: {long_name!r} is not a Kartra time zone; one of "
        "Kartra's 76 time zones, such as 'America/New_York' or 'Europe/London'"
    )
    for line in lines:
        assert len(line) <= 100 or " " not in line.strip()


def test_listings_are_tables_or_json() -> None:
    code, out, _ = run("--fake", "account", "custom-fields")
    assert code == 0
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0].split() == ["id", "identifier", "type", "options", "(id)"]
    assert lines[2].split(maxsplit=3) == [
        "1004", "company_size", "drop_down", "1-10 (1005), 11-50 (1006), 51-200 (1007), 200+ (1008)",
    ]  # fmt: skip
    assert lines[-1].split() == ["1017", "referral_code", "input_field"]
    assert "{" not in out
    assert "CustomField(" not in out
    code, out, _ = run("--fake", "account", "custom-fields", "--json")
    fields = json.loads(out)
    assert fields[0] == {
        "id": 1004,
        "identifier": "company_size",
        "type": "drop_down",
        "options": [
            {"id": 1005, "value": "1-10"},
            {"id": 1006, "value": "11-50"},
            {"id": 1007, "value": "51-200"},
            {"id": 1008, "value": "200+"},
        ],
    }
    for what, first in [
        ("tags", "Customer"), ("lists", "Newsletter"), ("sequences", "Welcome"), ("pages", "Home"),
    ]:  # fmt: skip
        code, out, _ = run("--fake", "account", what, "--json")
        names = json.loads(out)
        assert (code, names[0]) == (0, first)
        code, out, _ = run("--fake", "account", what)
        assert out.splitlines() == names  # a list of names: one per line


def test_a_record_is_a_field_value_table_then_a_table_per_list() -> None:
    code, out, _ = run("--fake", "lead", "get", "alice@example.com")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["email"] == ["alice@example.com"]
    assert rows["first_name"] == ["Alice"]
    assert rows["tags"] == ["Customer"]
    assert rows["blacklisted"] == ["no"]
    assert "middle_name" not in rows  # empty fields are left out
    assert rows["transactions"] == []  # the title of its own table
    assert rows["Customers"] == ["yes"]  # lists: name, active
    assert "{" not in out
    assert "Lead(" not in out
    code, out, _ = run(
        "--fake", "lead", "apply", "bob@example.com", "--tag", "VIP", "--tag", "Nope"
    )
    assert code == 1
    assert [line.split()[:3] for line in out.splitlines()] == [
        ["cmd", "ok", "code"],
        ["─" * len(out.splitlines()[1].rstrip())],
        ["assign_tag", "yes", "103"],
        ["assign_tag", "no", "212"],
    ]


def test_output_shows_plain_values() -> None:
    out, err = io.StringIO(), io.StringIO()
    Output(False, out, err).show(12)
    Output(True, out, err).show({"when": None})
    assert out.getvalue() == '12\n{\n  "when": null\n}\n'


# ---- progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_is_sensible_from_the_first_reading() -> None:
    """Issue 19: the first reading said `19/294 2132.3/s`, then `73.2/s` (20 calls/s)."""
    clock = Clock()
    meter = Meter(clock)
    assert (meter.rate, rate_text(meter), remaining_text(meter, 294)) == (
        None,
        "-- calls/s",
        "-:--:--",
    )
    for i in range(3):  # the limiter paces grants: one call every 50 ms
        clock.now = 100.0 + i * 0.05
        meter.tick()
    clock.now += 0.01  # the first reading, right after the third call
    assert meter.rate == pytest.approx(20.0)
    assert rate_text(meter) == "20.0 calls/s"
    assert meter.remaining(291) == pytest.approx(14.55)
    assert remaining_text(meter, 291) == "0:00:15"
    for i in range(3, 200):
        clock.now = 100.0 + i * 0.05
        meter.tick()
    assert meter.rate == pytest.approx(20.0)


def test_a_burst_then_a_wait_does_not_read_as_a_huge_rate() -> None:
    clock = Clock()
    meter = Meter(clock)
    for i in range(20):  # twenty calls in 10 ms, then nothing for a second
        clock.now = 100.0 + i * 0.0005
        meter.tick()
    clock.now = 100.2  # the first answers
    rate = meter.rate
    assert rate is not None
    assert rate < 100
    clock.now = 101.0
    assert meter.rate == pytest.approx(19 / 0.9995, rel=1e-3)
    clock.now = 105.0  # a stall: the rate falls, the time remaining grows
    assert meter.rate == pytest.approx(19 / 4.9995, rel=1e-3)
    assert remaining_text(meter, 38) == "0:00:10"


def test_clock_text() -> None:
    assert [clock_text(s) for s in (None, 0.0, 59.6, 3725.0)] == [
        "-:--:--",
        "0:00:00",
        "0:01:00",
        "1:02:05",
    ]


# ---- parser: global flags before or after the subcommand


@pytest.mark.parametrize(
    "argv",
    [
        ["--fake", "--json", "account", "tags"],
        ["account", "tags", "--fake", "--json"],
        ["--fake", "account", "tags", "--json"],
        ["--json", "account", "--fake", "tags"],
    ],
)
def test_global_flags_go_before_or_after_the_subcommand(argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    assert json.loads(out) == ["Customer", "VIP", "Lead Magnet", "Webinar Attendee", "Newsletter"]


def test_global_flags_after_nested_subcommands() -> None:
    code, out, _ = run("lead", "get", "alice@example.com", "--fake", "--json")
    assert (code, json.loads(out)["email"]) == (0, "alice@example.com")
    code, out, _ = run("lead", "apply", "bob@example.com", "--tag", "VIP", "--fake", "-v")
    assert code == 0
    code, out, _ = run("transactions", "get", "1022", "--json", "--fake")
    assert (code, json.loads(out)["transaction_type"]) == (0, "sale")
    args = build_parser().parse_args(["-v", "account", "tags", "--app-id", "A"])
    assert (args.verbose, args.app_id, args.fake, args.json) == (1, "A", False, False)
    args = build_parser().parse_args(["--app-id", "A", "account", "tags"])
    assert args.app_id == "A"  # not reset by the subcommand's parser


def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kartra_async.cli", "account", "lists", "--fake"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.splitlines()[:2]) == (0, ["Newsletter", "Customers"])


# ---- dry run: no client at all


def test_a_dry_run_without_credentials_makes_no_client_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run made an AsyncKartra")

    async def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run sent a request")

    monkeypatch.setattr(kartra_async._client.AsyncKartra, "__init__", no_client)
    monkeypatch.setattr(httpx.AsyncClient, "send", no_request)
    monkeypatch.setattr(httpx.AsyncBaseTransport, "handle_async_request", no_request)
    code, out, err = run("import", str(EXAMPLES), "--tag", "Customer", "--dry-run", "--strict")
    assert code == 1  # --strict: rows were rejected
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 296
    assert lines[1] == {
        "row": 3,
        "payload": {
            "lead": {
                "email": "mateo.tanaka1@example.com",
                "first_name": "Mateo",
                "last_name": "Tanaka",
                "phone": "5552441955",
                "city": "Austin",
                "country": "US",
                "lead_preferred_time_zone": "America/Chicago",
                "custom_fields": [
                    {"field_identifier": "company_size", "field_value": "200+"},
                    {"field_identifier": "interests", "field_value": "Marketing|Support"},
                ],
            },
            "actions": [{"cmd": "create_lead"}, {"cmd": "assign_tag", "tag_name": "Customer"}],
        },
    }
    assert err.startswith("4 row(s) rejected:\n  row 19: email: must be an email address")


@pytest.mark.anyio
async def test_a_template_cannot_be_sent() -> None:
    chain = template("a@b.co").create(first_name="A").assign_tag("VIP")
    assert chain.payload == {
        "lead": {"email": "a@b.co", "first_name": "A"},
        "actions": [{"cmd": "create_lead"}, {"cmd": "assign_tag", "tag_name": "VIP"}],
    }
    with pytest.raises(RuntimeError, match="a dry run sends nothing"):
        await chain
    with pytest.raises(KartraValidationError):
        template("not an email")


# ---- AsyncKartra.from_env(**overrides)


@pytest.mark.anyio
async def test_from_env_overrides_win_and_make_their_variable_optional(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KARTRA_APP_ID", "from-env")
    monkeypatch.setenv("KARTRA_BASE_URL", "http://127.0.0.1:9/api")
    async with AsyncKartra.from_env(api_key="K", api_password="P", timeout=3.0) as kartra:
        assert (kartra.app_id, kartra.base_url) == ("from-env", "http://127.0.0.1:9/api")
    async with AsyncKartra.from_env(
        app_id="given", api_key="K", api_password="P", base_url="http://127.0.0.1:8/api",
        limiter=None, deadline=5.0,
    ) as kartra:  # fmt: skip
        assert (kartra.app_id, kartra.base_url, kartra.limiter, kartra.deadline) == (
            "given",
            "http://127.0.0.1:8/api",
            None,
            5.0,
        )
    with pytest.raises(KartraValidationError) as caught:
        AsyncKartra.from_env(app_id="given", api_key="K")
    assert caught.value.field == "KARTRA_API_PASSWORD"


def test_from_env_takes_every_keyword_the_constructor_takes() -> None:
    made = inspect.signature(AsyncKartra.__init__).parameters
    read = inspect.signature(AsyncKartra.from_env).parameters
    assert list(read) == [p for p in made if p != "self"]
    for name, param in read.items():
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        if name in ("app_id", "api_key", "api_password", "base_url"):
            assert param.default is None  # None: from the environment
        else:
            assert (param.default, param.annotation) == (made[name].default, made[name].annotation)


def test_the_cli_reads_credentials_through_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    real = AsyncKartra.from_env.__func__  # type: ignore[attr-defined]

    def spy(cls: type[AsyncKartra], **overrides: object) -> AsyncKartra:
        seen.update(overrides)
        return real(cls, **overrides)  # type: ignore[no-any-return]

    monkeypatch.setattr(AsyncKartra, "from_env", classmethod(spy))
    monkeypatch.setenv("KARTRA_API_KEY", "K")
    monkeypatch.setenv("KARTRA_API_PASSWORD", "P")
    code, _, err = run("account", "tags", "--app-id", "A", "--base-url", "http://127.0.0.1:9/api")
    assert code == 1
    assert "KartraConnectionError" in err
    assert (seen["app_id"], seen["api_key"], seen["base_url"]) == (
        "A",
        None,
        "http://127.0.0.1:9/api",
    )


def test_the_progress_bar_shows_the_meters_rate_and_time_left() -> None:
    err = io.StringIO()
    output = Output(False, io.StringIO(), err)
    output.err_console = Console(file=err, force_terminal=True, width=120)
    clock = Clock()
    meter = Meter(clock)
    for i in range(3):
        clock.now = 100.0 + i * 0.05
        meter.tick()
    clock.now += 0.01
    with ProgressBar(output, 294, "import", meter) as update:
        update(Summary(ok=18, failed={"LeadExistsError": 1}))
    text = err.getvalue()
    assert "19/294" in text
    assert "20.0 calls/s" in text
    assert "0:00:14" in text  # 275 rows at 20 calls/s
    assert "ok 18 failed 1" in text
    quiet = io.StringIO()  # not a terminal: no bar at all
    with ProgressBar(Output(False, io.StringIO(), quiet), 294, "import", meter) as update:
        update(Summary(ok=1))
    assert quiet.getvalue() == ""


def test_the_meters_window_starts_at_the_phases_first_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meters: list[Meter] = []

    class Recorded(Meter):
        def __init__(self) -> None:
            super().__init__()
            meters.append(self)

    monkeypatch.setattr(kartra_async.cli.importing, "Meter", Recorded)
    path = tmp_path / "leads.csv"
    path.write_text("email,cf:company_size\na@b.co,1-10\nb@b.co,\nalice@example.com,\n")
    code, _, _ = run("--fake", "import", str(path), "--tag", "VIP", "--update-existing")
    assert code == 0
    # the custom field and tag lookups came before: not in the window; then 3 creates,
    # then the edit of the lead that existed, in a phase of its own
    assert [m.calls for m in meters] == [3, 1]


def test_a_note_on_a_terminal_goes_above_the_progress_bar_not_onto_it() -> None:
    from rich.progress import Progress

    err = io.StringIO()
    output = Output(False, io.StringIO(), err)
    output.err_console = Console(file=err, force_terminal=True, width=60, color_system=None)
    with Progress(console=output.err_console, auto_refresh=False) as bar:
        bar.add_task("import", total=10, completed=3)
        bar.refresh()
        output.note("kartra: stopping: no new rows")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.getvalue())
    lines = [line.strip() for line in plain.replace("\r", "\n").splitlines()]
    assert "kartra: stopping: no new rows" in lines  # a line of its own
