"""One process of the cross-process Redis limiter test: acquire N grants, print them.

usage: python tests/_redis_worker.py REDIS_URL APP_ID N LIMIT PERIOD START_AT [BURST [MARGIN]]

BURST defaults to LIMIT (no pacing: the sliding log alone), MARGIN to "auto".
"""

from __future__ import annotations

import json
import sys
import time
from typing import Literal

import anyio

from kartra_async.limits.redis import RedisLimiter


async def main(
    url: str, app_id: str, n: int, limit: int, period: float, start_at: float, burst: int,
    margin: float | Literal["auto"],
) -> None:  # fmt: skip
    async with RedisLimiter(
        url, app_id, limit=limit, period=period, burst=burst, margin=margin, max_connections=2
    ) as limiter:
        await run(limiter, n, start_at)


async def run(limiter: RedisLimiter, n: int, start_at: float) -> None:
    await anyio.sleep(max(0.0, start_at - time.time()))
    slots: list[float] = []
    woke: list[float] = []

    async def one() -> None:
        slots.append(await limiter.acquire())
        woke.append(time.time())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    print(json.dumps({"slots": slots, "woke": woke}))


if __name__ == "__main__":
    url, app_id, n, limit, period, start_at = sys.argv[1:7]
    burst = int(sys.argv[7]) if len(sys.argv) > 7 else int(limit)
    margin: float | Literal["auto"] = float(sys.argv[8]) if len(sys.argv) > 8 else "auto"
    anyio.run(main, url, app_id, int(n), int(limit), float(period), float(start_at), burst, margin)
