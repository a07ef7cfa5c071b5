"""Our limiter against aiolimiter, pyrate-limiter and limits, in ONE run (asyncio),
then the Redis limiter against a raw EVALSHA and across 4 processes.

For each in-process limiter, N tasks start at once at `LIMIT` per second:
  - uncontended ns per acquire (a limit that is never reached);
  - the most grants seen in any 1 s window (must be <= LIMIT);
  - total time against the paced ideal (N - 1)/LIMIT s;
  - share of calls overtaken (granted before a call that queued earlier);
  - CPU seconds used while the N tasks wait.
Targets for ours: zero windows over the limit; total <= 1.03 x ideal, where the ideal
is (N - 1) / LIMIT s: ours paces (N grants at exactly LIMIT/s) where a bare sliding log
releases LIMIT at each window edge and ends one window sooner, (N/LIMIT - 1) s; 0% overtaken;
CPU <= 2 x aiolimiter's; uncontended acquire <= 0.8 x aiolimiter's. Redis:
one round trip per grant costing <= 1.3 x a raw EVALSHA of the same script, and 4
processes <= limit in every window with >= 97% of the budget used.
Needs aiolimiter, pyrate-limiter, limits; redis-server on PATH for the Redis part.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from _common import ROOT, machine, table, verdict

from kartra_async.limits import Limiter
from kartra_async.testing.redis_server import redis_server

LIMIT = 200
N = 2000

Acquire = Callable[[], Awaitable[object]]


def most_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window - 1e-6) - i for i, t in enumerate(times))


def make(name: str, rate: int) -> Acquire:
    if name == "kartra_async":
        ours = Limiter(rate, 1.0)
        return ours.acquire
    if name == "aiolimiter":
        from aiolimiter import AsyncLimiter

        theirs = AsyncLimiter(rate, 1.0)
        return theirs.acquire
    if name == "pyrate-limiter":
        from pyrate_limiter import Duration, Rate
        from pyrate_limiter import Limiter as Pyrate

        pyrate = Pyrate(Rate(rate, Duration.SECOND))
        return pyrate.try_acquire_async
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    item = RateLimitItemPerSecond(rate)
    moving = MovingWindowRateLimiter(MemoryStorage())

    async def acquire() -> None:  # limits does not wait: poll until the window frees
        while not await moving.hit(item):
            stats = await moving.get_window_stats(item)
            await asyncio.sleep(max(0.0, stats.reset_time - time.time()))

    return acquire


async def uncontended(name: str) -> float:
    acquire = make(name, 10**9)
    n = 20000
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            await acquire()
        best = min(best, (time.perf_counter() - start) / n)
    return best


async def contended(name: str) -> dict[str, float]:
    acquire = make(name, LIMIT)
    entered: list[int] = []
    granted: dict[int, float] = {}

    async def task(i: int) -> None:
        entered.append(i)
        await acquire()
        granted[i] = time.monotonic()

    cpu, start = time.process_time(), time.monotonic()
    await asyncio.gather(*(task(i) for i in range(N)))
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    order = [granted[i] for i in entered]
    latest, overtaken = -1.0, 0
    for at in order:
        if at < latest:
            overtaken += 1
        latest = max(latest, at)
    return {
        "window": most_in_window(list(granted.values())),
        "total": elapsed / ((N - 1) / LIMIT),
        "overtaken": overtaken / N,
        "cpu": cpu,
    }


# ---- Redis


async def redis_costs(url: str) -> tuple[float, float]:
    from kartra_async.limits.redis import RESERVE_SCRIPT, RedisLimiter

    async with RedisLimiter(url, "bench-uncontended", limit=10**8, period=1.0) as limiter:
        await limiter.reset()
        keys = ["bench-raw:log", "bench-raw:pause", "bench-raw:active", "bench-raw:weights"]
        keys.append("bench-raw:t:default")
        args = [10**8, 1_000_000, 10, 10**8, 300_000_000, "default", "1.0", 1]
        n = 1000
        for _ in range(200):
            await limiter.acquire()
            await limiter.redis.script(RESERVE_SCRIPT, keys, args)
        ours = raw = float("inf")
        for _ in range(15):  # interleaved, best of each: round trips on a shared machine are noisy
            start = time.perf_counter()
            for _ in range(n):
                await limiter.acquire()
            ours = min(ours, (time.perf_counter() - start) / n)
            start = time.perf_counter()
            for _ in range(n):
                await limiter.redis.script(RESERVE_SCRIPT, keys, args)
            raw = min(raw, (time.perf_counter() - start) / n)
        await limiter.redis.delete(keys)
        await limiter.reset()
    return ours, raw


def four_processes(
    url: str, limit: int = 40, period: float = 1.0, each: int = 60
) -> tuple[int, int, float]:
    worker = ROOT / "tests" / "_redis_worker.py"
    start_at = time.time() + 1.5
    command = [
        sys.executable,
        str(worker),
        url,
        f"bench-{time.time_ns()}",
        str(each),
        str(limit),
        str(period),
        str(start_at),
        str(limit),  # burst: the sliding log alone
        "0.01",  # margin: acquire() alone reports no round trips to learn from
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    slots: list[float] = []
    woke: list[float] = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        data = json.loads(out)
        slots += data["slots"]
        woke += data["woke"]
    ideal = (4 * each / limit - 1) * period
    used = ideal / (max(slots) - min(slots))
    return most_in_window(slots, period), most_in_window(woke, period), used


def main() -> int:
    names = ["kartra_async", "aiolimiter", "pyrate-limiter", "limits"]
    rows, results = [], {}
    for name in names:
        ns = asyncio.run(uncontended(name)) * 1e9
        stats = asyncio.run(contended(name))
        results[name] = (ns, stats)
        rows.append(
            (
                name,
                f"{ns:.0f}",
                str(stats["window"]),
                f"{stats['total']:.4f}",
                f"{stats['overtaken']:.1%}",
                f"{stats['cpu']:.3f}",
            )
        )
    print(
        table(
            f"Limiters, {N} tasks at {LIMIT}/s, asyncio ({machine()})",
            rows,
            (
                "limiter",
                "uncontended ns",
                "most in any 1 s",
                "total / ideal",
                "overtaken",
                "CPU s while waiting",
            ),
        )
    )
    ours_ns, ours = results["kartra_async"]
    aio_ns, aio = results["aiolimiter"]
    ok = verdict(ours["window"] <= LIMIT, f"no window over {LIMIT} (saw {ours['window']})")
    # the log counts each grant from when its waiter resumed: at 200/s (5 ms apart) on a
    # busy 2-core machine that lag is a few % of the interval
    ok &= verdict(ours["total"] <= 1.03, f"total {ours['total']:.4f} x paced ideal <= 1.03")
    ok &= verdict(ours["overtaken"] == 0, f"{ours['overtaken']:.1%} overtaken == 0%")
    # pacing wakes the timer once per grant (aiolimiter: once per waiter), plus a hand-off
    ok &= verdict(
        ours["cpu"] <= 2 * aio["cpu"],
        f"CPU while waiting {ours['cpu']:.3f}s <= 2 x aiolimiter's {aio['cpu']:.3f}s",
    )
    ok &= verdict(
        ours_ns <= 0.8 * aio_ns, f"uncontended {ours_ns / aio_ns:.2f} x aiolimiter's <= 0.8"
    )

    try:
        with redis_server() as url:
            ours_s, raw_s = asyncio.run(redis_costs(url))
            slots_max, woke_max, used = four_processes(url)
    except FileNotFoundError:
        print("MISS redis-server is not installed: the Redis targets were not measured")
        return 1
    print(
        table(
            "Redis limiter (redis-server on 127.0.0.1)",
            [
                ("raw EVALSHA of the reserve script (baseline)", f"{raw_s * 1e6:.1f} us", "1.00"),
                (
                    "RedisLimiter.acquire, uncontended",
                    f"{ours_s * 1e6:.1f} us",
                    f"{ours_s / raw_s:.2f}",
                ),
                ("4 processes, 40 per 1 s: most in any window (Redis clock)", str(slots_max), ""),
                ("4 processes: most in any window (wake-up times)", str(woke_max), ""),
                ("4 processes: share of the budget used", f"{used:.1%}", ""),
            ],
            ("what", "value", "ratio"),
        )
    )
    # every Redis operation now runs under a deadline (anyio.fail_after) and the FIFO gate
    ok &= verdict(ours_s / raw_s <= 1.3, f"acquire {ours_s / raw_s:.2f} x raw EVALSHA <= 1.3")
    ok &= verdict(slots_max <= 40 and woke_max <= 40, "4 processes never over the limit")
    ok &= verdict(used >= 0.97, f"4 processes used {used:.1%} >= 97% of the budget")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
