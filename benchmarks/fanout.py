"""fan_out against the fake, in one run.

1. At Kartra's limit (20/s) with 0.3-1.0 s random latency per call: calls/s achieved as
   a share of the limit, paced (N calls in (N - 1)/20 s is 1.0), and 429s seen (target 0):
   with a fixed 2 ms margin (target >= 0.99), and with the fake App's own limiter, whose
   margin learns from round trips (target >= 0.89: 0.7 s of latency variation reads as
   jitter, so the margin stops at its 100 ms ceiling).
2. With the limit off: items/s and peak RSS for 20,000 and for 200,000 lazily generated
   items, each in a fresh process (target: memory flat, the larger within 10% of the
   smaller).
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import anyio
from _common import machine, table, verdict

from kartra_async.limits import Limiter
from kartra_async.testing import FakeKartra

N_AT_LIMIT = 300


async def at_the_limit(margin: float | None) -> tuple[float, int, int]:
    """`margin` None: the fake App's own limiter (adaptive margin); else a fixed one."""
    fake = FakeKartra(rate_limit=20)
    fake.seed()
    fake.faults.latency = (0.3, 1.0)
    options = {} if margin is None else {"limiter": Limiter(20, 1.0, margin=margin)}
    async with fake.client(**options) as kartra:
        summary = await kartra.fan_out(
            range(N_AT_LIMIT),
            lambda i: kartra.lead(f"lead{i}@example.com").create().assign_tag("Customer"),
        ).run()
    arrivals = [r.at for r in fake.requests if r.status == 200]
    # paced at exactly 20/s, N calls take (N - 1) / 20 s
    share = (len(arrivals) - 1) / 20 / (max(arrivals) - min(arrivals))
    return share, sum(r.status == 429 for r in fake.requests), summary.ok


async def lazily(n: int) -> tuple[float, int]:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    fake.record = False

    def items():  # type: ignore[no-untyped-def]
        for i in range(n):
            yield {"email": "alice@example.com", "n": i}

    async with fake.client() as kartra:
        start = time.perf_counter()
        summary = await kartra.fan_out(
            items(), lambda row: kartra.lead(row["email"]).assign_tag("VIP")
        ).run()
        elapsed = time.perf_counter() - start
    return n / elapsed, summary.ok


def child(n: int) -> None:
    rate, ok = anyio.run(lazily, n)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rate": rate, "ok": ok, "peak_mib": peak_kib / 1024}))


def run_child(n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    share, limited, ok_at_limit = anyio.run(at_the_limit, 0.002)
    learned, learned_limited, learned_ok = anyio.run(at_the_limit, None)
    small, large = run_child(20_000), run_child(200_000)
    growth = large["peak_mib"] / small["peak_mib"]
    print(
        table(
            f"fan_out against the fake ({machine()})",
            [
                (
                    "20/s, 0.3-1.0 s latency, margin fixed at 2 ms: share of the limit",
                    f"{share:.3f}",
                    ">= 0.99",
                ),
                ("20/s, margin fixed: HTTP 429 answers seen", str(limited), "0"),
                (
                    "20/s, 0.3-1.0 s latency, margin learned: share of the limit",
                    f"{learned:.3f}",
                    ">= 0.89",
                ),
                ("20/s, margin learned: HTTP 429 answers seen", str(learned_limited), "0"),
                ("limit off, 20,000 items: items/s", f"{small['rate']:.0f}", ""),
                ("limit off, 200,000 items: items/s", f"{large['rate']:.0f}", ""),
                ("peak RSS, 20,000 items (MiB)", f"{small['peak_mib']:.1f}", ""),
                (
                    "peak RSS, 200,000 items (MiB)",
                    f"{large['peak_mib']:.1f}",
                    f"x{growth:.3f} (<= 1.10)",
                ),
            ],
            ("what", "measured", "target"),
        )
    )
    ok = verdict(
        ok_at_limit == learned_ok == N_AT_LIMIT
        and small["ok"] == 20_000
        and large["ok"] == 200_000,
        "every item went through",
    )
    ok &= verdict(share >= 0.99, f"share of the limit {share:.3f} >= 0.99")
    ok &= verdict(limited == 0, f"{limited} 429s == 0")
    # round trips that vary by 0.7 s read as jitter: the learned margin stops at its
    # ceiling, 100 ms per 1 s window (1/1.1 = 0.909 of the limit)
    ok &= verdict(learned >= 0.89, f"learned margin: share {learned:.3f} >= 0.89")
    ok &= verdict(learned_limited == 0, f"learned margin: {learned_limited} 429s == 0")
    ok &= verdict(growth <= 1.10, f"memory x{growth:.3f} <= 1.10 from 20,000 to 200,000 items")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        sys.exit(main())
