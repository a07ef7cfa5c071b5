"""The `kartra` command line (`pip install 'kartra-async[cli]'`).

    kartra --fake import examples/leads.csv --tag Customer --list Newsletter
    kartra lead get john@example.com
    kartra account tags --json

Credentials come from --app-id/--api-key/--api-password (or KARTRA_APP_ID,
KARTRA_API_KEY, KARTRA_API_PASSWORD, KARTRA_BASE_URL) and are never printed; --fake runs
against an embedded FakeKartra seeded with a demo account, so everything works offline.
The global flags go before or after the subcommand. Results print as tables, or as
JSON with --json. Exit codes: 0 everything went through, 1 a call failed or was
ambiguous (or, with --strict, a row was rejected), 2 a usage error (a tag, list or
sequence that is not in the account included), 130 interrupted.

`kartra import --journal FILE` can be resumed: Ctrl-C once stops starting rows, lets the
requests in flight finish, writes the journal and prints the command that resumes it
(twice aborts at once); the same command later sends what was not sent, skips what was
done and looks up what was in flight. --retry-failed, --reconcile and --retry-ambiguous
move on what an earlier run left failed or ambiguous. `--dry-run` checks every row and
prints what would be sent; without credentials it makes no client at all.

The package: `rows` (CSV -> lead fields), `output` (tables, JSON, progress), `importing`
(the import run), `shell` (the resume command), `commands` (one function per
subcommand), and here the parser and dispatch. Only `rich` needs the cli extra; it is
imported once a command runs (`kartra fake-server` does without it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import anyio

from .shell import command_line

__all__ = ["build_parser", "command_line", "entry_point", "main"]

_GLOBAL_HELP = "global options (before or after the subcommand)"


def _global_flags(defaults: bool) -> argparse.ArgumentParser:
    """The flags every subcommand takes. On the subparsers their defaults are SUPPRESS,
    so a flag given before the subcommand is not reset by the subcommand's parser."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p = argparse.ArgumentParser(add_help=False)
    group = p.add_argument_group(_GLOBAL_HELP)
    group.add_argument("--app-id", default=default(None), help="or KARTRA_APP_ID")
    group.add_argument("--api-key", default=default(None), help="or KARTRA_API_KEY")
    group.add_argument("--api-password", default=default(None), help="or KARTRA_API_PASSWORD")
    group.add_argument("--base-url", default=default(None), help="or KARTRA_BASE_URL")
    group.add_argument(
        "--fake",
        action="store_true",
        default=default(False),
        help="use an embedded fake Kartra with a demo account",
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON, not tables"
    )
    group.add_argument(
        "-v", "--verbose", action="count", default=default(0), help="log (-vv: debug)"
    )
    return p


def _action_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", action="append", default=[], help="assign this tag (repeatable)")
    p.add_argument(
        "--list", action="append", default=[], help="subscribe to this list (repeatable)"
    )
    p.add_argument("--sequence", help="subscribe to this sequence (with --step)")
    p.add_argument("--step", help="the sequence step")
    p.add_argument("--points", type=int, help="give these points")


def build_parser() -> argparse.ArgumentParser:
    """The `kartra` argument parser."""
    common = [_global_flags(defaults=False)]
    p = argparse.ArgumentParser(
        prog="kartra", description="Kartra from the command line.", parents=[_global_flags(True)]
    )
    sub = p.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="create leads from a CSV file", parents=common)
    imp.set_defaults(handler="import")
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
    imp.add_argument(
        "--dry-run", action="store_true", help="check the rows, print the payloads, send nothing"
    )
    imp.add_argument("--strict", action="store_true", help="rejected rows make the run fail")

    lead = sub.add_parser("lead", help="one lead", parents=common)
    lead_sub = lead.add_subparsers(dest="lead_command", required=True)
    get = lead_sub.add_parser("get", help="everything about a lead", parents=common)
    get.set_defaults(handler="lead get")
    get.add_argument("email")
    apply = lead_sub.add_parser(
        "apply", help="tags, lists, sequence, points for a lead", parents=common
    )
    apply.set_defaults(handler="lead apply")
    apply.add_argument("email")
    _action_flags(apply)

    account = sub.add_parser("account", help="what the account holds", parents=common)
    account.set_defaults(handler="account")
    account.add_argument("what", choices=["tags", "lists", "sequences", "pages", "custom-fields"])
    for name in ("transactions", "subscriptions"):
        resource = sub.add_parser(name, help=f"one payment {name[:-1]}", parents=common)
        resource.set_defaults(handler=f"{name} get")
        resource.add_argument("action", choices=["get"])
        resource.add_argument("id", type=int)

    from ..testing.__main__ import add_arguments as fake_server_arguments

    server = sub.add_parser(
        "fake-server",
        help="serve a fake Kartra over HTTP (as python -m kartra_async.testing)",
        description="Serve a fake Kartra API over HTTP: the options of python -m kartra_async.testing.",
    )
    fake_server_arguments(server)  # its --app-id, --api-key, ... are the server's
    return p


_FLAG_OF = {
    "KARTRA_APP_ID": "--app-id",
    "KARTRA_API_KEY": "--api-key",
    "KARTRA_API_PASSWORD": "--api-password",
}


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import httpx

    from .._client import AsyncKartra
    from .._constants import DEFAULT_LIMITS
    from ..errors import KartraValidationError
    from ..limits import Limiter
    from .commands import COMMANDS, Context
    from .importing import CallCounter
    from .output import Output
    from .rows import UsageError

    run = COMMANDS[args.handler]
    output = Output(args.json, out, err)
    if args.fake:
        from ..testing import FakeKartra

        fake = FakeKartra()
        fake.seed()
        limiter = (
            Limiter(fake.rate_limit, fake.rate_period, name="fake") if fake.rate_limit else None
        )
        counter = CallCounter(fake.transport())
        kartra = AsyncKartra(
            fake.app_id, fake.api_key, fake.api_password, base_url="http://127.0.0.1/api",
            transport=counter, limiter=limiter,
        )  # fmt: skip
    elif getattr(args, "dry_run", False) and not (args.app_id or os.environ.get("KARTRA_APP_ID")):
        return await run(Context(args, output, None))  # no account to ask: no client at all
    else:
        counter = CallCounter(httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS))
        try:
            kartra = AsyncKartra.from_env(
                app_id=args.app_id,
                api_key=args.api_key,
                api_password=args.api_password,
                base_url=args.base_url,
                transport=counter,
            )
        except KartraValidationError as exc:
            flag = _FLAG_OF.get(exc.field)
            if flag is None:
                raise UsageError(str(exc)) from None
            raise UsageError(
                f"no credentials: give {flag} or set {exc.field} (or use --fake)"
            ) from None
    async with kartra:
        return await run(Context(args, output, kartra, counter))


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    args.argv = argv
    verbose = getattr(args, "verbose", 0)
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        stream=err,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "fake-server":
        from ..testing.__main__ import run as serve

        return serve(args, out, err)
    try:
        import rich  # noqa: F401
    except ImportError:  # pragma: no cover - the cli extra is missing
        print(
            "kartra: error: the kartra command needs rich: pip install 'kartra-async[cli]'",
            file=err,
        )
        return 2
    from ..errors import KartraError
    from .rows import UsageError

    try:
        return anyio.run(_run, args, out, err)
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
    """The `kartra` console script."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`kartra ... | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
