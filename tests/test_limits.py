"""The in-process rate limiter: any-window guarantee, FIFO, priorities, cancellation,
429 pause and resend, one budget per App."""

from __future__ import annotations

import bisect
import uuid

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx
from anyio import wait_all_tasks_blocked

from kartra_async import AsyncKartra, RateLimitError, RetryPolicy
from kartra_async.limits import Limiter, shared_limiter
from kartra_async.testing import FakeKartra

pytestmark = pytest.mark.anyio


def most_in_any_window(times: list[float], window: float) -> int:
    """The most times in any half-open window [t, t + window), to the microsecond."""
    times = sorted(times)
    edge = window - 1e-6  # float noise on epoch-sized numbers is ~2e-7 s
    return max((bisect.bisect_left(times, t + edge) - i for i, t in enumerate(times)), default=0)


async def test_uncontended_acquire_does_not_wait() -> None:
    limiter = Limiter(3, 10.0, burst=3)
    for _ in range(3):
        await limiter.acquire()
    assert limiter.stats.waits == 0
    assert limiter.queued == 0


async def test_cancelled_waiters_lose_no_capacity() -> None:
    # windows of 1 s, and the cancels happen once all 200 are queued (not after a fixed
    # sleep): a loaded machine cannot let a window refill before the cancels land
    limiter = Limiter(50, 1.0, margin=0.0, burst=50)
    for _ in range(50):
        await limiter.acquire()  # fill the window: everyone below queues
    granted: list[float] = []
    scopes: list[anyio.CancelScope] = []

    async def task(cancellable: bool) -> None:
        with anyio.CancelScope() as scope:
            if cancellable:
                scopes.append(scope)
            granted.append(await limiter.acquire())

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(task, i % 2 == 0)
        await wait_all_tasks_blocked()
        assert limiter.queued == 200
        for scope in scopes:
            scope.cancel()
    assert len(granted) == 100
    assert limiter.stats.cancelled == 100
    assert limiter.queued == 0
    # the 100 that stayed got the full budget: 50 per window, 2 windows (a lost slot
    # would push the last grants into a third window, 2 s after the first)
    assert most_in_any_window(granted, 1.0) == 50
    assert max(granted) - min(granted) < 1.9


async def test_a_waiter_cancelled_right_after_its_grant_hands_it_back(anyio_backend: str) -> None:
    """B's dispatch also grants C; B then cancels C before C runs. With asyncio's own
    cancellation (task.cancel(), wait_for, timeouts) C never returns from acquire() and
    hands its slot back, so D gets it at once. anyio and trio deliver a grant that was
    already made and cancel at C's next checkpoint: C used its slot, none is lost."""
    limiter = Limiter(2, 0.05, margin=0.0, burst=2)
    await limiter.acquire()
    await limiter.acquire()
    got: dict[str, float] = {}

    if anyio_backend == "asyncio":
        import asyncio

        async def c() -> None:
            got["c"] = await limiter.acquire()

        c_task: asyncio.Task[None] | None = None

        async def b() -> None:
            got["b"] = await limiter.acquire()
            assert c_task is not None
            c_task.cancel()

        b_task = asyncio.create_task(b())
        await asyncio.sleep(0.001)
        c_task = asyncio.create_task(c())
        await asyncio.sleep(0.001)
        got["d"] = await limiter.acquire()
        await b_task
        with pytest.raises(asyncio.CancelledError):
            await c_task
        assert "c" not in got
        assert got["d"] - got["b"] < 0.01  # at once, not a window (0.05 s) later
        assert (limiter.stats.cancelled, limiter.stats.grants) == (1, 4)
        return

    c_scope = anyio.CancelScope()

    async def b_() -> None:
        got["b"] = await limiter.acquire()
        c_scope.cancel()

    async def c_() -> None:
        with c_scope:
            got["c"] = await limiter.acquire()

    async with anyio.create_task_group() as tg:
        tg.start_soon(b_)
        await anyio.sleep(0.001)
        tg.start_soon(c_)
        await anyio.sleep(0.001)
        got["d"] = await limiter.acquire()
    assert got["c"] == got["b"]
    assert got["d"] > got["b"]
    assert (limiter.stats.cancelled, limiter.stats.grants) == (0, 5)


async def test_pause_stops_every_grant_then_resumes_in_order() -> None:
    limiter = Limiter(5, 0.05, margin=0.0)
    start = anyio.current_time()
    limiter.pause(0.2)
    grants: list[tuple[int, float]] = []

    async def task(i: int) -> None:
        await limiter.acquire()
        grants.append((i, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(task, i)
            await anyio.lowlevel.checkpoint()
    assert min(t for _, t in grants) >= 0.19
    assert limiter.stats.rate_limited == 1
    assert sorted(i for i, _ in grants) == list(range(10))
    # resumes at the limit rate: 5 now, 5 a window later
    assert most_in_any_window([t for _, t in grants], 0.05) <= 5


async def test_pause_wakes_a_sleeping_timer() -> None:
    limiter = Limiter(1, 0.05, margin=0.0)
    await limiter.acquire()
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await anyio.sleep(0.01)
        limiter.pause(0.15)  # the queued waiter must now wait for the pause, not the window
    assert anyio.current_time() - start >= 0.14


async def test_slow_wait_callback_and_stats() -> None:
    seen: list[tuple[float, str]] = []
    limiter = Limiter(
        1, 0.05, margin=0.0, slow_threshold=0.02, on_slow=lambda w, p: seen.append((w, p))
    )
    await limiter.acquire()
    await limiter.acquire("bulk")
    assert len(seen) == 1
    assert seen[0][1] == "bulk"
    assert seen[0][0] >= 0.02
    assert limiter.stats.waits == 1
    assert limiter.stats.wait_max == limiter.stats.wait_mean >= 0.02


def test_limiter_arguments() -> None:
    with pytest.raises(ValueError, match="limit"):
        Limiter(0)
    with pytest.raises(ValueError, match="period"):
        Limiter(1, 0)
    with pytest.raises(ValueError, match="bulk_share"):
        Limiter(1, 1, bulk_share=2)


# ---- through the client


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def test_clients_of_one_app_share_one_limiter_and_apps_do_not() -> None:
    shared = app_id()
    async with (
        AsyncKartra(shared, "k1", "p1") as a,
        AsyncKartra(shared, "k2", "p2") as b,
        AsyncKartra(app_id(), "k", "p") as c,
    ):
        assert a.limiter is b.limiter is shared_limiter(shared)
        assert c.limiter is not a.limiter
    async with AsyncKartra(shared, "k", "p", limiter=None) as off:
        assert off.limiter is None


async def test_a_blocked_app_does_not_delay_another() -> None:
    blocked, free = shared_limiter(app_id()), shared_limiter(app_id())
    blocked.pause(30)
    with anyio.fail_after(1):
        for _ in range(20):
            await free.acquire()


async def test_429_pauses_the_app_and_resends() -> None:
    fake = FakeKartra(rate_limit=5, rate_period=0.2)
    fake.seed()
    limiter = Limiter(10, 0.2, margin=0.0)  # believes in twice the App's real budget
    retry = RetryPolicy(rate_limit_pause=0.05)
    async with (
        fake.client(limiter=limiter, retry=retry) as kartra,
        anyio.create_task_group() as tg,
    ):
        for i in range(20):
            tg.start_soon(kartra.lead(f"lead{i}@example.com").create().assign_tag("VIP").send)
    statuses = [r.status for r in fake.requests]
    assert statuses.count(429) >= 1
    assert limiter.stats.rate_limited == statuses.count(429)
    assert statuses.count(200) == 20  # every call went through once: refused ones were not applied
    assert len(fake.account.leads) == 2 + 20
    assert all(fake.lead(f"lead{i}@example.com").tags == ["VIP"] for i in range(20))  # type: ignore[union-attr]


async def test_429_resends_are_bounded() -> None:
    with respx.mock(base_url="https://app.kartra.com/api") as router:
        route = router.post("").mock(return_value=httpx.Response(429, text="Too many requests"))
        async with AsyncKartra(
            app_id(), "k", "p", limiter=Limiter(100, 1.0),
            retry=RetryPolicy(rate_limit_pause=0.001, rate_limit_resends=3),
        ) as kartra:  # fmt: skip
            with pytest.raises(RateLimitError, match="3 resends"):
                await kartra.account.tags()
    assert route.call_count == 4


async def test_retry_after_is_honoured_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    paused: list[float] = []
    limiter = Limiter(100, 1.0)
    monkeypatch.setattr(limiter, "pause", paused.append)  # backoff() calls pause()
    with respx.mock(base_url="https://app.kartra.com/api") as router:
        router.post("").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "2"}),
                httpx.Response(429, headers={"Retry-After": "3600"}),
                httpx.Response(429),
                httpx.Response(200, json={"status": "Success", "account_tags": ["A"]}),
            ]
        )
        async with AsyncKartra(app_id(), "k", "p", limiter=limiter) as kartra:
            assert await kartra.account.tags() == ["A"]
    assert paused == [2.0, 30.0, 1.0]


# ---- one App, one budget, in every thread and event loop


def test_threads_with_their_own_event_loops_share_the_apps_budget() -> None:
    """Two threads, one on asyncio and one on trio, each with its own event loop and 30
    concurrent calls on one App's shared limiter: both finish at the App's pace, and
    together they keep the limit in every window (the grant times are the limiter's own
    clock readings)."""
    import threading

    app = app_id()
    limiter = shared_limiter(app)
    granted: dict[str, list[float]] = {"asyncio": [], "trio": []}
    seen: set[int] = set()
    errors: list[BaseException] = []

    async def burst(backend: str) -> None:
        async def one() -> None:
            own = shared_limiter(app)
            seen.add(id(own))
            granted[backend].append(await own.acquire())

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(one)

    def thread(backend: str) -> None:
        try:
            anyio.run(burst, backend, backend=backend)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(b,)) for b in ("asyncio", "trio")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert seen == {id(limiter)}
    assert [len(granted[b]) for b in ("asyncio", "trio")] == [30, 30]
    together = sorted(granted["asyncio"] + granted["trio"])
    assert most_in_any_window(together, 1.0) <= 20
    # paced at 20/s from the first grant to the last: nobody stalled
    assert together[-1] - together[0] < 2 * (60 - 1) / 20
    assert limiter.queued == 0
    assert limiter.in_flight == 0


# ---- the margin estimator (RFC 6298)


def test_margin_follows_rfc_6298_and_widens_on_429() -> None:
    from kartra_async.limits._common import Margin

    margin = Margin("auto", floor=0.002, ceiling=0.25, period=1.0)
    margin.sample(0.1)  # first sample: SRTT = R, RTTVAR = R/2
    assert (margin.srtt, margin.rttvar) == (0.1, 0.05)
    assert margin.value == pytest.approx(0.2)  # 4 x RTTVAR at once
    margin.sample(0.06)  # RTTVAR = 3/4 0.05 + 1/4 |0.1 - 0.06|; SRTT = 7/8 0.1 + 1/8 0.06
    assert margin.rttvar == pytest.approx(0.0475)
    assert margin.srtt == pytest.approx(0.095)
    assert margin.value == pytest.approx(0.2)  # the estimate fell: the margin waits
    margin.clean()
    assert margin.value == pytest.approx(0.2 - (0.2 - 0.19) / 128)
    before = margin.value
    margin.widen()
    assert margin.value == pytest.approx(2 * before)
    for _ in range(20):
        margin.widen()
    assert margin.value == 1.0  # never past the period

    fixed = Margin(0.05, floor=0.002, ceiling=0.25, period=1.0)
    fixed.sample(0.3)
    fixed.widen()
    fixed.clean()
    assert fixed.value == 0.05
    assert fixed.jitter == pytest.approx(4 * 0.15)
    with pytest.raises(ValueError, match="margin"):
        Margin(-1.0, floor=0.0, ceiling=1.0, period=1.0)
