"""The fake's own work per call against httpx's own MockTransport round trip, in one run.

(a) baseline: `await client.post(...)` through httpx.MockTransport answering canned JSON;
(b) the fake: `fake.handle(body)` for the same chained call (parse_str, auth, rate
    window, three actions on a lead, JSON answer) - its own work, no transport.

Target: b / a <= 1.0, so the fake is never the bottleneck of our benchmarks.
Exit status 1 when the target is missed or an answer is wrong.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
from _common import CHAIN_ANSWER, compare, verdict

from kartra_async.testing import FakeKartra

N = 3000


def body_for(i: int) -> bytes:
    return (
        "app_id=fake-app&api_key=fake-key&api_password=fake-password"
        f"&lead%5Bemail%5D=lead{i}%40example.com&lead%5Bfirst_name%5D=Lead"
        "&actions%5B0%5D%5Bcmd%5D=create_lead"
        "&actions%5B1%5D%5Bcmd%5D=assign_tag&actions%5B1%5D%5Btag_name%5D=Customer"
        "&actions%5B2%5D%5Bcmd%5D=subscribe_lead_to_list&actions%5B2%5D%5Blist_name%5D=Newsletter"
    ).encode()


async def mock_round_trip(bodies: list[bytes]) -> float:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=CHAIN_ANSWER))
    async with httpx.AsyncClient(transport=transport) as client:
        for body in bodies[:200]:
            await client.post("http://127.0.0.1/api", content=body)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for body in bodies:
                await client.post("http://127.0.0.1/api", content=body)
            best = min(best, (time.perf_counter() - start) / len(bodies))
    return best


def fake_work(bodies: list[bytes]) -> tuple[float, bool]:
    best = float("inf")
    correct = True
    for _ in range(5):
        fake = FakeKartra(rate_limit=20)
        fake.seed()
        fake.rate_limit = None
        fake.record = False
        start = time.perf_counter()
        for body in bodies:
            fake.handle(body)
        best = min(best, (time.perf_counter() - start) / len(bodies))
        lead = fake.lead("lead7@example.com")
        correct &= (
            lead is not None and lead.tags == ["Customer"] and lead.lists == {"Newsletter": True}
        )
        correct &= len(fake.account.leads) == 2 + len(bodies)
    return best, correct


def main() -> int:
    bodies = [body_for(i) for i in range(N)]
    baseline = asyncio.run(mock_round_trip(bodies))
    ours, correct = fake_work(bodies)
    (ratio,) = compare(
        "Fake Kartra work per call vs httpx MockTransport round trip",
        "us/call",
        ("httpx MockTransport round trip", baseline),
        ("FakeKartra.handle (create + tag + list)", ours),
    )
    ok = verdict(correct, "the fake applied every call")
    ok &= verdict(ratio <= 1.0, f"fake/mock ratio {ratio:.2f} <= 1.0")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
