"""`python -m kartra_async.testing` (and `kartra fake-server`): serve a fake Kartra over
HTTP, for test suites in any language (as moto's server mode and stripe-mock do).

    python -m kartra_async.testing --port 8765 --app-id MyApp --app-id OtherApp \\
        --api-key K --api-password P --seed my_seed.json --response-style mirrored

A client written from Kartra's docs, pointed at http://127.0.0.1:8765/api, gets Kartra's
answers. The fake holds the demo account (`--print-demo-seed` prints it: a seed file
to copy), or what `--seed` files describe, or nothing (`--empty`). The control API on
the same port (`/_fake/state`, `/_fake/seed`, `/_fake/reset`, `/_fake/faults`,
`/_fake/requests`) arranges and inspects the fake. Needs the `server` extra (uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ._seed import SeedError, demo_seed_path, read_seed_file
from .fake import RESPONSE_STYLES, FakeKartra
from .server import BODY_TIMEOUT, HEADER_TIMEOUT, PortInUseError, listen

__all__ = ["add_arguments", "main", "parser", "run"]

PROG = "python -m kartra_async.testing"


def _seconds_or_range(what: str) -> Callable[[str], float | tuple[float, float]]:
    def parse(text: str) -> float | tuple[float, float]:
        low, sep, high = text.partition("-")
        try:
            value = (float(low), float(high)) if sep else float(low)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} is SECONDS or LOW-HIGH, got {text!r}"
            ) from None
        numbers = value if isinstance(value, tuple) else (value,)
        if not all(0 <= n <= 3600 for n in numbers) or numbers != tuple(sorted(numbers)):
            raise argparse.ArgumentTypeError(f"{what} is 0-3600 seconds, LOW <= HIGH; got {text!r}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The server's options (shared by `kartra fake-server`)."""
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="default 8765; 0 picks a free port")
    p.add_argument(
        "--app-id",
        action="append",
        dest="app_ids",
        metavar="APP_ID",
        help="an App id to accept (repeatable; default fake-app)",
    )
    p.add_argument("--any-app-id", action="store_true", help="accept every App id")
    p.add_argument("--api-key", default="fake-key")
    p.add_argument("--api-password", default="fake-password")
    p.add_argument(
        "--response-style",
        choices=RESPONSE_STYLES,
        default=RESPONSE_STYLES[0],
        help="answer shape (default mirrored: actions[] plus a single action's status, "
        "message and type at the top level; documented: as the docs print; wrapped: "
        "always actions[])",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--seed",
        action="append",
        metavar="FILE",
        help="start from this JSON seed instead of the demo account (repeatable)",
    )
    start.add_argument("--empty", action="store_true", help="start with an empty account")
    p.add_argument(
        "--print-demo-seed",
        action="store_true",
        help="print the demo account's seed (a file to copy and edit) and exit",
    )
    p.add_argument(
        "--rate-limit", type=int, default=20, help="calls per second per App; 0 turns it off"
    )
    p.add_argument(
        "--latency",
        type=_seconds_or_range("latency"),
        default=None,
        help="delay every answer: SECONDS, or LOW-HIGH for a random range",
    )
    p.add_argument(
        "--arrival-delay",
        type=_seconds_or_range("arrival delay"),
        default=None,
        metavar="SECONDS|LOW-HIGH",
        help="one-way delay before the fake counts a call against the rate limit",
    )
    p.add_argument(
        "--test-mode", action="store_true", help="rewrite new leads' emails to @kartra.com"
    )
    p.add_argument(
        "--header-timeout",
        type=_positive,
        default=HEADER_TIMEOUT,
        help=f"seconds to send a request's headers (default {HEADER_TIMEOUT:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=_positive,
        default=BODY_TIMEOUT,
        help=f"seconds to send a request's body (default {BODY_TIMEOUT:g})",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve a fake Kartra API over HTTP.")
    add_arguments(p)
    return p


class UsageError(Exception):
    """Bad options or an unusable seed or port: printed, exit status 2."""


def build_fake(args: argparse.Namespace) -> FakeKartra:
    """The FakeKartra the options describe (seeded); UsageError for a bad seed."""
    app_ids = args.app_ids or ["fake-app"]
    fake = FakeKartra(
        app_ids[0],
        args.api_key,
        args.api_password,
        rate_limit=args.rate_limit or None,
        test_mode=args.test_mode,
        response_style=args.response_style,
        app_ids=app_ids[1:],
        any_app_id=args.any_app_id,
        arrival_delay=args.arrival_delay or 0.0,
    )
    fake.faults.latency = args.latency
    try:
        if args.seed:
            for path in args.seed:
                fake.load_seed(read_seed_file(path))
        elif not args.empty:
            fake.seed()
    except SeedError as exc:
        path = args.seed[-1] if args.seed else "demo seed"
        message = str(exc)
        raise UsageError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None
    return fake


def banner(fake: FakeKartra, url: str, control: str, *, any_app_id: bool) -> str:
    app_ids = ", ".join(fake.app_ids) + (" (and any other)" if any_app_id else "")
    return (
        f"fake Kartra listening on {url}\n"
        f"  app_id        {app_ids}\n"
        f"  api_key       {fake.api_key}\n"
        f"  api_password  {fake.api_password}\n"
        f"  answers       {fake.response_style}\n"
        f"  control API   {control}  (state, seed, reset, faults, requests)\n"
        "Ctrl-C stops it."
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Serve until interrupted; returns the exit status (2 for a usage error)."""
    out, err = out or sys.stdout, err or sys.stderr
    if args.print_demo_seed:
        out.write(demo_seed_path().read_text(encoding="utf-8"))
        return 0
    try:
        from . import _uvicorn
    except ImportError:
        print(
            f"{PROG}: error: the server needs uvicorn: pip install 'kartra-async[server]'", file=err
        )
        return 2
    try:
        fake = build_fake(args)
        try:
            sock = listen(args.host, args.port)
        except PortInUseError as exc:
            raise UsageError(f"{exc}; choose another --port (0 picks a free one)") from None
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 2
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url, control = f"http://{host}:{port}/api", f"http://{host}:{port}/_fake/"
    from ._asgi import FakeApp

    app = FakeApp(fake, body_timeout=args.body_timeout)
    server = _uvicorn.server(app, header_timeout=args.header_timeout, log=True)
    _log_to(err)
    print(banner(fake, url, control, any_app_id=args.any_app_id), file=out, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(sockets=[sock]))
    return 0


def _log_to(err: TextIO) -> None:
    """uvicorn's warnings (a malformed request, ...) as one line each on stderr."""
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("fake Kartra: %(message)s"))
    logger = logging.getLogger("uvicorn")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
