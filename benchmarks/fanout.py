"""fan_out against the fake, in one run.

1. At Kartra's limit (20/s) with 0.3-1.0 s random latency per call: calls/s achieved as
   a share of the limit (target >= 0.99) and 429s seen (target 0).
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

from kartra_async.testing import FakeKartra

N_AT_LIMIT = 300


async def at_the_limit() -> tuple[float, int, int]:
    fake = FakeKartra(rate_limit=20)
    fake.seed()
    fake.faults.latency = (0.3, 1.0)
    async with fake.client() as kartra:
        summary = await kartra.fan_out(
            range(N_AT_LIMIT),
            lambda i: kartra.lead(f"lead{i}@example.com").create().assign_tag("Customer"),
        ).run()
    arrivals = [r.at for r in fake.requests if r.status == 200]
    ideal = (len(arrivals) / 20 - 1) * 1.0
    share = ideal / (max(arrivals) - min(arrivals))
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
    share, limited, ok_at_limit = anyio.run(at_the_limit)
    small, large = run_child(20_000), run_child(200_000)
    growth = large["peak_mib"] / small["peak_mib"]
    print(
        table(
            f"fan_out against the fake ({machine()})",
            [
                (
                    "20/s, 0.3-1.0 s latency: calls/s as a share of the limit",
                    f"{share:.3f}",
                    ">= 0.99",
                ),
                ("20/s: HTTP 429 answers seen", str(limited), "0"),
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
        ok_at_limit == N_AT_LIMIT and small["ok"] == 20_000 and large["ok"] == 200_000,
        "every item went through",
    )
    ok &= verdict(share >= 0.99, f"share of the limit {share:.3f} >= 0.99")
    ok &= verdict(limited == 0, f"{limited} 429s == 0")
    ok &= verdict(growth <= 1.10, f"memory x{growth:.3f} <= 1.10 from 20,000 to 200,000 items")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        sys.exit(main())
