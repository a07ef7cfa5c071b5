"""RedisLimiter's fair share between tenants, decided in Redis, with several processes
against a real redis-server. Assertions are about the order and the count of slots in
Redis's clock (exact), with bounds far from what FIFO would give."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from kartra_async.limits.redis import RedisLimiter

from .test_limits import most_in_any_window

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("_redis_fair_worker.py")


def app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def processes(
    url: str,
    specs: list[str],
    *,
    limit: int,
    period: float,
    weights: dict[str, float] | None = None,
) -> dict[str, dict[str, list[float]]]:
    app_id = app()
    start_at = time.time() + 3.0  # every process started and connected
    results: dict[str, dict[str, list[float]]] = {}

    async def one(spec: str) -> None:
        command = [sys.executable, str(WORKER), url, app_id, str(limit), str(period)]
        command += [str(start_at), spec, json.dumps(weights or {}), "0.03"]
        done = await anyio.run_process(command)
        results.update(json.loads(done.stdout))

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec)
    return results


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def while_all_wait(results: dict[str, dict[str, list[float]]], period: float) -> list[int]:
    """Each tenant's slots from a window after the last one's first slot (processes
    start a little apart on a loaded machine) until the first tenant is done."""
    start = max(min(r["slots"]) for r in results.values()) + period
    end = min(max(r["slots"]) for r in results.values())
    return [sum(1 for s in r["slots"] if start <= s <= end) for r in results.values()]


async def test_six_tenants_over_three_processes_share_fairly(redis_url: str) -> None:
    limit, period = 20, 0.25
    specs = ["a:60:0:0,b:60:0:0", "c:60:0:0,d:60:0:0", "e:60:0:0,f:60:0:0"]
    results = await processes(redis_url, specs, limit=limit, period=period)
    every = sorted(s for r in results.values() for s in r["slots"])
    assert len(every) == 360
    assert most_in_any_window(every, period) <= limit
    # while all six wait, each gets about a sixth
    counts = while_all_wait(results, period)
    assert sum(counts) >= 120, counts
    assert jain([float(c) for c in counts]) >= 0.95, counts


async def test_a_late_small_tenant_overtakes_a_deep_queue(redis_url: str) -> None:
    limit, period = 20, 0.25
    results = await processes(
        redis_url, ["big:200:0:0", "small:5:0.5:0"], limit=limit, period=period
    )
    big, small = sorted(results["big"]["slots"]), sorted(results["small"]["slots"])
    # big slots between small's arrival and small's last slot: about one window of big's
    # held slots and a share of the rest (FIFO: all of big's ~160 still waiting)
    started = results["small"]["started"][0]
    ahead = sum(1 for s in big if started < s <= small[-1])
    assert ahead <= 30, ahead
    assert most_in_any_window(sorted(big + small), period) <= limit


async def test_weights(redis_url: str) -> None:
    limit, period = 20, 0.25
    results = await processes(
        redis_url, ["heavy:150:0:0,light:150:0:0"], limit=limit, period=period,
        weights={"heavy": 2},
    )  # fmt: skip
    heavy, light = while_all_wait(results, period)
    assert light >= 20, (heavy, light)
    assert 1.5 <= heavy / light <= 2.5, (heavy, light)


async def test_idle_tenants_leave_redis(redis_url: str) -> None:
    async with RedisLimiter(redis_url, app(), limit=100, period=1.0, idle_ttl=0.3) as limiter:
        client: Any = limiter.redis.client  # type: ignore[attr-defined]
        active, weights = limiter._keys[2], limiter._keys[3]
        await limiter.acquire(tenant="gone")
        assert await client.zrange(active, 0, -1) == (b"gone",)
        await anyio.sleep(0.5)
        await limiter.acquire(tenant="stays")
        assert await client.zrange(active, 0, -1) == (b"stays",)
        assert list(await client.hkeys(weights)) == [b"stays"]
        assert set(limiter.stats.tenants) == {"stays"}
        assert await client.exists([limiter._tenant_prefix + "gone"])
        # a tenant's own slot list expires a second after its last slot and the ttl
        await anyio.sleep(1.5)
        assert not await client.exists([limiter._tenant_prefix + "gone"])


async def test_a_cancelled_tenant_gives_its_slots_back(redis_url: str) -> None:
    async with RedisLimiter(redis_url, app(), limit=4, period=0.3, margin=0.0, burst=4) as limiter:
        for _ in range(4):
            await limiter.acquire(tenant="a")  # the window is full
        with anyio.move_on_after(0.1):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(lambda: limiter.acquire(tenant="b"))
        assert limiter.stats.cancelled == 3
        assert limiter.stats.tenants["b"].queued == 0
        assert limiter.stats.tenants["b"].grants == 0
        client: Any = limiter.redis.client  # type: ignore[attr-defined]
        assert await client.llen(limiter._tenant_prefix + "b") == 0
        assert await client.llen(limiter._keys[0]) == 4  # only a's
