"""The limit holds where Kartra counts it: at arrival. In virtual time (tests/_virtual_time:
the clock jumps when every task waits), so the fake's referee, its arrival delays and
the limiter read one clock that machine load cannot disturb: these tests cannot flake."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import anyio
import httpx
import pytest
import respx

from kartra_async import AsyncKartra, RateLimitError, RetryPolicy
from kartra_async.limits import Limiter
from kartra_async.testing import FakeKartra
from kartra_async.testing.transport import FakeTransport

from ._virtual_time import backend_options
from .test_limits import app_id, most_in_any_window

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return backend_options(str(request.param))


def virtual_fake(**kwargs: object) -> FakeKartra:
    fake = FakeKartra(clock=anyio.current_time, seed=7, **kwargs)  # type: ignore[arg-type]
    fake.seed()
    return fake


def arrivals(fake: FakeKartra, status: int | None = 200) -> list[float]:
    """When the referee counted each call (the fake's clock)."""
    return [r.at for r in fake.requests if status is None or r.status == status]


async def test_two_clients_together_stay_under_20_per_second_at_arrival() -> None:
    """Moved from test_limits (it timestamped at the transport, so it flaked): two
    clients of one App, every call counted where Kartra counts it."""
    fake = virtual_fake(arrival_delay=(0.0, 0.05))
    limiter = Limiter(20, 1.0, margin=0.05, clock=anyio.current_time)
    async with (
        fake.client(limiter=limiter, api_key=fake.api_key) as a,
        AsyncKartra(
            fake.app_id, fake.api_key, fake.api_password, base_url="http://127.0.0.1/api",
            transport=fake.transport(), limiter=limiter,
        ) as b,
        anyio.create_task_group() as tg,
    ):  # fmt: skip
        for _ in range(25):
            tg.start_soon(a.account.tags)
            tg.start_soon(b.account.tags)
    sent = arrivals(fake, None)
    assert len(sent) == 50
    assert most_in_any_window(sent, 1.0) <= 20
    assert max(sent) - min(sent) >= 2.0  # 50 calls at 20/s need two full windows


async def test_the_fakes_clients_share_the_apps_limiter() -> None:
    fake = virtual_fake()
    async with (
        fake.client() as a,
        AsyncKartra(
            fake.app_id, "k2", "p2", base_url="http://127.0.0.1/api", transport=fake.transport()
        ) as b,
    ):
        assert a.limiter is b.limiter is fake.shared_limiter(fake.app_id)
        assert isinstance(a.limiter, Limiter)
        assert (a.limiter.limit, a.limiter.period) == (20, 1.0)
    assert FakeKartra(rate_limit=None).shared_limiter("fake-app") is None


class SlowConnect(httpx.AsyncBaseTransport):
    """Opening a connection takes `connect(i)` seconds for the i-th request: the request
    leaves (and the transport reports it) only then."""

    def __init__(self, inner: FakeTransport, connect: Callable[[int], float]) -> None:
        self.inner, self.connect, self.count = inner, connect, 0

    def shared_limiter(self, app: str) -> Limiter | None:
        return self.inner.shared_limiter(app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        await anyio.sleep(self.connect(self.count))
        return await self.inner.handle_async_request(request)


async def test_the_limiter_counts_when_a_request_leaves_not_when_it_was_granted() -> None:
    """The first burst opens its connections slowly (0.9 s for every other request): a
    limiter counting grants would let the next window's requests arrive together with
    the delayed ones. Counting sends, with no margin at all, the referee never sees 21."""
    fake = virtual_fake()
    limiter = Limiter(20, 1.0, margin=0.0, burst=20, clock=anyio.current_time)
    transport = SlowConnect(fake.transport(), lambda i: 0.9 if i <= 20 and i % 2 else 0.0)
    async with (
        AsyncKartra(
            fake.app_id, fake.api_key, fake.api_password, base_url="http://127.0.0.1/api",
            transport=transport, limiter=limiter,
        ) as kartra,
        anyio.create_task_group() as tg,
    ):  # fmt: skip
        for _ in range(60):
            tg.start_soon(kartra.account.tags)
    assert [r.status for r in fake.requests].count(429) == 0
    assert most_in_any_window(arrivals(fake), 1.0) == 20
    assert limiter.in_flight == 0


async def test_grants_are_paced_after_the_burst() -> None:
    limiter = Limiter(20, 1.0, margin=0.0, clock=anyio.current_time)  # burst 5
    granted: list[float] = []

    async def one() -> None:
        granted.append(await limiter.acquire())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(one)
    granted = [t - start for t in sorted(granted)]
    assert granted[:5] == [0.0] * 5  # the burst: at once
    gaps = [b - a for a, b in itertools.pairwise(granted[4:])]
    assert min(gaps) >= 0.05 / 2 - 1e-9  # never bunched: at most half an interval early
    assert most_in_any_window(granted, 1.0) == 20
    assert granted[-1] == pytest.approx(59 * 0.05 - 0.025, abs=0.03)  # no drift: 20/s
    assert limiter.stats.waits == 55


async def test_the_margin_learns_the_jitter_internet_profile() -> None:
    """20-120 ms one-way (J = 100 ms), 300 calls from 300 tasks, the App's own limiter:
    at most 2 answers 429, all early; the margin ends near J; >= 85% of 20/s used."""
    fake = virtual_fake(arrival_delay=(0.02, 0.12))
    async with fake.client() as kartra, anyio.create_task_group() as tg:
        for _ in range(300):
            tg.start_soon(kartra.account.tags)
    statuses = [r.status for r in fake.requests]
    refused = [i for i, status in enumerate(statuses) if status == 429]
    assert len(refused) <= 2, refused
    assert all(i < 100 for i in refused), refused
    ok = arrivals(fake)
    assert len(ok) == 300
    assert most_in_any_window(ok, 1.0) <= 20
    stats = kartra.limiter.stats  # type: ignore[union-attr]
    assert 0.06 <= stats.jitter <= 0.16, stats
    assert 0.08 <= stats.margin <= 0.25, stats
    share = (len(ok) - 1) / 20 / (max(ok) - min(ok))
    assert share >= 0.85, share


async def test_lan_profile_uses_the_budget_without_429() -> None:
    fake = virtual_fake(arrival_delay=(0.0, 0.005))
    async with fake.client() as kartra, anyio.create_task_group() as tg:
        for _ in range(300):
            tg.start_soon(kartra.account.tags)
    assert [r.status for r in fake.requests].count(429) == 0
    ok = arrivals(fake)
    assert most_in_any_window(ok, 1.0) <= 20
    share = (len(ok) - 1) / 20 / (max(ok) - min(ok))
    assert share >= 0.97, share
    assert kartra.limiter.stats.margin < 0.02  # type: ignore[union-attr]


class Refuse(httpx.AsyncBaseTransport):
    """The i-th request's connection is refused when `refuse(i)`, else 429 when
    `too_many(i)`, else the fake answers."""

    def __init__(
        self,
        inner: FakeTransport,
        refuse: Callable[[int], bool] = lambda i: False,
        too_many: Callable[[int], bool] = lambda i: False,
    ) -> None:
        self.inner, self.refuse, self.too_many, self.count = inner, refuse, too_many, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if self.refuse(self.count):
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self.too_many(self.count):
            trace = request.extensions["trace"]
            await trace("fake.send_request_headers.started", {})
            return httpx.Response(429, text="Too many requests", request=request)
        return await self.inner.handle_async_request(request)


def client(
    fake: FakeKartra,
    transport: httpx.AsyncBaseTransport,
    limiter: Limiter,
    retry: RetryPolicy | None = None,
) -> AsyncKartra:
    return AsyncKartra(
        fake.app_id, fake.api_key, fake.api_password, base_url="http://127.0.0.1/api",
        transport=transport, limiter=limiter, retry=retry,
    )  # fmt: skip


async def test_a_request_that_never_left_gives_its_slot_back() -> None:
    fake = virtual_fake()
    limiter = Limiter(20, 1.0, clock=anyio.current_time)
    async with client(fake, Refuse(fake.transport(), refuse=lambda i: i <= 2), limiter) as kartra:
        assert await kartra.account.tags() == fake.account.tags  # 2 refusals, then sent
    assert limiter.stats.grants == 1
    assert limiter.in_flight == 0
    assert len(limiter._log) == 1


async def test_a_429_widens_the_margin_at_once_and_it_narrows_slowly() -> None:
    fake = virtual_fake()
    limiter = Limiter(20, 1.0, clock=anyio.current_time)
    transport = Refuse(fake.transport(), too_many=lambda i: i == 6)
    retry = RetryPolicy(rate_limit_pause=0.2)
    async with client(fake, transport, limiter, retry=retry) as kartra:
        for _ in range(5):
            await kartra.account.tags()
        assert limiter.margin == 0.002  # the floor: round trips are 0 here
        await kartra.account.tags()  # 429, paused, sent again
        widened = limiter.margin
        assert limiter.stats.rate_limited == 1
        assert 0.011 <= widened <= 0.012  # 2 ms + 10 ms at once, then one clean answer
        for _ in range(30):
            await kartra.account.tags()
    assert limiter.margin < widened  # clean answers narrow it ...
    assert limiter.margin > widened * (1 - 1 / 128) ** 31  # ... slowly
    assert limiter.stats.margin == limiter.margin


async def test_a_limiter_that_believes_in_too_much_learns_the_real_budget() -> None:
    """6 calls/s against an App that allows 5: each 429 doubles the margin until 6 calls
    take 1.2 s, then the answers stay clean (until it has narrowed back, TCP-like)."""
    fake = virtual_fake(rate_limit=5, rate_period=1.0)
    limiter = Limiter(6, 1.0, clock=anyio.current_time)
    async with fake.client(limiter=limiter, retry=RetryPolicy(rate_limit_pause=0.2)) as kartra:
        for _ in range(60):
            await kartra.account.tags()
    statuses = [r.status for r in fake.requests]
    assert statuses.count(200) == 60
    assert statuses.count(429) <= 8  # 2, 4, 8, ... ms, doubling past the 200 ms needed
    assert 429 not in statuses[-20:]
    assert limiter.margin >= 0.2


async def test_interactive_goes_before_queued_bulk_but_bulk_progresses() -> None:
    """Moved from test_limits: in real time its 1 ms head start for the bulk waiters
    could outlast the 10 ms window on a loaded machine."""
    limiter = Limiter(1, 0.01, margin=0.0, bulk_share=0.25, clock=anyio.current_time)
    await limiter.acquire()  # the window is now full
    order: list[str] = []

    async def waiter(kind: str) -> None:
        await limiter.acquire(kind)  # type: ignore[arg-type]
        order.append(kind)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(waiter, "bulk")
        await anyio.sleep(0.001)
        for _ in range(12):
            tg.start_soon(waiter, "interactive")
    # interactive first, but one bulk grant for every four interactive ones while both wait
    first_twelve = order[:15]
    assert first_twelve.count("bulk") == 3
    assert order[:4] == ["interactive"] * 4
    assert order.count("bulk") == 10


# ---- quiet storms


def limiter_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kartra_async.limits"]


async def test_a_429_storm_logs_its_first_answer_and_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kartra_async.limits")
    answers = iter([httpx.Response(429)] * 40 + [httpx.Response(200, json={"status": "Success", "account_tags": ["A"]})] * 40)  # fmt: skip
    with respx.mock(base_url="https://app.kartra.com/api") as router:
        router.post("").mock(side_effect=lambda request: next(answers))
        limiter = Limiter(100, 1.0, margin=0.0, clock=anyio.current_time)
        async with (
            AsyncKartra(
                app_id(),
                "k",
                "p",
                limiter=limiter,
                retry=RetryPolicy(rate_limit_pause=0.01, rate_limit_resends=40),
            ) as kartra,  # fmt: skip
            anyio.create_task_group() as tg,
        ):
            for _ in range(20):
                tg.start_soon(kartra.account.tags)
    assert limiter.stats.rate_limited == 40
    messages = limiter_records(caplog)
    assert len(messages) == 2, messages
    assert messages[0].startswith("Kartra answered 429 (Too many requests): every call of")
    assert messages[1].startswith("429 storm of this App over: 40 answers 429 in ")
    assert [r.levelno for r in caplog.records if r.name == "kartra_async.limits"] == [
        logging.WARNING,
        logging.WARNING,
    ]


async def test_429s_without_a_limiter_raise_at_once() -> None:
    with respx.mock(base_url="https://app.kartra.com/api") as router:
        route = router.post("").mock(return_value=httpx.Response(429))
        async with AsyncKartra(app_id(), "k", "p", limiter=None) as kartra:
            with pytest.raises(RateLimitError, match="0 resends"):
                await kartra.account.tags()
    assert route.call_count == 1


async def test_any_window_guarantee_under_1000_tasks() -> None:
    # the sliding log alone (no pacing), on the virtual clock: no machine load can move it
    limiter = Limiter(100, 0.1, margin=0.0, burst=100, clock=anyio.current_time)
    granted: list[float] = []
    entered: list[int] = []
    grant_of: dict[int, float] = {}

    async def task(i: int) -> None:
        entered.append(i)
        at = await limiter.acquire()
        granted.append(at)
        grant_of[i] = at

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(task, i)
    assert len(granted) == 1000
    assert most_in_any_window(granted, 0.1) <= 100
    # FIFO: whoever queued first was granted no later
    grants_in_entry_order = [grant_of[i] for i in entered]
    assert grants_in_entry_order == sorted(grants_in_entry_order)
    assert limiter.stats.grants == 1000
    assert limiter.stats.waits == 900
    # the whole budget is used: 10 windows of 100, the last 0.9 s after the first
    assert 0.9 <= max(granted) - min(granted) < 0.95
