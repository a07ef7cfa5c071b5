"""A bulk job in its own process, to be killed with SIGKILL mid-job by test_bulk.py.

usage: python tests/_bulk_worker.py BASE_URL JOURNAL N
"""

from __future__ import annotations

import sys

import anyio

from kartra_async import AsyncKartra, RetryPolicy


def build_for(kartra: AsyncKartra):  # type: ignore[no-untyped-def]
    def build(i: int):  # type: ignore[no-untyped-def]
        if i % 2 == 0:  # unsafe: creates a lead and gives points
            return kartra.lead(f"new{i}@example.com").create().give_points(5)
        return kartra.lead(f"old{i}@example.com").assign_tag("VIP")  # idempotent

    return build


async def main(url: str, journal: str, n: int) -> None:
    async with AsyncKartra("fake-app", "fake-key", "fake-password", base_url=url, limiter=None,
                           retry=RetryPolicy(max_attempts=1)) as kartra:  # fmt: skip
        job = kartra.fan_out(range(n), build_for(kartra), journal=journal, key=str, concurrency=10)
        async with job:
            async for outcome in job:
                print(outcome.key, flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
