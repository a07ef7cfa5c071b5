"""The `kartra` command line (`pip install 'kartra-async[cli]'`).

    kartra --fake import examples/leads.csv --tag Customer --list Newsletter
    kartra lead get john@example.com
    kartra account tags

Credentials come from --app-id/--api-key/--api-password (or KARTRA_APP_ID,
KARTRA_API_KEY, KARTRA_API_PASSWORD, KARTRA_BASE_URL) and are never printed; --fake runs
against an embedded FakeKartra seeded with a demo account, so everything works offline.
Exit codes: 0 everything went through, 1 a call failed or was ambiguous (or, with
--strict, a row was rejected), 2 a usage error (a tag, list or sequence that is not in
the account included), 130 interrupted.

`kartra import --journal FILE` can be resumed: Ctrl-C once stops starting rows, lets the
requests in flight finish, writes the journal and prints the command that resumes it
(twice aborts at once); the same command later sends what was not sent, skips what was
done and looks up what was in flight. --retry-failed, --reconcile and --retry-ambiguous
move on what an earlier run left failed or ambiguous.
"""

from __future__ import annotations

import argparse
import csv
import enum
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.abc
import attrs
import httpx

from .._bulk import CallClock, FanOut, ItemState, Outcome, Summary
from .._chain import LeadChain
from .._client import AsyncKartra
from .._commands import LEAD_FIELDS
from .._constants import DEFAULT_LIMITS
from ..errors import KartraError, KartraValidationError, LeadExistsError, LeadNotFoundError
from ..limits import Limiter
from ..models import CustomField, CustomFieldType

__all__ = ["main"]

_LEAD_COLUMNS = ("email", *(p.name for p in LEAD_FIELDS if p.name != "custom_fields"))


class UsageError(Exception):
    """Bad input on the command line: exit status 2, a one-line message, no traceback."""


# ---- output


def jsonable(value: Any) -> Any:
    """Models, dates, Decimals and enums as plain JSON values."""
    if attrs.has(type(value)):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if f.name != "raw"
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


class Output:
    """Human (rich, when installed) or --json output; progress goes to stderr."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out, self.err = out, err
        try:
            from rich.console import Console

            self.console: Any = Console(file=out, soft_wrap=True)
            self.err_console: Any = Console(file=err)
        except ImportError:  # pragma: no cover - the cli extra is missing
            self.console = self.err_console = None

    def data(self, value: Any, title: str = "") -> None:
        if self.as_json:
            print(json.dumps(jsonable(value), indent=2), file=self.out)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            for line in value:
                print(line, file=self.out)
        elif self.console is not None:
            self.console.print(jsonable(value) if not isinstance(value, str) else value)
        else:
            print(json.dumps(jsonable(value), indent=2), file=self.out)

    def note(self, text: str) -> None:
        print(text, file=self.err)


# ---- the import


@attrs.frozen
class Row:
    number: int  #: line number in the file (the header is line 1)
    email: str
    fields: dict[str, Any]


@attrs.define
class Rejected:
    number: int
    reason: str


def _option_ids(definition: CustomField, raw: str) -> int | list[int]:
    by_name = {o.value.casefold(): o.id for o in definition.options}
    ids = []
    for part in [p.strip() for p in raw.split("|") if p.strip()]:
        if part.isdigit() and int(part) in {o.id for o in definition.options}:
            ids.append(int(part))
        elif part.casefold() in by_name:
            ids.append(by_name[part.casefold()])
        else:
            names = ", ".join(o.value for o in definition.options)
            raise ValueError(f"cf:{definition.identifier}: {part!r} is not an option ({names})")
    if definition.type is CustomFieldType.CHECKBOX:
        return ids
    if len(ids) > 1:
        raise ValueError(f"cf:{definition.identifier}: only one option allowed")
    return ids[0] if ids else []


def read_rows(
    path: Path, custom_fields: dict[str, CustomField] | None
) -> tuple[list[Row], list[Rejected]]:
    """Rows of the CSV as lead fields; bad rows are rejected with their line and reason."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        if "email" not in [h.lower() for h in header]:
            raise UsageError(f"{path}: no 'email' column (columns: {', '.join(header) or 'none'})")
        unknown = [
            h for h in header if h.lower() not in _LEAD_COLUMNS and not h.lower().startswith("cf:")
        ]
        if unknown:
            raise UsageError(
                f"{path}: unknown column(s) {', '.join(repr(u) for u in unknown)}; columns are lead "
                f"fields ({', '.join(_LEAD_COLUMNS)}) or cf:<custom field identifier>"
            )
        rows, rejected = [], []
        seen: set[str] = set()
        for number, record in enumerate(reader, start=2):
            values = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items() if k}
            email = values.pop("email", "")
            try:
                if not email:
                    raise ValueError("email is empty")
                if email.lower() in seen:
                    raise ValueError(f"{email} appears twice in the file")
                fields: dict[str, Any] = {
                    k: v for k, v in values.items() if v and not k.startswith("cf:")
                }
                custom: dict[str, Any] = {}
                for column, raw in values.items():
                    if not column.startswith("cf:") or not raw:
                        continue
                    identifier = column[3:]
                    definition = (custom_fields or {}).get(identifier)
                    if custom_fields is not None and definition is None:
                        raise ValueError(f"cf:{identifier}: no such custom field in the account")
                    if definition is None or definition.type in (
                        CustomFieldType.INPUT_FIELD,
                        CustomFieldType.TEXT_AREA,
                    ):
                        custom[identifier] = raw
                    else:
                        custom[identifier] = _option_ids(definition, raw)
                if custom:
                    fields["custom_fields"] = custom
            except ValueError as exc:
                rejected.append(Rejected(number, str(exc)))
                continue
            seen.add(email.lower())
            rows.append(Row(number, email, fields))
    return rows, rejected


def _actions(args: argparse.Namespace) -> Callable[[Any], Any]:
    def add(chain: Any) -> Any:
        for tag in args.tag:
            chain = chain.assign_tag(tag)
        for name in args.list:
            chain = chain.subscribe_list(name)
        if args.sequence:
            chain = chain.subscribe_sequence(args.sequence, args.step)
        if args.points:
            chain = chain.give_points(args.points)
        return chain

    return add


async def _custom_field_defs(
    kartra: AsyncKartra, path: Path, args: argparse.Namespace
) -> dict[str, CustomField] | None:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not any(h.strip().lower().startswith("cf:") for h in header) or args.offline:
        return None  # offline: no account to ask, values are sent as written
    try:
        return {f.identifier: f for f in await kartra.account.custom_fields()}
    except KartraError:
        if args.dry_run:
            return None
        raise


async def _check_names(kartra: AsyncKartra, args: argparse.Namespace) -> None:
    """Every tag, list and sequence named on the command line exists in the account, or
    a usage error naming the missing ones, before any lead is touched."""
    if args.offline:
        return
    wanted: list[tuple[str, list[str], Callable[[], Awaitable[list[str]]]]] = [
        ("tag", args.tag, kartra.account.tags),
        ("list", args.list, kartra.account.lists),
        ("sequence", [args.sequence] if args.sequence else [], kartra.account.sequences),
    ]
    missing = []
    for what, names, fetch in wanted:
        if not names:
            continue
        try:
            existing = set(await fetch())
        except KartraError:
            if args.dry_run:
                continue
            raise
        missing += [f"{what} {name!r}" for name in names if name not in existing]
    if missing:
        raise UsageError(
            f"not in the account: {', '.join(missing)} (names are case-sensitive); create "
            "them in Kartra first. No lead was touched."
        )


class CallCounter(httpx.AsyncBaseTransport):
    """Counts every request handed to the transport (lookups, resends and retries
    included) and measures their rate (see CallClock)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.clock = CallClock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.clock.tick()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


_SECRET_FLAGS = {"--api-key": "KARTRA_API_KEY", "--api-password": "KARTRA_API_PASSWORD"}
_RESUME_FLAGS = ("--reconcile", "--retry-ambiguous", "--retry-failed")


def command_line(argv: Sequence[str], *, add: Sequence[str] = ()) -> str:
    """`kartra ARGV` for a shell, secrets as environment variables, with the resume
    flags of `add` instead of the ones given."""
    parts = ["kartra"]
    tokens = iter(argv)
    for token in tokens:
        flag, equals, _ = token.partition("=")
        if flag in _SECRET_FLAGS:
            if not equals:
                next(tokens, None)
            parts += [flag, f'"${_SECRET_FLAGS[flag]}"']
        elif not (add and token in _RESUME_FLAGS):
            parts.append(shlex.quote(token))
    return " ".join([*parts, *add])


def _exists(outcome: Outcome[Row]) -> bool:
    """create_lead answered 'Lead already exists', now or in an earlier run."""
    if isinstance(outcome.error, LeadExistsError):
        return True
    earlier = outcome.skipped and outcome.previous is ItemState.FAILED
    return earlier and "LeadExistsError" in str(outcome.error)


class Import:
    """One `kartra import` run: its phases (create, then --update-existing edits), Ctrl-C
    and the totals."""

    def __init__(self, kartra: AsyncKartra, args: argparse.Namespace, output: Output) -> None:
        self.kartra, self.args, self.output = kartra, args, output
        self.job: FanOut[Row] | None = None
        self.interrupted = False  #: first Ctrl-C: no new rows, the ones in flight finish
        self.aborted = False  #: second Ctrl-C: everything cancelled
        self.abort = anyio.CancelScope()
        self.summaries: list[Summary] = []
        options = {
            "tag": args.tag, "list": args.list, "sequence": args.sequence, "step": args.step,
            "points": args.points, "update_existing": args.update_existing,
        }  # fmt: skip
        self.name = "kartra import " + json.dumps(options, sort_keys=True)

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Ctrl-C once: stop starting rows and finish those in flight; twice: abort."""
        try:
            receiver = anyio.open_signal_receiver(signal.SIGINT)
            signals = receiver.__enter__()
        except NotImplementedError:  # pragma: no cover - no signal handling here (Windows)
            task_status.started()
            return
        try:
            task_status.started()
            async for _ in signals:
                if self.interrupted or self.job is None:
                    if self.job is not None:
                        self.output.note(
                            "kartra: aborting: requests in flight are left as they are "
                            "(the resume looks them up)"
                        )
                        self.aborted = True
                    self.interrupted = True
                    self.abort.cancel()
                    return
                self.interrupted = True
                self.output.note(
                    f"kartra: stopping: no new rows; finishing the {self.job.in_flight} "
                    "request(s) in flight (Ctrl-C again to abort)"
                )
                self.job.stop()
        finally:
            receiver.__exit__(None, None, None)

    async def phase(
        self, rows: list[Row], build: Callable[[Row], LeadChain], label: str, prefix: str
    ) -> list[Outcome[Row]]:
        args = self.args
        outcomes: list[Outcome[Row]] = []
        with _progress(self.output, len(rows), label) as update:
            job = self.kartra.fan_out(
                rows,
                build,
                concurrency=args.concurrency,
                journal=args.journal,
                key=lambda row: prefix + row.email.lower(),
                progress=update,
                retry_failed=args.retry_failed,
                retry_ambiguous=args.retry_ambiguous,
                reconcile=self.looked_up if args.reconcile else True,
                job=self.name if args.journal else None,
                adopt_journal=args.adopt_journal,
            )
            self.job = job
            try:
                async with job:
                    async for outcome in job:
                        outcomes.append(outcome)
            finally:
                self.job = None
                self.summaries.append(job.summary)
        return outcomes

    async def looked_up(self, row: Row, chain: LeadChain) -> bool | None:
        """--reconcile: the row was applied if its lead has its tags, lists and points
        (one request carries them all); not if there is no such lead; else unknown."""
        try:
            lead = await self.kartra.get_lead(row.email)
        except LeadNotFoundError:
            return False
        lists = {m.name for m in lead.lists}
        has = all(t in lead.tags for t in self.args.tag) and all(n in lists for n in self.args.list)
        if self.args.points:
            has = has and lead.score >= self.args.points
        return True if has else None

    async def run(self, rows: list[Row], add: Callable[[Any], Any]) -> list[Outcome[Row]]:
        kartra = self.kartra
        outcomes: list[Outcome[Row]] = []
        with self.abort:
            outcomes = await self.phase(
                rows, lambda row: add(kartra.lead(row.email).create(**row.fields)), "import", ""
            )
            if self.args.update_existing and not self.interrupted:
                existing = [o.item for o in outcomes if _exists(o)]
                if existing:
                    more = await self.phase(
                        existing,
                        lambda row: add(kartra.lead(row.email).edit(**row.fields)),
                        "update",
                        "edit:",
                    )
                    outcomes = [o for o in outcomes if not _exists(o)] + more
        return outcomes

    def totals(
        self, rows: int, outcomes: list[Outcome[Row]], counter: CallCounter | None
    ) -> Summary:
        summary = Summary()
        for outcome in outcomes:
            summary.add(outcome)
        summary.pending = rows - len(outcomes)  #: not sent: interrupted
        summary.elapsed = sum(s.elapsed for s in self.summaries)
        summary.stopped = self.interrupted
        if counter is not None:
            clock = counter.clock
            summary.calls, summary.calling, summary.rate = clock.calls, clock.span, clock.rate
            summary.peak = clock.peak
        return summary


async def cmd_import(kartra: AsyncKartra, args: argparse.Namespace, output: Output) -> int:
    path = Path(args.file)
    if args.sequence and not args.step:
        raise UsageError("--sequence needs --step")
    resume = [
        f for f in (*_RESUME_FLAGS, "--adopt-journal") if getattr(args, f[2:].replace("-", "_"))
    ]
    if resume and not args.journal:
        raise UsageError(f"{', '.join(resume)} needs --journal (the journal of the earlier run)")
    if args.reconcile and args.retry_ambiguous:
        raise UsageError("give --reconcile or --retry-ambiguous, not both")
    importer = Import(kartra, args, output)
    error: Exception | None = None
    code = 130
    async with anyio.create_task_group() as signals:
        await signals.start(importer.watch)
        try:
            with importer.abort:
                defs = await _custom_field_defs(kartra, path, args)
                rows, rejected = read_rows(path, defs)
                await _check_names(kartra, args)
            if importer.interrupted:
                output.note("kartra: interrupted before any lead was touched")
            else:
                code = await _import_rows(importer, rows, rejected)
        except Exception as exc:  # raised as it is, not in the task group's ExceptionGroup
            error = exc
        finally:
            signals.cancel_scope.cancel()
    if error is not None:
        raise error
    return code


async def _import_rows(importer: Import, rows: list[Row], rejected: list[Rejected]) -> int:
    kartra, args, output = importer.kartra, importer.args, importer.output
    add = _actions(args)
    valid: list[Row] = []
    for row in rows:
        try:
            chain = add(kartra.lead(row.email).create(**row.fields))
        except KartraValidationError as exc:
            rejected.append(Rejected(row.number, str(exc)))
            continue
        if args.dry_run:  # one JSON object per line: the nested form, no credentials
            print(json.dumps({"row": row.number, "payload": chain.payload}), file=output.out)
        valid.append(row)
    rejected.sort(key=lambda r: r.number)
    if args.dry_run:
        _report_rejected(rejected, output)
        return 1 if rejected and args.strict else 0

    outcomes = await importer.run(valid, add)
    summary = importer.totals(len(valid), outcomes, getattr(args, "counter", None))
    problems = [o for o in outcomes if not o.ok]
    stopped = importer.interrupted
    again = command_line(args.argv)
    ambiguous = [o for o in outcomes if o.ambiguous]
    guidance = []
    if stopped:
        what = "aborted" if importer.aborted else "interrupted"
        if args.journal:
            guidance.append(f"{what}; resume with:\n  {again}")
        else:
            guidance.append(
                f"{what}; no --journal recorded what was done: running the same command "
                "again sends every row again (use --journal PATH to be able to resume)"
            )
    if ambiguous:
        guidance.append(
            f"{len(ambiguous)} row(s) may or may not have been applied (see above). Check "
            "them, then run again with --reconcile (each lead is looked up: done if it has "
            "the row's tags, lists and points) or --retry-ambiguous (send again what may be "
            f"missing; it may apply it twice):\n  {command_line(args.argv, add=['--reconcile'])}"
        )
    _report(summary, problems, rejected, output, guidance, again if stopped else None)
    if stopped:
        return 130
    failed = bool(problems) or (args.strict and bool(rejected))
    return 1 if failed else 0


class _progress:
    """A rich progress bar on stderr (rate, ETA, ok/failed), or nothing."""

    def __init__(self, output: Output, total: int, label: str) -> None:
        self.output, self.total, self.label = output, total, label
        self.bar: Any = None

    def __enter__(self) -> Callable[[Summary], None]:
        console = self.output.err_console
        if console is not None and not self.output.as_json and self.total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} calls/s"),
                TimeRemainingColumn(),
                TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
                console=console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, rate=0.0, ok=0, failed=0)

        def update(summary: Summary) -> None:
            if self.bar is not None:
                failed = sum(summary.failed.values()) + summary.ambiguous
                self.bar.update(
                    self.task,
                    completed=summary.total,
                    rate=summary.calls_per_second,
                    ok=summary.ok,
                    failed=failed,
                )

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _report_rejected(rejected: list[Rejected], output: Output) -> None:
    if not rejected or output.as_json:
        return
    output.note(f"{len(rejected)} row(s) rejected:")
    for r in rejected:
        output.note(f"  row {r.number}: {r.reason}")


def _report(
    summary: Summary,
    problems: list[Outcome[Row]],
    rejected: list[Rejected],
    output: Output,
    guidance: list[str],
    resume: str | None,
) -> None:
    if output.as_json:
        output.data(
            {
                "ok": summary.ok,
                "failed": summary.failed,
                "ambiguous": summary.ambiguous,
                "skipped": summary.skipped,
                "pending": summary.pending,
                "reconciled": summary.reconciled,
                "rejected": [attrs.asdict(r) for r in rejected],
                "problems": [
                    {"row": o.item.number, "email": o.item.email, "error": _reason(o)}
                    for o in problems
                ],
                "elapsed": round(summary.elapsed, 3),
                "calls": summary.calls,
                "calls_per_second": round(summary.calls_per_second, 2),
                "peak_calls_per_second": summary.peak,
                "interrupted": summary.stopped,
                "resume": resume,
            }
        )
        for text in guidance:
            output.note(f"kartra: {text}")
        return
    rows = [
        ("ok", str(summary.ok)),
        *((f"failed: {k}", str(v)) for k, v in sorted(summary.failed.items())),
        ("ambiguous", str(summary.ambiguous)),
        ("skipped (journal)", str(summary.skipped)),
        *([("not sent (interrupted)", str(summary.pending))] if summary.stopped else []),
        *([("settled by a lookup", str(summary.reconciled))] if summary.reconciled else []),
        ("rejected rows", str(len(rejected))),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("calls (lookups included)", str(summary.calls)),
        ("calls/s while calling", f"{summary.calls_per_second:.1f}"),
        ("most calls in one second", str(summary.peak)),
    ]
    if output.console is not None:
        from rich.table import Table

        table = Table(title="kartra import")
        table.add_column("outcome")
        table.add_column("count", justify="right")
        for name, value in rows:
            table.add_row(name, value)
        output.console.print(table)
    else:
        for name, value in rows:
            print(f"{name}: {value}", file=output.out)
    for outcome in problems:
        output.note(f"  row {outcome.item.number} ({outcome.item.email}): {_reason(outcome)}")
    _report_rejected(rejected, output)
    for text in guidance:
        output.note(f"kartra: {text}")


def _reason(outcome: Outcome[Row]) -> str:
    if outcome.error is not None:
        return f"{type(outcome.error).__name__}: {outcome.error}"
    assert outcome.result is not None
    return "; ".join(str(e) for e in outcome.result.errors)


# ---- the other commands


async def cmd_lead(kartra: AsyncKartra, args: argparse.Namespace, output: Output) -> int:
    if args.lead_command == "get":
        output.data(await kartra.get_lead(args.email))
        return 0
    chain = _actions(args)(kartra.lead(args.email))
    if not chain.cmds:
        raise UsageError("lead apply needs at least one of --tag, --list, --sequence, --points")
    result = await chain
    output.data(
        [{"cmd": a.cmd, "ok": a.ok, "code": a.code, "message": a.message} for a in result.actions]
    )
    return 0 if result.ok else 1


async def cmd_account(kartra: AsyncKartra, args: argparse.Namespace, output: Output) -> int:
    method = {"custom-fields": "custom_fields"}.get(args.what, args.what)
    output.data(await getattr(kartra.account, method)())
    return 0


async def cmd_get(kartra: AsyncKartra, args: argparse.Namespace, output: Output) -> int:
    resource = kartra.transactions if args.command == "transactions" else kartra.subscriptions
    output.data(await resource.get(args.id))
    return 0


# ---- wiring


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kartra", description="Kartra from the command line.")
    p.add_argument("--app-id", help="or KARTRA_APP_ID")
    p.add_argument("--api-key", help="or KARTRA_API_KEY")
    p.add_argument("--api-password", help="or KARTRA_API_PASSWORD")
    p.add_argument("--base-url", help="or KARTRA_BASE_URL")
    p.add_argument(
        "--fake", action="store_true", help="use an embedded fake Kartra with a demo account"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log (-vv: debug)")
    sub = p.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="create leads from a CSV file")
    imp.add_argument("file")
    _action_flags(imp)
    imp.add_argument("--update-existing", action="store_true", help="edit leads that already exist")
    imp.add_argument("--journal", help="SQLite file to resume an interrupted import")
    imp.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --journal: send again the actions that failed in an earlier run",
    )
    imp.add_argument(
        "--reconcile",
        action="store_true",
        help="with --journal: look up rows that may or may not have been applied "
        "(done if the lead has their tags, lists and points)",
    )
    imp.add_argument(
        "--retry-ambiguous",
        action="store_true",
        help="with --journal: send again what may or may not have been applied "
        "(it may apply it twice)",
    )
    imp.add_argument(
        "--adopt-journal",
        action="store_true",
        help="continue a journal written by an import with other options",
    )
    imp.add_argument(
        "--concurrency", type=int, help="chains in flight (default: sized to the rate limit)"
    )
    imp.add_argument("--dry-run", action="store_true", help="print the payloads, send nothing")
    imp.add_argument("--strict", action="store_true", help="rejected rows make the run fail")

    lead = sub.add_parser("lead", help="one lead")
    lead_sub = lead.add_subparsers(dest="lead_command", required=True)
    get = lead_sub.add_parser("get", help="everything about a lead")
    get.add_argument("email")
    apply = lead_sub.add_parser("apply", help="tags, lists, sequence, points for a lead")
    apply.add_argument("email")
    _action_flags(apply)

    account = sub.add_parser("account", help="what the account holds")
    account.add_argument("what", choices=["tags", "lists", "sequences", "pages", "custom-fields"])
    for name in ("transactions", "subscriptions"):
        resource = sub.add_parser(name, help=f"one payment {name[:-1]}")
        resource.add_argument("action", choices=["get"])
        resource.add_argument("id", type=int)

    from ..testing.__main__ import add_arguments as fake_server_arguments

    server = sub.add_parser(
        "fake-server",
        help="serve a fake Kartra over HTTP (as python -m kartra_async.testing)",
        description="Serve a fake Kartra API over HTTP: the options of python -m kartra_async.testing.",
    )
    fake_server_arguments(server)
    return p


def _action_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", action="append", default=[], help="assign this tag (repeatable)")
    p.add_argument(
        "--list", action="append", default=[], help="subscribe to this list (repeatable)"
    )
    p.add_argument("--sequence", help="subscribe to this sequence (with --step)")
    p.add_argument("--step", help="the sequence step")
    p.add_argument("--points", type=int, help="give these points")


def _credentials(args: argparse.Namespace) -> dict[str, Any]:
    values = {}
    for flag, env in (
        ("app_id", "KARTRA_APP_ID"),
        ("api_key", "KARTRA_API_KEY"),
        ("api_password", "KARTRA_API_PASSWORD"),
    ):
        value = getattr(args, flag) or os.environ.get(env, "")
        if not value:
            raise UsageError(
                f"no credentials: give --{flag.replace('_', '-')} or set {env} (or use --fake)"
            )
        values[flag] = value
    base_url = args.base_url or os.environ.get("KARTRA_BASE_URL")
    if base_url:
        values["base_url"] = base_url
    return values


async def _main(args: argparse.Namespace, output: Output) -> int:
    commands: dict[str, Callable[[AsyncKartra, argparse.Namespace, Output], Any]] = {
        "import": cmd_import,
        "lead": cmd_lead,
        "account": cmd_account,
        "transactions": cmd_get,
        "subscriptions": cmd_get,
    }
    args.offline = False
    if args.fake:
        from ..testing import FakeKartra

        fake = FakeKartra()
        fake.seed()
        limiter = (
            Limiter(fake.rate_limit, fake.rate_period, name="fake") if fake.rate_limit else None
        )
        args.counter = CallCounter(fake.transport())
        kartra = AsyncKartra(
            fake.app_id, fake.api_key, fake.api_password, base_url="http://127.0.0.1/api",
            transport=args.counter, limiter=limiter,
        )  # fmt: skip
    elif (
        args.command == "import"
        and args.dry_run
        and not (args.app_id or os.environ.get("KARTRA_APP_ID"))
    ):
        args.offline = True
        kartra = AsyncKartra(
            "dry-run", "dry-run", "dry-run", base_url="http://127.0.0.1:9/api", limiter=None
        )
    else:
        args.counter = CallCounter(httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS))
        try:
            kartra = AsyncKartra(**_credentials(args), transport=args.counter)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    async with kartra:
        result: int = await commands[args.command](kartra, args, output)
        return result


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    args.argv = argv
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        stream=err,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "fake-server":
        from ..testing.__main__ import run as serve

        return serve(args, out, err)
    output = Output(args.json, out, err)
    try:
        return anyio.run(_main, args, output)
    except UsageError as exc:
        print(f"kartra: error: {exc}", file=err)
        return 2
    except KartraError as exc:
        print(f"kartra: {type(exc).__name__}: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("kartra: interrupted", file=err)
        return 130


def entry_point() -> None:  # pragma: no cover - the console script
    sys.exit(main())
