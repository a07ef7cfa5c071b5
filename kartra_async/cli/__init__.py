"""The `kartra` command line (`pip install 'kartra-async[cli]'`).

    kartra --fake import examples/leads.csv --tag Customer --list Newsletter
    kartra lead get john@example.com
    kartra account tags

Credentials come from --app-id/--api-key/--api-password (or KARTRA_APP_ID,
KARTRA_API_KEY, KARTRA_API_PASSWORD, KARTRA_BASE_URL) and are never printed; --fake runs
against an embedded FakeKartra seeded with a demo account, so everything works offline.
Exit codes: 0 everything went through, 1 a call failed or was ambiguous (or, with
--strict, a row was rejected), 2 a usage error.
"""

from __future__ import annotations

import argparse
import csv
import enum
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import anyio
import attrs

from .._bulk import Outcome, Summary
from .._client import AsyncKartra
from .._commands import LEAD_FIELDS
from ..errors import KartraError, KartraValidationError, LeadExistsError
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
    kartra: AsyncKartra, path: Path, dry_run: bool
) -> dict[str, CustomField] | None:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not any(h.strip().lower().startswith("cf:") for h in header):
        return None
    try:
        return {f.identifier: f for f in await kartra.account.custom_fields()}
    except KartraError:
        if dry_run:
            return None  # no account to ask: values are sent as written
        raise


async def cmd_import(kartra: AsyncKartra, args: argparse.Namespace, output: Output) -> int:
    path = Path(args.file)
    if args.sequence and not args.step:
        raise UsageError("--sequence needs --step")
    defs = await _custom_field_defs(kartra, path, args.dry_run)
    rows, rejected = read_rows(path, defs)
    add = _actions(args)
    chains: list[tuple[Row, Any]] = []
    for row in rows:
        try:
            chains.append((row, add(kartra.lead(row.email).create(**row.fields))))
        except KartraValidationError as exc:
            rejected.append(Rejected(row.number, str(exc)))
    rejected.sort(key=lambda r: r.number)
    if args.dry_run:
        for row, chain in chains:  # one JSON object per line: the nested form, no credentials
            print(json.dumps({"row": row.number, "payload": chain.payload}), file=output.out)
        _report_rejected(rejected, output)
        return 1 if rejected and args.strict else 0

    by_row = {row.number: chain for row, chain in chains}
    summary, outcomes = await _run(
        kartra, [row for row, _ in chains], lambda row: by_row[row.number], args, output, "import"
    )
    existing = [o.item for o in outcomes if isinstance(o.error, LeadExistsError)]
    if existing and args.update_existing:

        def edit(row: Row) -> Any:
            return add(kartra.lead(row.email).edit(**row.fields))

        updated, more = await _run(
            kartra, existing, edit, args, output, "update", key_prefix="edit:"
        )
        outcomes = [o for o in outcomes if not isinstance(o.error, LeadExistsError)] + more
        summary = _merge(summary, updated, moved=len(existing))
    problems = [o for o in outcomes if not o.ok]
    _report(summary, problems, rejected, output)
    failed = bool(problems) or (args.strict and bool(rejected))
    return 1 if failed else 0


def _merge(first: Summary, second: Summary, moved: int) -> Summary:
    merged = attrs.evolve(first, failed=dict(first.failed))
    merged.failed["LeadExistsError"] -= moved
    if not merged.failed["LeadExistsError"]:
        del merged.failed["LeadExistsError"]
    merged.ok += second.ok
    merged.ambiguous += second.ambiguous
    merged.skipped += second.skipped
    for reason, count in second.failed.items():
        merged.failed[reason] = merged.failed.get(reason, 0) + count
    merged.elapsed += second.elapsed
    merged.calls += second.calls
    return merged


async def _run(
    kartra: AsyncKartra,
    rows: list[Row],
    build: Callable[[Row], Any],
    args: argparse.Namespace,
    output: Output,
    label: str,
    key_prefix: str = "",
) -> tuple[Summary, list[Outcome]]:
    outcomes: list[Outcome] = []
    with _progress(output, len(rows), label) as update:
        job = kartra.fan_out(
            rows,
            build,
            concurrency=args.concurrency,
            journal=args.journal,
            key=lambda row: key_prefix + row.email.lower(),
            progress=update,
        )
        async with job:
            async for outcome in job:
                outcomes.append(outcome)
    return job.summary, outcomes


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
                TextColumn("{task.fields[rate]:.1f}/s"),
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
    summary: Summary, problems: list[Outcome], rejected: list[Rejected], output: Output
) -> None:
    if output.as_json:
        output.data(
            {
                "ok": summary.ok,
                "failed": summary.failed,
                "ambiguous": summary.ambiguous,
                "skipped": summary.skipped,
                "rejected": [attrs.asdict(r) for r in rejected],
                "problems": [
                    {"row": o.item.number, "email": o.item.email, "error": _reason(o)}
                    for o in problems
                ],
                "elapsed": round(summary.elapsed, 3),
                "calls_per_second": round(summary.calls_per_second, 2),
            }
        )
        return
    rows = [
        ("ok", str(summary.ok)),
        *((f"failed: {k}", str(v)) for k, v in sorted(summary.failed.items())),
        ("ambiguous", str(summary.ambiguous)),
        ("skipped (journal)", str(summary.skipped)),
        ("rejected rows", str(len(rejected))),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("calls/s", f"{summary.calls_per_second:.1f}"),
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


def _reason(outcome: Outcome) -> str:
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
    if args.fake:
        from ..testing import FakeKartra

        fake = FakeKartra()
        fake.seed()
        kartra = fake.client()
    elif (
        args.command == "import"
        and args.dry_run
        and not (args.app_id or os.environ.get("KARTRA_APP_ID"))
    ):
        kartra = AsyncKartra(
            "dry-run", "dry-run", "dry-run", base_url="http://127.0.0.1:9/api", limiter=None
        )
    else:
        try:
            kartra = AsyncKartra(**_credentials(args))
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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
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


def entry_point() -> None:  # pragma: no cover - the console script
    sys.exit(main())
