"""The in-process limiter: at most `limit` requests *leave* in any window of `period` +
margin seconds, paced, fair between tenants (the accounts of the App) and FIFO within a
tenant and priority, no polling, safe across threads and event loops.

Kartra counts a call when it arrives, so the log holds send times, not grant times: a
request granted but not yet sent (waiting for a pooled connection, being connected) is
*in flight* and counts as "now" until the transport says it left (`Grant.sent()`), then
from that moment. A grant at time t is allowed when the sends in (t - window, t] plus
the requests in flight are fewer than `limit`: any later send of this request then
sees at most `limit - 1` others in its own window. The margin covers what lies between
the send and Kartra's clock (network jitter); it is learned from round trips (see
_common.Margin) unless fixed.

Pacing (GCRA): when `burst` or more requests went out in the last window, grants follow
a schedule window/limit apart (a grant may come up to half an interval early, so late
wake-ups do not drift the schedule) instead of being released together at a window edge.

How it waits without a background task: grants are handed out by `_dispatch()`, run
when a waiter arrives, when the wait for free capacity ends and when a waiter leaves.
While waiters remain and none can be granted, exactly one of them, the *timer*, sleeps
until the next slot frees, then dispatches again; every other waiter sleeps on its own
event. All state sits behind one threading.Lock, and a waiter of another thread's event
loop is woken through that loop (call_soon_threadsafe / trio's run_sync_soon), so one
limiter serves every thread of the process.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Literal

import anyio

from ._common import (
    DEFAULT_TENANT,
    Grant,
    LimiterStats,
    Margin,
    Priority,
    StormLog,
    Tenants,
    Weights,
    logger,
    sleep_until,
)

__all__ = ["Limiter", "LimiterStats", "Priority"]
#: a microsecond more per window, so a slot is never granted on the very edge that a
#: server's own float arithmetic may still count as inside
_EPSILON = 1e-6
PRIORITIES: tuple[Priority, ...] = ("interactive", "bulk")


def _scheduler() -> Callable[[Callable[[], object]], object]:
    """How another thread runs a callback in the current event loop (asyncio's or trio's)."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop.call_soon_threadsafe
    import trio

    return trio.lowlevel.current_trio_token().run_sync_soon


class _Waiter:
    __slots__ = (
        "event",
        "granted_at",
        "priority",
        "queued_at",
        "schedule",
        "tenant",
        "thread",
        "weight",
    )

    def __init__(self, priority: Priority, tenant: str, weight: float, queued_at: float) -> None:
        self.priority = priority
        self.tenant = tenant
        self.weight = weight
        self.queued_at = queued_at
        self.event = anyio.Event()
        self.granted_at: float | None = None
        self.thread = threading.get_ident()
        self.schedule = _scheduler()

    def wake(self) -> None:
        if self.thread == threading.get_ident():
            self.event.set()
            return
        with contextlib.suppress(RuntimeError):  # its event loop is gone: it waits no more
            self.schedule(self.event.set)


class _FairQueue:
    """The waiters of one priority, fair between tenants: start-time fair queueing.

    Each tenant with waiters has a deque (FIFO within the tenant) and a virtual start
    tag; the tenant with the smallest tag is served next (ties: the tenant that became
    active first), and each grant moves its tag on by 1 / weight. A tenant that becomes
    active starts at the virtual time of the last grant (or later, if it was served
    ahead of it so recently that its previous tag is still in the future), so it is
    served within about one round of the active tenants, however deep their queues are.
    A tenant with no waiters keeps nothing here once the virtual time has passed its tag,
    and nothing at all once the queue is empty (an idle queue forgets the past, as a
    fair queueing server's virtual time jumps when it is idle).
    With `fair=False` every waiter is one tenant's: plain FIFO.
    """

    def __init__(self, fair: bool) -> None:
        self.fair = fair
        self.queues: dict[str, deque[_Waiter]] = {}
        self.tags: dict[str, float] = {}
        #: the next tag of tenants whose queue ran empty, while it is ahead of vtime
        self.finish: dict[str, float] = {}
        self.vtime = 0.0
        self.size = 0

    def _key(self, waiter: _Waiter) -> str:
        return waiter.tenant if self.fair else ""

    def push(self, waiter: _Waiter) -> None:
        key = self._key(waiter)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = deque()
            self.tags[key] = max(self.vtime, self.finish.pop(key, self.vtime))
        queue.append(waiter)
        self.size += 1

    def remove(self, waiter: _Waiter) -> None:
        key = self._key(waiter)
        queue = self.queues[key]
        queue.remove(waiter)
        self.size -= 1
        if not queue:  # the tenant leaves; back soon, it resumes at the same tag
            del self.queues[key]
            tag = self.tags.pop(key)
            if tag > self.vtime:
                self.finish[key] = tag
            if not self.size:
                self._idle()

    def _next(self) -> str:
        tags = self.tags
        return min(tags, key=tags.__getitem__) if len(tags) > 1 else next(iter(tags))

    def peek(self) -> _Waiter:
        return self.queues[self._next()][0]

    def pop(self) -> _Waiter:
        key = self._next()
        queue = self.queues[key]
        waiter = queue.popleft()
        self.size -= 1
        tag = self.tags[key]
        self.vtime = tag
        after = tag + 1.0 / waiter.weight if self.fair else tag
        if queue:
            self.tags[key] = after
        else:
            del self.queues[key], self.tags[key]
            self.finish[key] = after
            if not self.size:
                self._idle()
            elif len(self.finish) > 2 * len(self.tags) + 16:
                vtime = self.vtime
                self.finish = {k: v for k, v in self.finish.items() if v > vtime}
        return waiter

    def _idle(self) -> None:
        """Nobody waits: the past no longer counts (virtual time moves past every tag)."""
        if self.finish:
            self.vtime = max(self.vtime, *self.finish.values())
            self.finish.clear()


class _Queues:
    """The waiters: fair between tenants within a priority (_FairQueue), "interactive"
    first, but "bulk" gets at least `bulk_share` of the grants while both wait."""

    def __init__(self, bulk_share: float, fair: bool) -> None:
        self.bulk_share = bulk_share
        self.queues: dict[Priority, _FairQueue] = {p: _FairQueue(fair) for p in PRIORITIES}
        self.size = 0
        self._credit = 0.0

    def push(self, waiter: _Waiter) -> None:
        self.queues[waiter.priority].push(waiter)
        self.size += 1

    def remove(self, waiter: _Waiter) -> None:
        self.queues[waiter.priority].remove(waiter)
        self.size -= 1

    def _pick(self, *, pop: bool) -> _FairQueue:
        interactive, bulk = self.queues["interactive"], self.queues["bulk"]
        if interactive.size and bulk.size:
            take_bulk = self._credit >= 1.0
            if pop:
                self._credit = self._credit - 1.0 if take_bulk else self._credit + self.bulk_share
            return bulk if take_bulk else interactive
        return interactive if interactive.size else bulk

    def peek(self) -> _Waiter:
        return self._pick(pop=False).peek()

    def pop(self) -> _Waiter:
        self.size -= 1
        return self._pick(pop=True).pop()


class _LocalGrant:
    __slots__ = ("_limiter", "at", "sent_at", "tenant", "traced")

    def __init__(self, limiter: Limiter, at: float, tenant: str) -> None:
        self._limiter = limiter
        self.at = at
        self.tenant = tenant
        self.sent_at: float | None = None
        self.traced = False

    def __repr__(self) -> str:
        return f"<Grant at={self.at:.6f} sent_at={self.sent_at}>"

    def sent(self) -> None:
        if self.sent_at is None:
            self._limiter._mark_sent(self, traced=True)

    def finish(self, status: int | None = None, *, sent: bool = True) -> None:
        self._limiter._finish(self, status, sent)


class Limiter:
    """At most `limit` requests leave in any window of `period` + margin seconds.

    `take()` hands out a `Grant` whose `sent()` tells the moment the request left (the
    client calls it from httpx's transport); `acquire()` counts the request as sent when
    it returns. "interactive" waiters go before queued "bulk" ones, but bulk gets at
    least `bulk_share` of the grants while both wait. `pause(seconds)` stops every grant
    (an HTTP 429 answer).

    Tenants (the accounts of one App, `tenant=` of `take`/`acquire`): within a
    priority, waiters are served fairly between tenants (start-time fair queueing,
    `weights` a mapping or a callable, default 1 each), FIFO within a tenant; a tenant
    alone gets the whole budget. `fair=False`: one FIFO for all. `stats.tenants` holds
    per-tenant counters; a tenant idle for `idle_ttl` seconds is forgotten.

    `margin`: "auto" (learned from round trips, between `min_margin` and `max_margin`,
    default period/10; widened on 429s, see `stats.margin` and `stats.jitter`) or fixed
    seconds. `burst`: how many may leave at once after a quiet window (default limit/4);
    beyond it grants are paced `window/limit` apart; `burst=limit` turns pacing off.
    `clock` (monotonic seconds) is injectable for tests.
    """

    #: take() accepts tenant= (the client names its account)
    per_tenant: ClassVar[bool] = True

    def __init__(
        self,
        limit: int = 20,
        period: float = 1.0,
        *,
        margin: float | Literal["auto"] = "auto",
        min_margin: float = 0.002,
        max_margin: float | None = None,
        burst: int | None = None,
        bulk_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        slow_threshold: float | None = None,
        on_slow: Callable[[float, Priority], None] | None = None,
        name: str = "",
        fair: bool = True,
        weights: Weights | None = None,
        idle_ttl: float = 300.0,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if period <= 0:
            raise ValueError("period must be > 0 and margin >= 0")
        if not 0 <= bulk_share <= 1:
            raise ValueError("bulk_share is a share between 0 and 1")
        if burst is not None and not 1 <= burst <= limit:
            raise ValueError("burst is between 1 and limit")
        self.limit = limit
        self.period = period
        self.bulk_share = bulk_share
        self.burst = burst if burst is not None else max(1, limit // 4)
        self.name = name
        self.slow_threshold = slow_threshold
        self.on_slow = on_slow
        self.stats = LimiterStats()
        self.fair = fair
        self._tenants = Tenants(self.stats, weights, idle_ttl)
        self._tenant_stats = self.stats.tenants
        self._clock = clock
        self._margin = Margin(
            margin,
            floor=min_margin,
            ceiling=max(period / 10, min_margin) if max_margin is None else max_margin,
            period=period,
        )
        self._sync_margin()
        self._lock = threading.Lock()
        #: send times of the newest requests (at most `limit`), ascending
        self._log: list[float] = []
        self._in_flight = 0
        #: pacing (GCRA): the theoretical time of the next grant
        self._tat = -math.inf
        self._queues = _Queues(bulk_share, fair)
        self._timer: _Waiter | None = None
        #: the timer waits for requests in flight to be sent (or a long pause) to end
        self._timer_blocked = False
        self._paused_until = -math.inf
        self._storm = StormLog(name)

    def __repr__(self) -> str:
        return (
            f"<Limiter {self.name or ''} {self.limit}/{self.period}s "
            f"margin={self.margin:.3f}s queued={self.queued}>"
        )

    @property
    def queued(self) -> int:
        """Waiters in the queue now."""
        return self._queues.size

    @property
    def margin(self) -> float:
        """Seconds added to every window now."""
        return self._margin.value

    @property
    def in_flight(self) -> int:
        """Requests granted and not yet sent."""
        return self._in_flight

    # ---- the public operations

    async def acquire(
        self, priority: Priority = "interactive", *, tenant: str | None = None
    ) -> float:
        """Wait for a slot (fair between tenants, FIFO within a tenant and priority) and
        count the request as sent when this returns; return the clock time of the grant.
        Cancellation-safe: a cancelled waiter takes no slot."""
        tenant = DEFAULT_TENANT if tenant is None else tenant
        lock = self._lock
        lock.acquire()  # (a with-statement costs twice as much on this hot path)
        try:
            now = self._clock()
            if not self._queues.size and self._free(now):
                entry = self._tenant_stats.get(tenant)
                if entry is None or now >= self._tenants.sweep_at:
                    entry = self._tenants.get(tenant, now)
                entry.grants += 1
                entry.last_seen = now
                tat = self._tat
                self._tat = (tat if tat > now else now) + 2 * self._half_interval
                log = self._log
                if log and now < log[-1]:
                    bisect.insort(log, now)
                else:
                    log.append(now)
                if len(log) > self.limit:
                    del log[0]
                self.stats.grants += 1
                return now
            waiter = self._enqueue(priority, tenant, now)
        finally:
            lock.release()
        await self._wait(waiter)
        with self._lock:
            self._in_flight -= 1
            self._record(self._clock())
            if self._timer_blocked:  # it sleeps until a send time is known
                self._wake_timer()
        assert waiter.granted_at is not None
        return waiter.granted_at

    async def take(self, priority: Priority = "interactive", *, tenant: str | None = None) -> Grant:
        """Wait for a slot like `acquire()`, but count the request from `grant.sent()`
        (the moment it leaves) and learn the round trip from `grant.finish(status)`."""
        tenant = DEFAULT_TENANT if tenant is None else tenant
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock()
            if not self._queues.size and self._free(now):
                entry = self._tenant_stats.get(tenant)
                if entry is None or now >= self._tenants.sweep_at:
                    entry = self._tenants.get(tenant, now)
                entry.grants += 1
                entry.last_seen = now
                self._grant(now)
                return _LocalGrant(self, now, tenant)
            waiter = self._enqueue(priority, tenant, now)
        finally:
            lock.release()
        await self._wait(waiter)
        assert waiter.granted_at is not None
        return _LocalGrant(self, waiter.granted_at, tenant)

    def pause(self, seconds: float) -> None:
        """Kartra answered 429: stop all grants for `seconds` (the whole App backs off)
        and widen an adaptive margin. The synchronous form of `backoff()`."""
        with self._lock:
            now = self._clock()
            self.stats.rate_limited += 1
            self._paused_until = max(self._paused_until, now + seconds)
            self._margin.widen()
            self._sync_margin()
            self._storm.rate_limited(now, seconds, self._margin.value)
            self._wake_timer()

    async def backoff(self, seconds: float) -> None:
        """`pause(seconds)`, as the RateLimiter protocol awaits it (a limiter that needs
        I/O to pause, like RedisLimiter, has only this form)."""
        self.pause(seconds)

    def next_free(self) -> float:
        """The clock time when the next slot frees (now, if one is free; inf while every
        slot is held by a request in flight)."""
        with self._lock:
            return self._next_free(self._clock())

    # ---- internals (all under self._lock)

    def _window(self) -> float:
        return self._span

    def _sync_margin(self) -> None:
        """The margin changed: the window, the pacing interval and the stats follow."""
        self._span = self.period + self._margin.value + _EPSILON
        self._half_interval = self._span / self.limit / 2
        self._margin.export(self.stats)

    def _record(self, at: float) -> None:
        log = self._log
        if log and at < log[-1]:
            bisect.insort(log, at)
        else:
            log.append(at)
        if len(log) > self.limit:
            del log[0]

    def _grant(self, now: float) -> None:
        self._in_flight += 1
        self._tat = max(self._tat, now) + 2 * self._half_interval
        self.stats.grants += 1

    def _free(self, now: float) -> bool:
        if now < self._paused_until:
            return False
        room = self.limit - self._in_flight
        if room <= 0:
            return False
        log = self._log
        window = self._span
        if len(log) >= room and log[-room] + window > now:  # the form _next_free uses
            return False
        if now < self._tat - self._half_interval:
            recent = self._in_flight + len(log) - bisect.bisect_right(log, now - window)
            if recent >= self.burst:
                return False
        return True

    def _next_free(self, now: float) -> float:
        room = self.limit - self._in_flight
        if room <= 0:
            return math.inf
        log = self._log
        window = self._window()
        at = max(now, log[-room] + window) if len(log) >= room else now
        paced = self._tat - self._half_interval
        if at < paced:
            recent = self._in_flight + len(log) - bisect.bisect_right(log, at - window)
            if recent >= self.burst:
                at = paced
        return max(at, self._paused_until)

    def _enqueue(self, priority: Priority, tenant: str, now: float) -> _Waiter:
        waiter = _Waiter(priority, tenant, self._tenants.weight(tenant), now)
        self._tenants.get(tenant, now).queued += 1
        self._queues.push(waiter)
        self._dispatch(now)
        return waiter

    def _dispatch(self, now: float) -> None:
        queues = self._queues
        while queues.size and self._free(now):
            waiter = queues.pop()
            waiter.granted_at = now
            entry = self._tenants.get(waiter.tenant, now)
            entry.queued -= 1
            entry.grants += 1
            self._grant(now)
            if self._timer is waiter:
                self._timer = None
            waiter.wake()
        if queues.size and self._timer is None:
            self._timer = queues.peek()
            self._timer.wake()

    def _wake_timer(self) -> None:
        timer = self._timer
        if timer is not None and timer.granted_at is None:
            timer.wake()

    async def _wait(self, waiter: _Waiter) -> None:
        try:
            while True:
                await waiter.event.wait()
                with self._lock:
                    if waiter.granted_at is not None:
                        break
                    # woken to be the timer: sleep until a slot frees (or until woken again)
                    now = self._clock()
                    delay = self._next_free(now) - now
                    self._timer_blocked = delay > self.period
                    if self._timer_blocked:  # in flight (inf) or paused: woken on a change
                        waiter.event = anyio.Event()
                if 0 < delay <= self.period:
                    # a plain sleep is far cheaper than a cancellable wait; whatever happens
                    # meanwhile (a pause, a grant) is seen when it ends, at most a window on
                    await sleep_until(anyio.current_time() + delay)
                elif delay > 0:
                    with anyio.move_on_after(delay):
                        await waiter.event.wait()
                with self._lock:
                    if self._timer is waiter:
                        self._timer = None
                    if waiter.granted_at is None and waiter.event.is_set():
                        waiter.event = anyio.Event()
                    self._dispatch(self._clock())
                    if waiter.granted_at is not None:
                        break
        except BaseException:
            self._leave(waiter)
            raise
        waited = self._clock() - waiter.queued_at
        stats = self.stats
        stats.waits += 1
        stats.wait_total += waited
        stats.wait_max = max(stats.wait_max, waited)
        self._tenants.waited(waiter.tenant, waited)
        if self.slow_threshold is not None and waited >= self.slow_threshold:
            logger.info("a %s call waited %.3fs for the rate limiter", waiter.priority, waited)
            if self.on_slow is not None:
                self.on_slow(waited, waiter.priority)

    def _leave(self, waiter: _Waiter) -> None:
        """A cancelled waiter: out of the queue, or its grant handed back."""
        with self._lock:
            self.stats.cancelled += 1
            entry = self._tenants.get(waiter.tenant, self._clock())
            if waiter.granted_at is not None:
                self.stats.grants -= 1
                entry.grants -= 1
                self._in_flight -= 1
            else:
                entry.queued -= 1
                self._queues.remove(waiter)
            if self._timer is waiter:
                self._timer = None
            self._dispatch(self._clock())

    def _mark_sent(self, grant: _LocalGrant, *, traced: bool) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self._sent(grant, traced)
        finally:
            lock.release()

    def _sent(self, grant: _LocalGrant, traced: bool) -> None:
        if grant.sent_at is not None:
            return
        now = self._clock()
        grant.sent_at, grant.traced = now, traced
        self._in_flight -= 1
        self._record(now)
        if self._timer_blocked:  # the slot now frees at a known time: the timer recomputes
            self._wake_timer()

    def _finish(self, grant: _LocalGrant, status: int | None, sent: bool) -> None:
        lock = self._lock
        lock.acquire()
        try:
            if grant.sent_at is None:
                if not sent and status is None:
                    grant.sent_at = math.inf  # it never left: the slot goes back
                    self._in_flight -= 1
                    self.stats.grants -= 1
                    self._tenants.get(grant.tenant, self._clock()).grants -= 1
                    self._dispatch(self._clock())
                    return
                self._sent(grant, False)
            if status is None:
                return
            now = self._clock()
            sent_at = grant.sent_at
            assert sent_at is not None
            margin = self._margin
            before = margin.value
            if grant.traced:  # a round trip measured from the moment it left
                margin.sample(now - sent_at)
            if status != 429:
                margin.clean()
                if self._storm.count:
                    self._storm.clean(sent_at, now, margin.value)
            if grant.traced or margin.value != before:
                self._sync_margin()
        finally:
            lock.release()
