"""`python -m kartra_async.testing`: serve a FakeKartra over HTTP on loopback.

    python -m kartra_async.testing --host 127.0.0.1 --port 8765 \\
        --app-id A --api-key K --api-password P [--rate-limit 20] [--latency 0.3-1.0] \\
        [--arrival-delay 0.02-0.12] \\
        [--test-mode] [--empty]

A client written from Kartra's docs, pointed at http://127.0.0.1:8765/api, gets the
documented answers. It serves the seeded demo account unless told --empty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from .fake import FakeKartra
from .server import serve


def _latency(text: str) -> float | tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        return (float(low), float(high)) if sep else float(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"latency is SECONDS or LOW-HIGH, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kartra_async.testing", description="Serve a fake Kartra API on loopback."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    p.add_argument("--app-id", default="fake-app")
    p.add_argument("--api-key", default="fake-key")
    p.add_argument("--api-password", default="fake-password")
    p.add_argument(
        "--rate-limit", type=int, default=20, help="calls per second per App; 0 turns it off"
    )
    p.add_argument(
        "--latency", type=_latency, default=None, help="seconds, or LOW-HIGH for a random range"
    )
    p.add_argument(
        "--arrival-delay",
        type=_latency,
        default=0.0,
        help="one-way delay before the rate limit counts a call: SECONDS or LOW-HIGH",
    )
    p.add_argument(
        "--test-mode", action="store_true", help="rewrite new leads' emails to @kartra.com"
    )
    p.add_argument(
        "--empty", action="store_true", help="start with an empty account instead of the demo"
    )
    return p


async def run(args: argparse.Namespace) -> None:
    fake = FakeKartra(
        args.app_id, args.api_key, args.api_password,
        rate_limit=args.rate_limit or None, test_mode=args.test_mode,
        arrival_delay=args.arrival_delay,
    )  # fmt: skip
    fake.faults.latency = args.latency
    if not args.empty:
        fake.seed()
    server = await serve(fake, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    print(
        f"fake Kartra listening on http://{args.host}:{port}/api (app_id={args.app_id})", flush=True
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
