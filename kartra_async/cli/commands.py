"""The subcommands of `kartra`, one function each: `(Context) -> exit status`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
import attrs

from .._chain import LeadChain, lead_identity
from .._client import AsyncKartra
from .._commands import Call
from ..errors import KartraError, KartraValidationError
from ..models import CustomField
from ..models.results import ChainResult
from .importing import CallCounter, Import
from .output import Output, report_import, report_rejected
from .rows import Rejected, Row, Sheet, UsageError, read_sheet, to_rows
from .shell import RESUME_FLAGS, command_line, secrets_note

__all__ = [
    "COMMANDS",
    "Context",
    "account",
    "import_leads",
    "lead_apply",
    "lead_get",
    "subscription_get",
    "transaction_get",
]


@attrs.frozen
class Context:
    """What a command runs with."""

    args: argparse.Namespace
    output: Output
    #: None only for `import --dry-run` without credentials: nothing is sent at all
    kartra: AsyncKartra | None
    counter: CallCounter | None = None  #: counts the calls a run makes

    @property
    def client(self) -> AsyncKartra:
        assert self.kartra is not None, "this command needs a client"
        return self.kartra


class _Unsent:
    """The sender of a dry run's chains: they are templates, never sent."""

    async def send(self, call: Call, **options: Any) -> NoReturn:
        raise RuntimeError("a dry run sends nothing")


def template(email: str) -> LeadChain:
    """A chain on the lead with this email, for validating and printing, not sending."""
    return LeadChain(_Unsent(), lead_identity(email, None))


def chain_actions(args: argparse.Namespace) -> Callable[[LeadChain], LeadChain]:
    """The actions of --tag, --list, --sequence/--step and --points, added to a chain."""

    def add(chain: LeadChain) -> LeadChain:
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


# ---- kartra import


def _read(path: Path) -> Sheet:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return read_sheet(handle, str(path))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _check_flags(args: argparse.Namespace) -> None:
    if args.sequence and not args.step:
        raise UsageError("--sequence needs --step")
    resume = [
        f for f in (*RESUME_FLAGS, "--adopt-journal") if getattr(args, f[2:].replace("-", "_"))
    ]
    if resume and not args.journal:
        raise UsageError(f"{', '.join(resume)} needs --journal (the journal of the earlier run)")
    if args.reconcile and args.retry_ambiguous:
        raise UsageError("give --reconcile or --retry-ambiguous, not both")


async def _custom_field_defs(
    kartra: AsyncKartra, sheet: Sheet, args: argparse.Namespace
) -> dict[str, CustomField] | None:
    """The account's custom fields, when the file has cf: columns (so option names can
    become ids); None sends values as written."""
    if not sheet.custom_columns:
        return None
    try:
        return {f.identifier: f for f in await kartra.account.custom_fields()}
    except KartraError:
        if args.dry_run:
            return None
        raise


async def _check_names(kartra: AsyncKartra, args: argparse.Namespace) -> None:
    """Every tag, list and sequence named on the command line exists in the account, or
    a usage error naming the missing ones, before any lead is touched."""
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


def _validated(
    rows: list[Row], rejected: list[Rejected], args: argparse.Namespace, output: Output
) -> list[Row]:
    """The rows whose chain passes the SDK's checks (built as templates: no client);
    the others join `rejected`. A dry run prints each chain's payload, one JSON object
    per line (no credentials in it)."""
    actions = chain_actions(args)
    valid: list[Row] = []
    for row in rows:
        try:
            chain = actions(template(row.email).create(**row.fields))
        except KartraValidationError as exc:
            rejected.append(Rejected(row.number, str(exc)))
            continue
        if args.dry_run:
            line = {"row": row.number, "payload": chain.payload}
            print(json.dumps(line, ensure_ascii=False), file=output.out)
        valid.append(row)
    rejected.sort(key=lambda r: r.number)
    return valid


def _dry_run(rows: list[Row], rejected: list[Rejected], ctx: Context) -> int:
    _validated(rows, rejected, ctx.args, ctx.output)
    report_rejected(rejected, ctx.output)
    return 1 if rejected and ctx.args.strict else 0


async def import_leads(ctx: Context) -> int:
    """`kartra import FILE`: create a lead per row, with the same actions for each."""
    args, output = ctx.args, ctx.output
    _check_flags(args)
    sheet = _read(Path(args.file))
    if ctx.kartra is None:  # a dry run without an account: values are checked as written
        return _dry_run(*to_rows(sheet, None), ctx)
    kartra = ctx.kartra
    importer = Import(kartra, args, output, ctx.counter)
    error: Exception | None = None
    code = 130
    async with anyio.create_task_group() as signals:
        await signals.start(importer.watch)
        try:
            with importer.abort:
                rows, rejected = to_rows(sheet, await _custom_field_defs(kartra, sheet, args))
                await _check_names(kartra, args)
            if importer.interrupted:
                output.note("kartra: interrupted before any lead was touched")
            elif args.dry_run:
                code = _dry_run(rows, rejected, ctx)
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
    args, output = importer.args, importer.output
    valid = _validated(rows, rejected, args, output)
    outcomes = await importer.run(valid, chain_actions(args))
    summary = importer.totals(len(valid), outcomes)
    problems = [o for o in outcomes if not o.ok]
    stopped = importer.interrupted
    again = command_line(args.argv)
    note = secrets_note(args.argv)
    then = f"\n{note}" if note else ""
    ambiguous = [o for o in outcomes if o.ambiguous]
    guidance = []
    if stopped:
        what = "aborted" if importer.aborted else "interrupted"
        if args.journal:
            guidance.append(f"{what}; resume with:\n  {again}{then}")
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
            + then
        )
    report_import(summary, problems, rejected, output, guidance, again if stopped else None)
    if stopped:
        return 130
    failed = bool(problems) or (args.strict and bool(rejected))
    return 1 if failed else 0


# ---- the other commands


async def lead_get(ctx: Context) -> int:
    """`kartra lead get EMAIL`: everything about a lead."""
    ctx.output.show(await ctx.client.get_lead(ctx.args.email))
    return 0


async def lead_apply(ctx: Context) -> int:
    """`kartra lead apply EMAIL --tag ...`: tags, lists, a sequence, points, in one call."""
    chain = chain_actions(ctx.args)(ctx.client.lead(ctx.args.email))
    if not chain.cmds:
        raise UsageError("lead apply needs at least one of --tag, --list, --sequence, --points")
    result: ChainResult = await chain
    ctx.output.show(
        [{"cmd": a.cmd, "ok": a.ok, "code": a.code, "message": a.message} for a in result.actions]
    )
    return 0 if result.ok else 1


async def account(ctx: Context) -> int:
    """`kartra account tags|lists|sequences|pages|custom-fields`: what the account holds."""
    calls = ctx.client.account
    what = ctx.args.what
    if what != "custom-fields":
        fetch = {
            "tags": calls.tags, "lists": calls.lists,
            "sequences": calls.sequences, "pages": calls.pages,
        }[what]  # fmt: skip
        ctx.output.show(await fetch())
        return 0
    fields = await calls.custom_fields()
    if ctx.output.as_json:
        ctx.output.json(fields)
    else:
        rows = [
            (
                str(f.id),
                f.identifier,
                f.type.value,
                ", ".join(f"{o.value} ({o.id})" for o in f.options),
            )
            for f in fields
        ]
        ctx.output.table(("id", "identifier", "type", "options (id)"), rows)
    return 0


async def transaction_get(ctx: Context) -> int:
    """`kartra transactions get ID`: one payment transaction."""
    ctx.output.show(await ctx.client.transactions.get(ctx.args.id))
    return 0


async def subscription_get(ctx: Context) -> int:
    """`kartra subscriptions get ID`: one subscription."""
    ctx.output.show(await ctx.client.subscriptions.get(ctx.args.id))
    return 0


#: the parser's `handler` of each subcommand -> the function that runs it
COMMANDS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "import": import_leads,
    "lead get": lead_get,
    "lead apply": lead_apply,
    "account": account,
    "transactions get": transaction_get,
    "subscriptions get": subscription_get,
}
