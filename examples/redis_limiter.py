"""Several processes, one Kartra App, one rate limit: RedisLimiter (guide: "Rate limits").

Kartra allows 20 calls per second per App. Each process's own limiter keeps that
process under 20/s; two worker processes (gunicorn workers, task-queue workers, cron
jobs) together send up to 40/s, and Kartra answers the excess with HTTP 429.
`RedisLimiter` keeps the count in Redis, so every process of the App shares one budget.

Start a Redis first (any Redis 6.2+; no persistence needed):

    redis-server --port 6379 --save '' --appendonly no     # Debian: apt-get install redis-server
    # or: docker run --rm -p 6379:6379 redis:7

then, with the redis extra installed (`pip install 'kartra-async[redis]'`):

    python examples/redis_limiter.py redis://127.0.0.1:6379/0 [--processes 2] [--calls 20]

It serves a fake Kartra (the demo account, refusing more than 20 calls a second with
HTTP 429, as Kartra does) over HTTP on 127.0.0.1, and runs the workers twice: each with
its own limiter, then all sharing a RedisLimiter. Each worker (this script with
--worker) makes `--calls` calls, all at once, starting at the same moment as the others.
It prints what the fake saw each time: the calls, the 429 answers, and the most calls it
accepted in any one second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import anyio

from kartra_async import AsyncKartra, KartraError, Limiter, RedisLimiter

if TYPE_CHECKING:
    from kartra_async.testing import FakeKartra


async def worker(redis_url: str | None, calls: int) -> None:
    """One process: once connected, says "ready" and waits for "go" on stdin (so every
    worker starts at the same moment), then makes `calls` calls at once, paced by its
    limiter, and prints what happened."""
    app_id = os.environ["KARTRA_APP_ID"]
    done, failed = 0, 0

    async def one(kartra: AsyncKartra) -> None:
        nonlocal done, failed
        try:
            await kartra.account.tags()
            done += 1
        except KartraError as exc:
            failed += 1
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)

    async def run(limiter: Limiter | RedisLimiter) -> None:
        async with AsyncKartra.from_env(limiter=limiter) as kartra:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            async with anyio.create_task_group() as tasks:
                for _ in range(calls):
                    tasks.start_soon(one, kartra)

    if redis_url is None:
        await run(Limiter())  # this process's own: 20/s for this process alone
    else:
        async with RedisLimiter(redis_url, app_id) as limiter:  # 20/s for every process
            await run(limiter)
    print(json.dumps({"done": done, "failed": failed}), flush=True)


def start_workers(
    env: dict[str, str], redis_url: str | None, processes: int, calls: int
) -> list[subprocess.Popen[str]]:
    """Start the workers of one round (each says "ready" once connected)."""
    command = [sys.executable, __file__, "--worker", "--calls", str(calls)]
    command += [redis_url] if redis_url else []
    return [
        subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]


def run_round(fake: FakeKartra, workers: list[subprocess.Popen[str]], calls: int) -> int:
    """Wait until every worker is ready, start them together; the calls that failed."""
    for process in workers:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            return calls * len(workers)
    fake.requests.clear()  # count from "go"
    for process in workers:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.close()
    failed = 0
    for process in workers:
        assert process.stdout is not None
        result = process.stdout.readline()
        failed += json.loads(result)["failed"] if result else calls
    return failed


def busiest_second(times: list[float]) -> int:
    """The most of `times` in any window of one second."""
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def main(redis_url: str, processes: int, calls: int) -> int:
    from kartra_async.testing import FakeKartra, FakeServer  # not needed by the workers

    fake = FakeKartra()  # answers HTTP 429 past 20 calls in any second, as Kartra does
    fake.seed()
    with FakeServer(fake) as url:
        env = {
            **os.environ,
            "KARTRA_APP_ID": fake.app_id,
            "KARTRA_API_KEY": fake.api_key,
            "KARTRA_API_PASSWORD": fake.api_password,
            "KARTRA_BASE_URL": url,
        }
        print(f"a fake Kartra at {url}; {processes} processes x {calls} calls")
        # every worker starts now (starting Python takes a while); each round waits
        # until its workers are ready, then sets them off together
        rounds = [
            ("own limiter each", start_workers(env, None, processes, calls)),
            ("one RedisLimiter", start_workers(env, redis_url, processes, calls)),
        ]
        failures = 0
        for number, (label, workers) in enumerate(rounds):
            if number:
                time.sleep(1.0)  # the fake's count of the last second starts empty
            failed = run_round(fake, workers, calls)
            arrivals = [r.at for r in fake.requests]
            took = max(arrivals) - min(arrivals) if arrivals else 0.0
            refused = sum(1 for r in fake.requests if r.status == 429)
            accepted = [r.at for r in fake.requests if r.status == 200]
            print(
                f"{label}: {len(accepted)} calls answered, {refused} x HTTP 429, at most "
                f"{busiest_second(accepted)} accepted in one second, calls over {took:.1f} s"
                + (f", {failed} failed" if failed else "")
            )
            failures += failed
        for _, workers in rounds:
            for process in workers:
                if process.wait(timeout=60) != 0:
                    failures += 1
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("redis_url", nargs="?", help="redis://host:port/db")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--calls", type=int, default=20, help="calls per process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker, args.redis_url, args.calls)
    elif args.redis_url is None:
        parser.error("give the URL of a running Redis, e.g. redis://127.0.0.1:6379/0")
    else:
        sys.exit(main(args.redis_url, args.processes, args.calls))
