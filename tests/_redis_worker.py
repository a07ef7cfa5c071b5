"""One process of the cross-process Redis limiter test: acquire N grants, print them.

usage: python tests/_redis_worker.py REDIS_URL APP_ID N LIMIT PERIOD START_AT
"""

from __future__ import annotations

import json
import sys
import time

import anyio

from kartra_async.limits.redis import RedisLimiter


async def main(url: str, app_id: str, n: int, limit: int, period: float, start_at: float) -> None:
    limiter = RedisLimiter(url, app_id, limit=limit, period=period, max_connections=2)
    await anyio.sleep(max(0.0, start_at - time.time()))
    slots: list[float] = []
    woke: list[float] = []

    async def one() -> None:
        slots.append(await limiter.acquire())
        woke.append(time.time())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    await limiter.aclose()
    print(json.dumps({"slots": slots, "woke": woke}))


if __name__ == "__main__":
    url, app_id, n, limit, period, start_at = sys.argv[1:]
    anyio.run(main, url, app_id, int(n), int(limit), float(period), float(start_at))
