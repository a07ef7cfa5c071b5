"""The in-process limiter: a sliding log that never lets more than `limit` grants into
ANY window of `period` seconds, strict FIFO within a priority, no polling.

How it waits without a background task: grants are handed out by `_dispatch()`, a
plain function that runs when a waiter arrives, when the wait for free capacity ends,
and when a waiter leaves. While waiters remain and no capacity is free, exactly one of
them, the *timer*, sleeps until the oldest grant in the log leaves the window, then
dispatches again; every other waiter sleeps on its own event until it is granted.
A waiter cancelled in the queue simply leaves it (and hands the timer role on); a
waiter cancelled after it was granted, before acquire() returned, hands its grant back.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio
import attrs

__all__ = ["Limiter", "LimiterStats", "Priority"]

logger = logging.getLogger("kartra_async.limits")

Priority = Literal["interactive", "bulk"]
_LONG_SLEEP = 0.02
_EARLY = 0.004
PRIORITIES: tuple[Priority, ...] = ("interactive", "bulk")


@attrs.define
class LimiterStats:
    """Counters of one limiter (read `limiter.stats`)."""

    grants: int = 0  #: acquire() calls that got a slot
    waits: int = 0  #: of those, how many had to queue
    wait_total: float = 0.0  #: seconds spent queued, summed
    wait_max: float = 0.0  #: the longest single wait, seconds
    rate_limited: int = 0  #: HTTP 429 answers reported through pause()
    cancelled: int = 0  #: waiters cancelled in the queue or right after their grant

    @property
    def wait_mean(self) -> float:
        return self.wait_total / self.waits if self.waits else 0.0


class _Waiter:
    __slots__ = ("event", "granted_at", "priority", "queued_at")

    def __init__(self, priority: Priority, queued_at: float) -> None:
        self.priority = priority
        self.queued_at = queued_at
        self.event = anyio.Event()
        self.granted_at: float | None = None


class Limiter:
    """At most `limit` grants in any window of `period` (+ `margin`) seconds.

    `await limiter.acquire()` waits for a slot; one slot per HTTP request. "interactive"
    waiters go before queued "bulk" ones, but bulk gets at least `bulk_share` of the
    grants while both wait, so neither starves. `pause(seconds)` stops every grant (an
    HTTP 429 answer). `clock` (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        limit: int = 20,
        period: float = 1.0,
        *,
        margin: float = 0.002,
        bulk_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        slow_threshold: float | None = None,
        on_slow: Callable[[float, Priority], None] | None = None,
        name: str = "",
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if period <= 0 or margin < 0:
            raise ValueError("period must be > 0 and margin >= 0")
        if not 0 <= bulk_share <= 1:
            raise ValueError("bulk_share is a share between 0 and 1")
        self.limit = limit
        self.period = period
        self.margin = margin
        self.bulk_share = bulk_share
        self.name = name
        self.slow_threshold = slow_threshold
        self.on_slow = on_slow
        self.stats = LimiterStats()
        self._clock = clock
        self._window = period + margin
        #: the last `limit` grant times, ascending; a grant's entry moves to the time its
        #: waiter actually resumed, which is closer to when its request goes out
        self._log: list[float] = []
        self._queues: dict[Priority, deque[_Waiter]] = {p: deque() for p in PRIORITIES}
        self._waiting = 0
        self._timer: _Waiter | None = None
        self._paused_until = -math.inf
        self._bulk_credit = 0.0

    def __repr__(self) -> str:
        return f"<Limiter {self.name or ''} {self.limit}/{self.period}s queued={self._waiting}>"

    @property
    def queued(self) -> int:
        """Waiters in the queue now."""
        return self._waiting

    # ---- the public operations

    async def acquire(self, priority: Priority = "interactive") -> float:
        """Wait for a slot (FIFO within the priority); return the clock time of the grant.
        Cancellation-safe: a cancelled waiter takes no slot."""
        now = self._clock()
        if not self._waiting and self._free(now):
            self._record(now)
            self.stats.grants += 1
            return now
        return await self._wait(priority, now)

    def pause(self, seconds: float) -> None:
        """Stop all grants for `seconds` (Kartra answered 429: the whole App backs off)."""
        self.stats.rate_limited += 1
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        logger.warning(
            "Kartra answered 429; pausing every call of %s for %.2fs",
            self.name or "this App",
            seconds,
        )
        if self._timer is not None:
            self._wake_timer()

    async def backoff(self, seconds: float) -> None:
        """The RateLimiter protocol's pause (awaitable for limiters that need I/O)."""
        self.pause(seconds)

    def next_free(self) -> float:
        """The clock time when the next slot frees (now, if one is free)."""
        now = self._clock()
        at = self._log[0] + self._window if len(self._log) == self.limit else now
        return max(at, self._paused_until, now)

    # ---- internals

    def _record(self, at: float) -> None:
        log = self._log
        if log and at < log[-1]:
            bisect.insort(log, at)
        else:
            log.append(at)
        if len(log) > self.limit:
            del log[0]

    def _move(self, granted: float, resumed: float) -> None:
        """A waiter resumes after its grant (a burst of waiters resumes one by one):
        count its slot from then, so bursts stay a window apart as they go out."""
        log = self._log
        i = bisect.bisect_left(log, granted)
        if resumed > granted and i < len(log) and log[i] == granted:
            del log[i]
            self._record(resumed)

    def _free(self, now: float) -> bool:
        if now < self._paused_until:
            return False
        return len(self._log) < self.limit or now - self._log[0] >= self._window

    async def _wait(self, priority: Priority, now: float) -> float:
        waiter = _Waiter(priority, now)
        self._queues[priority].append(waiter)
        self._waiting += 1
        self._dispatch()
        try:
            while waiter.granted_at is None:
                await waiter.event.wait()
                if waiter.granted_at is not None:
                    break
                # woken to be the timer: sleep until a slot frees (or until woken again)
                waiter.event = anyio.Event()
                delay = self.next_free() - self._clock()
                if delay > _LONG_SLEEP:
                    # long sleeps wake ~1-2 ms late (timer slack): wake a little early, then
                    # sleep the short rest, which is precise
                    delay -= _EARLY
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await waiter.event.wait()
                if self._timer is waiter:
                    self._timer = None
                self._dispatch()
        except BaseException:
            self._leave(waiter)
            raise
        resumed = self._clock()
        self._move(waiter.granted_at, resumed)
        waited = resumed - waiter.queued_at
        stats = self.stats
        stats.waits += 1
        stats.wait_total += waited
        stats.wait_max = max(stats.wait_max, waited)
        if self.slow_threshold is not None and waited >= self.slow_threshold:
            logger.info("a %s call waited %.3fs for the rate limiter", priority, waited)
            if self.on_slow is not None:
                self.on_slow(waited, priority)
        return waiter.granted_at

    def _leave(self, waiter: _Waiter) -> None:
        """A cancelled waiter: out of the queue, or its grant handed back."""
        self.stats.cancelled += 1
        if waiter.granted_at is not None:
            self.stats.grants -= 1
            with contextlib.suppress(ValueError):  # already pushed out by later grants
                self._log.remove(waiter.granted_at)
        else:
            self._queues[waiter.priority].remove(waiter)
            self._waiting -= 1
        if self._timer is waiter:
            self._timer = None
        self._dispatch()

    def _next_waiter(self, *, pop: bool) -> _Waiter:
        interactive, bulk = self._queues["interactive"], self._queues["bulk"]
        if interactive and bulk:
            take_bulk = self._bulk_credit >= 1.0
            if pop:
                self._bulk_credit = (
                    self._bulk_credit - 1.0 if take_bulk else self._bulk_credit + self.bulk_share
                )
            queue = bulk if take_bulk else interactive
        else:
            queue = interactive or bulk
        return queue.popleft() if pop else queue[0]

    def _dispatch(self) -> None:
        now = self._clock()
        while self._waiting and self._free(now):
            waiter = self._next_waiter(pop=True)
            self._waiting -= 1
            waiter.granted_at = now
            self._record(now)
            self.stats.grants += 1
            waiter.event.set()
            if self._timer is waiter:
                self._timer = None
        if self._waiting and self._timer is None:
            self._timer = self._next_waiter(pop=False)
            self._timer.event.set()

    def _wake_timer(self) -> None:
        timer = self._timer
        if timer is not None and timer.granted_at is None:
            timer.event.set()
