"""The documentation agrees with the code: the exception table, the API reference's
coverage of the public names, and the release files.

`python tests/test_docs_pages.py` rewrites the generated exception table in place.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import kartra_async
from kartra_async import AsyncKartra, LeadChain, errors
from kartra_async._chain import AccountCalls, SubscriptionCalls, TransactionCalls
from kartra_async._commands import COMMANDS, Scope
from kartra_async._constants import USER_AGENT
from kartra_async.testing import FAULT_KINDS

ROOT = Path(__file__).resolve().parent.parent
CHAINS_PAGE = ROOT / "docs" / "guides" / "chains-and-results.md"
TABLE = re.compile(r"(<!-- errors-table -->\n)(.*?)(<!-- /errors-table -->)", re.S)

#: What `await` does for the classes that carry no Kartra code (hand-written: each is raised
#: by its own code path, not by an answer's code).
NOT_FROM_A_CODE = {
    "KartraError": "The base class: `except KartraError` catches everything kartra_async raises.",
    "KartraValidationError": (
        "**before**: raised before anything is sent, by the method given the bad value "
        "(or by `await`)."
    ),
    "KartraConnectionError": (
        "**raises**: the HTTP exchange failed; `.request_sent` is False when Kartra cannot "
        "have seen the call."
    ),
    "KartraTimeoutError": "**raises**: the HTTP exchange timed out.",
    "KartraResponseError": (
        "**raises**: the answer is not a Kartra answer (`.status_code`, `.excerpt`)."
    ),
    "KartraDecodeError": (
        "**raises**: the answer was read, but its data does not fit the model (`.model`; "
        "`.reason` gives each problem's path)."
    ),
    "KartraServerError": "**raises**: Kartra answered HTTP 5xx.",
    "RateLimitError": (
        "**raises**: Kartra still answered HTTP 429 after the client's resends; nothing was "
        "applied."
    ),
    "AmbiguousResultError": (
        "**raises**: a write may have been applied, and sending it again could apply it "
        "twice; the message says how to check."
    ),
    "KartraWebhookError": (
        "Never from `await`: `parse_event()` and `parse_ipn()` raise it for a body that is "
        "not Kartra's."
    ),
    "ChainError": (
        "Never from `await`: `result.raise_for_errors()` raises it, holding every failed "
        "action's error."
    ),
    "JournalError": (
        "**raises** from `fan_out` / `kartra import`: the journal file is empty or not a journal."
    ),
    "JournalLockedError": "**raises** at once: another job is using the journal.",
    "JournalMismatchError": (
        "**raises**: the journal belongs to a different job (`adopt_journal=True` continues)."
    ),
    "JournalLostError": "**raises**: the journal was deleted or replaced under the running job.",
    "LimiterUnavailableError": (
        "**raises**: the shared (Redis) rate limiter did not answer within its timeout; "
        "nothing was sent."
    ),
    "KartraAPIError": (
        "The base class of Kartra's errors; raised as itself for a code Kartra's "
        "documentation does not list."
    ),
    "NotFoundError": "The base class of the not-found errors below.",
    "AlreadyExistsError": "The base class of the already-exists errors below.",
}

#: Errors about the lead the call names: Kartra looks the lead up (or creates it) before
#: it runs any action, so they fail the whole call.
LEAD_ERRORS = (errors.LeadNotFoundError, errors.LeadExistsError, errors.LeadDeletedError)

RAISES = "**raises**"
IN_RESULT = "**in the result**"


def await_raises(code: int) -> bool:
    """True when `await` raises the error for `code` however long the chain is: Kartra
    answers it for the call as a whole (codes no command lists: credentials, request
    format, permissions; the lead-naming commands' codes; the lead's own errors), or only
    account-wide commands answer it, and those go out one action per call. False when a
    lead action answers it: it is that action's failure, in the result."""
    if issubclass(errors.ERROR_CODES[code].cls, LEAD_ERRORS):
        return True
    owners = [c for c in COMMANDS.values() if code in c.error_codes]
    return not any(c.scope is Scope.LEAD and not c.starts_chain for c in owners)


def _tree() -> list[tuple[int, type[errors.KartraError]]]:
    """The exception classes of kartra_async.errors, depth first in definition order."""
    public = {getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    out: list[tuple[int, type[errors.KartraError]]] = []

    def walk(cls: type[errors.KartraError], depth: int) -> None:
        out.append((depth, cls))
        for sub in cls.__subclasses__():
            if sub in public:
                walk(sub, depth + 1)

    walk(errors.KartraError, 0)
    return out


def _codes(codes: list[int]) -> str:
    return " ".join(str(c) for c in sorted(codes))


def errors_table() -> str:
    """The markdown table of every exception class and what `await` does with it."""
    lines = ["| Exception | Kartra codes | What `await` does |", "|---|---|---|"]
    for depth, cls in _tree():
        name = cls.__name__
        link = f"{'&emsp;' * depth}[`{name}`][kartra_async.errors.{name}]"
        codes = [e.code for e in errors.ERROR_CODES.values() if e.cls is cls]
        if not codes:
            lines.append(f"| {link} | | {NOT_FROM_A_CODE[name]} |")
            continue
        whole = [c for c in codes if await_raises(c)]
        action = [c for c in codes if not await_raises(c)]
        if not action:
            lines.append(f"| {link} | {_codes(whole)} | {RAISES} |")
        elif not whole:
            lines.append(f"| {link} | {_codes(action)} | {IN_RESULT} |")
        else:
            lines.append(
                f"| {link} | {_codes(action)}<br>{_codes(whole)} | {IN_RESULT}<br>{RAISES} |"
            )
    return "\n".join(lines) + "\n"


def test_the_exception_table_matches_the_code() -> None:
    found = TABLE.search(CHAINS_PAGE.read_text(encoding="utf-8"))
    assert found, f"{CHAINS_PAGE}: the <!-- errors-table --> markers are missing"
    assert found.group(2) == errors_table(), (
        "the exception table in docs/guides/chains-and-results.md is out of date: "
        "run `python tests/test_docs_pages.py` and review the change"
    )


def test_every_exception_class_and_code_is_in_the_table() -> None:
    table = errors_table()
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.KartraError):
            assert f"[`{name}`]" in table
    for code in errors.ERROR_CODES:
        assert re.search(rf"\b{code}\b", table), code


def test_the_rule_puts_the_known_cases_where_the_issue_says() -> None:
    """A missing tag is an action's failure; a missing or existing lead, bad credentials,
    a malformed request and an account call's failure raise."""
    for code in (212, 209, 259, 227):
        assert not await_raises(code), code
    for code in (243, 234, 244, 245, 233, 239, 224, 262, 271, 247, 264, 283):
        assert await_raises(code), code


# --------------------------------------------------------------------------- reference


def _directives(page: str) -> set[str]:
    text = (ROOT / "docs" / "reference" / page).read_text(encoding="utf-8")
    return set(re.findall(r"^::: ([\w.]+)", text, re.M))


def test_the_reference_covers_every_public_name() -> None:
    """docs/reference/kartra_async.md lists its members one by one; every name in
    kartra_async.__all__ is there, or is an errors name (rendered on errors.md)."""
    listed = {d.removeprefix("kartra_async.") for d in _directives("kartra_async.md")}
    missing = [
        name for name in kartra_async.__all__ if name not in listed and name not in errors.__all__
    ]
    assert not missing, f"add to docs/reference/kartra_async.md: {missing}"
    stale = listed - set(kartra_async.__all__) - {"kartra_async"}
    assert not stale, f"no longer public, remove from docs/reference/kartra_async.md: {stale}"


def test_the_reference_renders_only_public_modules() -> None:
    """Each public module has its page, and no page renders a private name."""
    directives = set()
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        directives |= _directives(page.name)
    private = [d for d in directives if any(part.startswith("_") for part in d.split("."))]
    assert not private
    assert {
        "kartra_async",
        "kartra_async.errors",
        "kartra_async.models",
        "kartra_async.webhooks",
        "kartra_async.limits",
        "kartra_async.testing",
        "kartra_async.fastapi",
    } <= directives


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w/.-]+\.md)\s*$", config, re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert nav == pages


# --------------------------------------------------------------------------- release


PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def _table(name: str) -> str:
    """The body of one [table] of pyproject.toml (the suite runs on 3.10: no tomllib)."""
    found = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", PYPROJECT, re.M | re.S)
    assert found, name
    return found.group(1)


def test_license_matches_pyproject() -> None:
    assert re.search(r'^license = "MIT"$', _table("project"), re.M)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")


def test_the_version_is_written_once() -> None:
    project = _table("project")
    assert not re.search(r"^version\s*=", project, re.M)
    assert re.search(r'^dynamic = \["version"\]$', project, re.M)
    assert _table("tool.hatch.version").strip() == 'path = "kartra_async/_version.py"'
    assert f"kartra-async/{kartra_async.__version__}" == USER_AGENT
    written = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "kartra_async").rglob("*.py")
        if kartra_async.__version__ in p.read_text(encoding="utf-8")
    ]
    assert written == ["kartra_async/_version.py"]


def test_changelog_keeps_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "keepachangelog.com" in text
    assert re.search(r"^## \[Unreleased\]$", text, re.M)


def test_project_urls() -> None:
    urls = dict(re.findall(r'^(\w+) = "(https://[^"]+)"$', _table("project.urls"), re.M))
    assert set(urls) == {"Documentation", "Changelog", "Source", "Issues"}
    # one project address everywhere: the site's repo_url and site_url are pyproject's
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    site = re.search(r"^site_url: (\S+)$", config, re.M)
    repo = re.search(r"^repo_url: (\S+)$", config, re.M)
    assert site
    assert repo
    assert urls["Documentation"] == site[1]
    assert urls["Source"] == repo[1]
    assert urls["Issues"] == f"{repo[1]}/issues"
    assert urls["Changelog"] == f"{repo[1]}/blob/main/CHANGELOG.md"
    # the pages' links to the repository's files use the same address
    for page in (ROOT / "docs").rglob("*.md"):
        for link in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", page.read_text("utf-8")):
            assert link == repo[1], (page.name, link)


if __name__ == "__main__":
    text = CHAINS_PAGE.read_text(encoding="utf-8")
    new = TABLE.sub(lambda m: m.group(1) + errors_table() + m.group(3), text)
    CHAINS_PAGE.write_text(new, encoding="utf-8")
    print("updated" if new != text else "up to date", CHAINS_PAGE.relative_to(ROOT))


# --------------------------------------------------------------------------- hand-written tables


def _rows(page: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with `header`."""
    lines = (ROOT / "docs" / page).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_fault_table_matches_fault_kinds() -> None:
    rows = _rows("guides/testing.md", "Kind")
    documented = {row[0].strip("`"): row[2] == "yes" for row in rows}
    assert documented == FAULT_KINDS


def test_the_chain_method_table_names_real_methods_and_commands() -> None:
    rows = _rows("guides/chains-and-results.md", "Method")
    methods = [m for row in rows for m in re.findall(r"`(\w+)\(", row[0])]
    cmds = [c for row in rows for c in re.findall(r"`(\w+)`", row[1])]
    assert len(methods) == len(cmds)
    for method, cmd in zip(methods, cmds, strict=True):
        assert callable(getattr(LeadChain, method)), method
        assert cmd in COMMANDS, cmd
    lead_cmds = {c.name for c in COMMANDS.values() if c.scope is Scope.LEAD}
    assert set(cmds) == lead_cmds


def test_the_account_call_table_names_real_methods_commands_and_types() -> None:
    """Every account-wide command (and get_lead) has its row; each row's methods exist
    and return what the row says."""
    owners = {
        "kartra": AsyncKartra,
        "account": AccountCalls,
        "transactions": TransactionCalls,
        "subscriptions": SubscriptionCalls,
    }
    rows = _rows("guides/chains-and-results.md", "Call")
    cmds = set()
    for call, cmd, returns in rows:
        names = re.findall(r"`(?:kartra\.)?(?:(\w+)\.)?(\w+)\(", call)
        assert names, call
        owner = "kartra"
        for prefix, method in names:
            owner = prefix or owner
            annotation = inspect.signature(getattr(owners[owner], method)).return_annotation
            assert f"`{annotation}`" == returns, (call, method)
        name = cmd.strip("`")
        assert name in COMMANDS, name
        cmds.add(name)
    wanted = {c.name for c in COMMANDS.values() if c.scope is not Scope.LEAD}
    assert cmds == wanted


def test_the_extras_table_names_real_extras() -> None:
    rows = _rows("getting-started.md", "Extra")
    extras = _table("project.optional-dependencies")
    for row in rows:
        assert re.search(rf"^{row[0].strip('`')} = \[", extras, re.M), row[0]


def test_the_server_options_table_matches_the_parser() -> None:
    """docs/guides/http-fake.md lists every option of `python -m kartra_async.testing`,
    in the parser's order, with its default."""
    from kartra_async.testing.__main__ import build_fake, parser

    rows = _rows("guides/http-fake.md", "Option")
    actions = [a for a in parser()._actions if a.option_strings and a.dest != "help"]
    assert [row[0].strip("`") for row in rows] == [a.option_strings[-1] for a in actions]
    # --app-id's default is applied when the fake is built
    assert list(build_fake(parser().parse_args([])).app_ids) == ["fake-app"]
    for row, action in zip(rows, actions, strict=True):
        default = "fake-app" if action.dest == "app_ids" else action.default
        if default in (None, False):
            assert row[1] == "", row
        elif isinstance(default, list):
            assert row[1] == f"`{default[0]}`", row
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert row[1] == f"`{shown}`", row
