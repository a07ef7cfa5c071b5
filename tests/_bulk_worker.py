"""A bulk job in its own process, for test_bulk.py: killed with SIGKILL mid-job, or run
twice at once on one journal.

usage: python tests/_bulk_worker.py BASE_URL JOURNAL N [GATE]

With GATE, the items after the fifth wait until the file GATE exists.

Prints each finished item's key; a KartraError ends it with "ERROR <class>: <message>"
on stderr and exit status 3.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from kartra_async import AsyncKartra, KartraError, RetryPolicy


def build_for(kartra: AsyncKartra) -> Any:
    def build(i: int) -> Any:
        if i % 2 == 0:  # unsafe: creates a lead and gives points
            return kartra.lead(f"new{i}@example.com").create().give_points(5)
        return kartra.lead(f"old{i}@example.com").assign_tag("VIP")  # idempotent

    return build


async def items(n: int, gate: Path | None) -> AsyncIterator[int]:
    for i in range(n):
        while gate is not None and i >= 5 and not await anyio.Path(gate).exists():  # noqa: ASYNC110
            await anyio.sleep(0.05)
        yield i


async def main(url: str, journal: str, n: int, gate: Path | None) -> None:
    async with AsyncKartra("fake-app", "fake-key", "fake-password", base_url=url, limiter=None,
                           retry=RetryPolicy(max_attempts=1)) as kartra:  # fmt: skip
        job = kartra.fan_out(
            items(n, gate), build_for(kartra), journal=journal, key=str, concurrency=10
        )
        async with job:
            async for outcome in job:
                print(outcome.key, flush=True)


if __name__ == "__main__":
    try:
        gate = Path(sys.argv[4]) if len(sys.argv) > 4 else None
        anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), gate)
    except KartraError as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)
