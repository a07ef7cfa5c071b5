"""The limit where Kartra counts it: over real loopback HTTP, at the server.

Each profile starts `python -m kartra_async.testing --arrival-delay LOW-HIGH` (through
benchmarks/_fake_server.py, which records when the rate referee counted each call) and
sends N = 300 calls from 300 concurrent tasks at Kartra's limit, 20 calls/s per App:

| profile                                   | 429 answers                    | share of 20/s |
|-------------------------------------------|--------------------------------|---------------|
| LAN: 0-5 ms one-way                       | 0                              | >= 0.97       |
| internet: 20-120 ms one-way (J = 100 ms)  | <= 2, all in the first 100     | >= 0.85       |
| 2 processes with RedisLimiter, LAN        | 0                              | >= 0.95       |

The baseline, in the same run and against the same server: aiolimiter(20/s) in front of
each call, a 429 answered by waiting 1 s and sending again (Kartra's documented remedy).
"share" is the rate of accepted arrivals at the server, (accepted - 1) / span, over 20/s.
Prints the most arrivals in any 1 s window at the server (every arrival, refused or
not), the final margin and the jitter estimate. Exit status 1 when a target is missed.
Needs aiolimiter and redis-server on PATH.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import ROOT, machine, table, verdict

from kartra_async import AsyncKartra, RateLimitError, RetryPolicy
from kartra_async.limits import Limiter
from kartra_async.testing.redis_server import redis_server

N = 300
LIMIT = 20
APP, KEY, PASSWORD = "bench-app", "bench-key", "bench-password"
PROFILES = {"LAN": "0-0.005", "internet": "0.02-0.12"}


@contextlib.contextmanager
def fake_server(arrival_delay: str, record: Path) -> Iterator[str]:
    command = [
        sys.executable, str(ROOT / "benchmarks" / "_fake_server.py"), str(record),
        "--port", "0", "--arrival-delay", arrival_delay, "--empty",
        "--app-id", APP, "--api-key", KEY, "--api-password", PASSWORD,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        found = re.search(r"(http://\S+/api)", process.stdout.readline())
        if found is None:
            raise RuntimeError("the fake server did not start")
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(10)


def most_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    edge = window - 1e-6
    return max((bisect.bisect_left(times, t + edge) - i for i, t in enumerate(times)), default=0)


def referee(record: Path) -> dict[str, object]:
    """What the server's rate referee saw: arrivals in order, with their status."""
    seen = [line.split() for line in record.read_text().splitlines() if line.strip()]
    arrivals = [(float(at), int(status)) for at, status in seen]
    arrivals.sort()
    accepted = [at for at, status in arrivals if status == 200]
    refused = [i for i, (_, status) in enumerate(arrivals) if status == 429]
    span = max(accepted) - min(accepted)
    return {
        "calls": len(accepted),
        "refused": refused,
        "most": most_in_window([at for at, _ in arrivals]),
        "share": (len(accepted) - 1) / LIMIT / span,
    }


async def ours(url: str) -> tuple[float, float]:
    limiter = Limiter(LIMIT, 1.0, name="bench")  # the shared limiter's settings, fresh
    async with AsyncKartra(APP, KEY, PASSWORD, base_url=url, limiter=limiter) as kartra:
        await asyncio.gather(*(kartra.account.tags() for _ in range(N)))
    return limiter.stats.margin, limiter.stats.jitter


async def baseline(url: str) -> None:
    from aiolimiter import AsyncLimiter

    throttle = AsyncLimiter(LIMIT, 1.0)
    async with AsyncKartra(
        APP, KEY, PASSWORD, base_url=url, limiter=None, retry=RetryPolicy(max_attempts=1)
    ) as kartra:

        async def one() -> None:
            while True:
                async with throttle:
                    try:
                        await kartra.account.tags()
                        return
                    except RateLimitError:
                        pass
                await asyncio.sleep(1.0)

        await asyncio.gather(*(one() for _ in range(N)))


async def redis_client(url: str, redis_url: str, n: int, start_at: float) -> dict[str, float]:
    """One of the two processes of the Redis profile."""
    from kartra_async.limits.redis import RedisLimiter

    async with RedisLimiter(redis_url, APP) as limiter:
        async with AsyncKartra(APP, KEY, PASSWORD, base_url=url, limiter=limiter) as kartra:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            await asyncio.gather(*(kartra.account.tags() for _ in range(n)))
        return {"margin": limiter.stats.margin, "jitter": limiter.stats.jitter}


def two_processes(url: str, redis_url: str) -> tuple[float, float]:
    start_at = time.time() + 3.0
    command = [sys.executable, __file__, "--client", url, redis_url, str(N // 2), str(start_at)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    margins, jitters = [], []
    for process in processes:
        out, _ = process.communicate(timeout=300)
        data = json.loads(out)
        margins.append(data["margin"])
        jitters.append(data["jitter"])
    return max(margins), max(jitters)


def row(
    profile: str, who: str, seen: dict[str, object], margin: str, jitter: str
) -> tuple[str, ...]:
    refused = seen["refused"]
    assert isinstance(refused, list)
    first = f" (first at #{refused[0]}, last #{refused[-1]})" if refused else ""
    return (
        profile, who, str(seen["calls"]), f"{len(refused)}{first}", str(seen["most"]),
        f"{seen['share']:.3f}", margin, jitter,
    )  # fmt: skip


def main() -> int:
    rows: list[tuple[str, ...]] = []
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, delay in PROFILES.items():
            for who in ("aiolimiter", "kartra_async"):
                record = Path(tmp) / f"{name}-{who}.txt"
                with fake_server(delay, record) as url:
                    if who == "aiolimiter":
                        asyncio.run(baseline(url))
                        margin = jitter = "-"
                    else:
                        m, j = asyncio.run(ours(url))
                        margin, jitter = f"{m * 1000:.1f} ms", f"{j * 1000:.1f} ms"
                time.sleep(0.2)
                seen = referee(record)
                results[f"{name}/{who}"] = seen
                rows.append(row(f"{name} ({delay} s)", who, seen, margin, jitter))
        try:
            with redis_server() as redis_url:
                record = Path(tmp) / "redis.txt"
                with fake_server(PROFILES["LAN"], record) as url:
                    m, j = two_processes(url, redis_url)
                time.sleep(0.2)
                seen = referee(record)
                results["redis"] = seen
                rows.append(
                    row(
                        f"2 processes, RedisLimiter, LAN ({PROFILES['LAN']} s)",
                        "kartra_async",
                        seen,
                        f"{m * 1000:.1f} ms",
                        f"{j * 1000:.1f} ms",
                    )
                )
        except FileNotFoundError:
            print("MISS redis-server is not installed: the Redis profile was not measured")
            return 1
    print(
        table(
            f"{N} calls from {N} tasks at {LIMIT}/s over loopback HTTP, counted at the "
            f"server ({machine()})",
            rows,
            (
                "profile",
                "limiter",
                "accepted",
                "429 answers",
                "most in any 1 s",
                "share of 20/s",
                "final margin",
                "jitter estimate",
            ),
        )
    )
    lan, internet, redis = (
        results["LAN/kartra_async"],
        results["internet/kartra_async"],
        results["redis"],
    )
    ok = True
    for name, seen, share in (("LAN", lan, 0.97), ("2 processes, Redis", redis, 0.95)):
        refused = seen["refused"]
        assert isinstance(refused, list)
        ok &= verdict(not refused, f"{name}: {len(refused)} answers 429 == 0")
        ok &= verdict(
            float(seen["share"]) >= share, f"{name}: share {seen['share']:.3f} >= {share}"
        )  # type: ignore[arg-type]
    refused = internet["refused"]
    assert isinstance(refused, list)
    ok &= verdict(len(refused) <= 2, f"internet: {len(refused)} answers 429 <= 2")
    ok &= verdict(all(i < 100 for i in refused), "internet: every 429 among the first 100 calls")
    ok &= verdict(
        float(internet["share"]) >= 0.85, f"internet: share {internet['share']:.3f} >= 0.85"
    )  # type: ignore[arg-type]
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        url, redis_url, n, start_at = sys.argv[2:6]
        print(json.dumps(asyncio.run(redis_client(url, redis_url, int(n), float(start_at)))))
        sys.exit(0)
    sys.exit(main())
