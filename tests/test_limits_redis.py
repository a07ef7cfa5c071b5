"""RedisLimiter against a real redis-server on 127.0.0.1 (started by the `redis_url`
fixture; .ci/run installs the Debian package)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest

from kartra_async import _client as client_module
from kartra_async.limits.redis import RedisLimiter
from kartra_async.testing import FakeKartra

from .test_limits import most_in_any_window

pytestmark = pytest.mark.anyio


def app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def test_one_process_any_window_and_fifo(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url, app(), limit=20, period=0.2, margin=0.0)
    entered: list[int] = []
    slot_of: dict[int, float] = {}

    async def task(i: int) -> None:
        entered.append(i)
        slot_of[i] = await limiter.acquire()

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(task, i)
    await limiter.aclose()
    slots = list(slot_of.values())
    assert most_in_any_window(slots, 0.2) == 20
    in_entry_order = [slot_of[i] for i in entered]
    assert in_entry_order == sorted(in_entry_order)
    assert 0.79 <= max(slots) - min(slots) <= 0.85  # 5 windows of 20: the whole budget
    assert limiter.stats.grants == 100


async def test_four_processes_share_one_budget(redis_url: str) -> None:
    app_id, limit, period = app(), 20, 0.25
    start_at = time.time() + 1.5  # every process starts together
    worker = Path(__file__).with_name("_redis_worker.py")
    command = [
        sys.executable,
        str(worker),
        redis_url,
        app_id,
        "50",
        str(limit),
        str(period),
        str(start_at),
    ]
    slots: list[float] = []
    woke: list[float] = []

    async def one_process() -> None:
        done = await anyio.run_process(command)
        data = json.loads(done.stdout)
        slots.extend(data["slots"])
        woke.extend(data["woke"])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one_process)
    assert len(slots) == 200
    assert most_in_any_window(slots, period) <= limit  # Redis's clock: exact
    assert most_in_any_window(woke, period) <= limit  # when each process really went
    ideal = (200 / limit - 1) * (period + 0.01)  # the default margin: 10 ms per window
    used = max(slots) - min(slots)
    assert used <= ideal * 1.03, (used, ideal)  # >= 97% of the budget used


async def test_cancelled_waiter_gives_its_slot_back(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url, app(), limit=2, period=0.3, margin=0.0)
    first = await limiter.acquire()
    await limiter.acquire()
    with anyio.move_on_after(0.05):
        await limiter.acquire()  # reserved first + 0.3, cancelled while sleeping
    assert limiter.stats.cancelled == 1
    after = await limiter.acquire()
    assert abs(after - (first + 0.3)) < 0.02  # got the slot the cancelled one gave back
    await limiter.aclose()


async def test_backoff_pauses_every_process(redis_url: str) -> None:
    app_id = app()
    one = RedisLimiter(redis_url, app_id, limit=100, period=1.0)
    other = RedisLimiter(redis_url, app_id, limit=100, period=1.0)
    before = await other.acquire()
    await one.backoff(0.3)
    after = await other.acquire()
    assert after - before >= 0.29
    assert one.stats.rate_limited == 1
    await one.aclose()
    await other.aclose()


async def test_a_burst_never_exhausts_the_pool(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url, app(), limit=1000, period=1.0, max_connections=1)
    async with anyio.create_task_group() as tg:
        for _ in range(300):
            tg.start_soon(limiter.acquire)
    assert limiter.stats.grants == 300
    await limiter.aclose()


async def test_client_with_redis_limiter_against_the_fake(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RATE_LIMIT_PAUSE", 0.05)
    fake = FakeKartra(rate_limit=5, rate_period=0.2)
    fake.seed()
    limiter = RedisLimiter(redis_url, fake.app_id + uuid.uuid4().hex, limit=10, period=0.2)
    async with fake.client(limiter=limiter) as kartra, anyio.create_task_group() as tg:
        for i in range(15):
            tg.start_soon(kartra.lead(f"r{i}@example.com").create().send)
    statuses = [r.status for r in fake.requests]
    assert statuses.count(200) == 15
    assert limiter.stats.rate_limited == statuses.count(429) >= 1
    assert len(fake.account.leads) == 2 + 15
    await limiter.aclose()
