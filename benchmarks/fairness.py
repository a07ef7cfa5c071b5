"""Fair queueing between the accounts (tenants) of one App, against the same limiter
with fairness off (`fair=False`: one FIFO per priority, as before), in ONE run.

Scenarios 1-3 run the real client (AsyncKartra, fan_out) against the in-process fake
in virtual time (tests/_virtual_time): they are about the order of the grants, which
virtual time measures exactly and machine load cannot disturb. Scenario 4 runs three
real processes against a real redis-server (RedisLimiter), in real time.

1. A: a burst of 400 calls; B: 10 calls 0.5 s later. Target: B's 10 done <= 1.5 s
   after they start (FIFO: ~19 s).
2. 5 accounts, each a fan_out of 2,000 items, started 1 s apart. Target: while all 5
   run, every account's rate within 10% of 4/s; Jain's fairness index >= 0.99.
3. 50 accounts: one bulk import (fan_out) and 49 interactive callers (Poisson, 5
   calls/s in all). Target: interactive p99 wait <= 150 ms; App utilisation >= 0.99.
4. 3 processes, RedisLimiter, 6 accounts (2 per process), all at once. Target: Jain's
   index >= 0.97 until the first account is done; 0 windows over the limit (Redis's
   clock); >= 0.97 of the budget used.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _common import ROOT, machine, table, verdict

from kartra_async import AsyncKartra
from kartra_async.limits import Grant, Limiter, Priority
from kartra_async.testing import FakeKartra
from kartra_async.testing.redis_server import redis_server
from tests._virtual_time import VirtualTimeLoop

LIMIT, PERIOD = 20, 1.0


class Recording(Limiter):
    """The limiter, noting each grant: (tenant, priority, asked at, granted at)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(LIMIT, PERIOD, clock=anyio.current_time, **kwargs)
        self.log: list[tuple[str, Priority, float, float]] = []

    async def take(self, priority: Priority = "interactive", *, tenant: str | None = None) -> Grant:
        asked = anyio.current_time()
        grant = await super().take(priority, tenant=tenant)
        self.log.append((tenant or "", priority, asked, grant.at))
        return grant


def virtual(run: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, float]:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def setup(fair: bool) -> tuple[FakeKartra, Recording, Callable[[str], AsyncKartra]]:
    fake = FakeKartra(clock=anyio.current_time, seed=7, rate_limit=None)
    fake.seed()
    fake.record = False
    limiter = Recording(fair=fair)

    def client(tenant: str) -> AsyncKartra:
        return AsyncKartra(
            fake.app_id, fake.api_key, fake.api_password, base_url="http://127.0.0.1/api",
            transport=fake.transport(), limiter=limiter, tenant=tenant,
        )  # fmt: skip

    return fake, limiter, client


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if any(values) else 0.0


# ---- 1: a burst and a latecomer


async def burst_and_latecomer(fair: bool) -> dict[str, float]:
    _, _, client = setup(fair)
    async with client("A") as a, client("B") as b:

        async def latecomer() -> float:
            await anyio.sleep(0.5)
            start = anyio.current_time()
            await asyncio.gather(*(b.account.tags() for _ in range(10)))
            return anyio.current_time() - start

        results = await asyncio.gather(
            asyncio.gather(*(a.account.tags() for _ in range(400))), latecomer()
        )
    return {"b_done": results[1]}


# ---- 2: five fan_outs started 1 s apart


async def five_fan_outs(fair: bool) -> dict[str, float]:
    _, limiter, client = setup(fair)
    names = [f"acct{i}" for i in range(5)]

    async def account(i: int) -> None:
        await anyio.sleep(i * 1.0)
        async with client(names[i]) as kartra:
            await kartra.fan_out(
                range(2000), lambda n: kartra.lead(f"lead{n}@example.com").assign_tag("VIP")
            ).run()

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(account, i)
    last = {t: max(at for tt, _, _, at in limiter.log if tt == t) for t in names}
    start, end = 4.0 + 1.0, min(last.values()) - 1.0  # all 5 running, a second in
    origin = min(at for *_, at in limiter.log)
    rates = [
        sum(1 for tt, _, _, at in limiter.log if tt == t and start <= at - origin <= end - origin)
        / (end - origin - start)
        for t in names
    ]
    return {
        "worst": max(abs(r - 4.0) / 4.0 for r in rates),
        "jain": jain(rates),
        "min_rate": min(rates),
        "max_rate": max(rates),
    }


# ---- 3: one bulk import and 49 interactive accounts


async def bulk_and_interactive(fair: bool) -> dict[str, float]:
    _, limiter, client = setup(fair)
    rng = random.Random(18)
    done = anyio.Event()

    async def caller(i: int) -> None:
        async with client(f"user{i}") as kartra:
            while True:
                await anyio.sleep(rng.expovariate(5.0 / 49))
                if done.is_set():
                    return
                await kartra.account.tags()

    async def importer() -> None:
        async with client("importer") as kartra:
            await kartra.fan_out(
                range(1200), lambda n: kartra.lead(f"lead{n}@example.com").assign_tag("VIP")
            ).run()
        done.set()

    async with anyio.create_task_group() as tg:
        for i in range(49):
            tg.start_soon(caller, i)
        tg.start_soon(importer)
    bulk = [at for t, _, _, at in limiter.log if t == "importer"]
    start, end = min(bulk) + 2.0, max(bulk) - 1.0
    waits = sorted(
        at - asked
        for t, p, asked, at in limiter.log
        if p == "interactive" and start <= asked and at <= end
    )
    grants = sum(1 for *_, at in limiter.log if start <= at < end)
    return {
        "p99": waits[int(0.99 * (len(waits) - 1))],
        "interactive": float(len(waits)),
        "utilisation": grants / ((end - start) * LIMIT / PERIOD),
    }


# ---- 4: three processes, RedisLimiter, six accounts


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window - 1e-6) - i for i, t in enumerate(times))


def redis_processes(url: str, fifo: bool, each: int = 40) -> dict[str, float]:
    worker = ROOT / "tests" / "_redis_fair_worker.py"
    start_at = time.time() + 2.5
    specs = [f"a:{each}:0:0,b:{each}:0:0", f"c:{each}:0:0,d:{each}:0:0"]
    specs.append(f"e:{each}:0:0,f:{each}:0:0")
    app_id = f"bench-fair-{time.time_ns()}"
    command = [sys.executable, str(worker), url, app_id, str(LIMIT), str(PERIOD), str(start_at)]
    margin = "0.01"  # acquire() alone reports no round trips to learn from
    processes = [
        subprocess.Popen(
            [*command, spec, "{}", margin, "fifo" if fifo else "fair"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    results: dict[str, dict[str, list[float]]] = {}
    for process in processes:
        out, _ = process.communicate(timeout=180)
        results.update(json.loads(out))
    every = sorted(s for r in results.values() for s in r["slots"])
    woke = sorted(s for r in results.values() for s in r["woke"])
    first_done = min(max(r["slots"]) for r in results.values())
    counts = [float(sum(1 for s in r["slots"] if s <= first_done)) for r in results.values()]
    windows_over = sum(
        1 for i, t in enumerate(every) if bisect.bisect_left(every, t + PERIOD - 1e-6) - i > LIMIT
    )
    ideal = (len(every) - 1) * PERIOD / LIMIT
    return {
        "jain": jain(counts),
        "over": float(windows_over),
        "most": float(most_in_window(every, PERIOD)),
        "most_woke": float(most_in_window(woke, PERIOD)),
        "used": ideal / (every[-1] - every[0]),
    }


def main() -> int:
    ok = True
    print(f"fairness between the accounts of one App ({machine()})\n")
    s1 = {fair: virtual(lambda fair=fair: burst_and_latecomer(fair)) for fair in (True, False)}
    s2 = {fair: virtual(lambda fair=fair: five_fan_outs(fair)) for fair in (True, False)}
    s3 = {fair: virtual(lambda fair=fair: bulk_and_interactive(fair)) for fair in (True, False)}
    with redis_server() as url:
        s4 = {fair: redis_processes(url, fifo=not fair) for fair in (True, False)}
    rows = [
        ("1: B's 10 calls done after", "<= 1.5 s", f"{s1[True]['b_done']:.2f} s",
         f"{s1[False]['b_done']:.2f} s"),
        ("2: worst rate off 4/s (all 5 run)", "<= 10%", f"{s2[True]['worst']:.1%}",
         f"{s2[False]['worst']:.1%}"),
        ("2: rates (min-max)", "", f"{s2[True]['min_rate']:.2f}-{s2[True]['max_rate']:.2f}/s",
         f"{s2[False]['min_rate']:.2f}-{s2[False]['max_rate']:.2f}/s"),
        ("2: Jain's index", ">= 0.99", f"{s2[True]['jain']:.4f}", f"{s2[False]['jain']:.4f}"),
        ("3: interactive p99 wait", "<= 150 ms", f"{s3[True]['p99'] * 1000:.0f} ms",
         f"{s3[False]['p99'] * 1000:.0f} ms"),
        ("3: interactive calls measured", "", f"{s3[True]['interactive']:.0f}",
         f"{s3[False]['interactive']:.0f}"),
        ("3: App utilisation", ">= 0.99", f"{s3[True]['utilisation']:.4f}",
         f"{s3[False]['utilisation']:.4f}"),
        ("4: Jain's index (Redis, 3 processes)", ">= 0.97", f"{s4[True]['jain']:.4f}",
         f"{s4[False]['jain']:.4f}"),
        ("4: windows over the limit (slots)", "0", f"{s4[True]['over']:.0f}",
         f"{s4[False]['over']:.0f}"),
        ("4: most in any 1 s (slots / wake-ups)", f"<= {LIMIT}",
         f"{s4[True]['most']:.0f} / {s4[True]['most_woke']:.0f}",
         f"{s4[False]['most']:.0f} / {s4[False]['most_woke']:.0f}"),
        ("4: budget used", ">= 0.97", f"{s4[True]['used']:.4f}", f"{s4[False]['used']:.4f}"),
    ]  # fmt: skip
    print(table("Fair queueing vs FIFO (fair=False), same run", rows,
                ("scenario", "target", "fair (ours)", "FIFO baseline")))  # fmt: skip
    ok &= verdict(s1[True]["b_done"] <= 1.5, "1: the latecomer's 10 calls within 1.5 s")
    ok &= verdict(s2[True]["worst"] <= 0.10, "2: every account within 10% of 4/s")
    ok &= verdict(s2[True]["jain"] >= 0.99, "2: Jain's index >= 0.99")
    ok &= verdict(s3[True]["p99"] <= 0.150, "3: interactive p99 wait <= 150 ms")
    ok &= verdict(s3[True]["utilisation"] >= 0.99, "3: App utilisation >= 0.99")
    ok &= verdict(s4[True]["jain"] >= 0.97, "4: Jain's index >= 0.97 across processes")
    ok &= verdict(s4[True]["over"] == 0, "4: no window over the limit")
    ok &= verdict(s4[True]["used"] >= 0.97, "4: >= 0.97 of the budget used")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
