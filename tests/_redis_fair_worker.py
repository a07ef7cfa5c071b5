"""One process of the cross-process fairness tests and benchmark: tenants acquire
slots from one RedisLimiter; print each tenant's slots (Redis's clock) and wake-ups.

usage: python tests/_redis_fair_worker.py REDIS_URL APP_ID LIMIT PERIOD START_AT SPEC
       [WEIGHTS_JSON [MARGIN [fifo]]]

SPEC: tenant:count:delay:concurrency[,...]; a tenant starts `delay` seconds after
START_AT and keeps `concurrency` calls waiting (0: all `count` at once). "fifo": the
calls name no tenant (one FIFO for all: the benchmark's baseline).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Literal

import anyio

from kartra_async.limits.redis import RedisLimiter


async def main(
    url: str, app_id: str, limit: int, period: float, start_at: float, spec: str,
    weights: dict[str, float], margin: float | Literal["auto"], fifo: bool = False,
) -> None:  # fmt: skip
    result: dict[str, dict[str, list[float]]] = {}
    async with RedisLimiter(
        url, app_id, limit=limit, period=period, margin=margin, weights=weights or None,
        max_connections=4,
    ) as limiter:  # fmt: skip

        async def tenant(name: str, count: int, delay: float, concurrency: int) -> None:
            slots: list[float] = []
            woke: list[float] = []
            result[name] = {"slots": slots, "woke": woke, "started": []}
            await anyio.sleep(max(0.0, start_at + delay - time.time()))
            result[name]["started"].append(time.time())
            left = count
            limiter_ = anyio.CapacityLimiter(concurrency or count)

            async def one() -> None:
                async with limiter_:
                    slots.append(await limiter.acquire(tenant=None if fifo else name))
                    woke.append(time.time())

            async with anyio.create_task_group() as tg:
                while left:
                    left -= 1
                    tg.start_soon(one)

        async with anyio.create_task_group() as tg:
            for part in spec.split(","):
                name, count, delay, concurrency = part.split(":")
                tg.start_soon(tenant, name, int(count), float(delay), int(concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    url, app_id, limit, period, start_at, spec = sys.argv[1:7]
    weights = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
    margin: float | Literal["auto"] = float(sys.argv[8]) if len(sys.argv) > 8 else "auto"
    fifo = sys.argv[9:10] == ["fifo"]
    anyio.run(
        main, url, app_id, int(limit), float(period), float(start_at), spec, weights, margin, fifo
    )
