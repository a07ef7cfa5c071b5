"""RedisLimiter: one App's budget shared by every process and machine (coredis).

Each grant is one EVALSHA of one Lua script, atomic on the Redis server and timed by
the server's clock (TIME), so machines with skewed clocks still agree. The script keeps
the last slot times of the App in a list and *reserves* the earliest slot that keeps
every window of `period` + margin seconds at `limit` or fewer, paced window/limit apart
once `burst` slots of the window are taken: the caller sleeps until its slot and sends,
with no second round trip. A waiter cancelled before its slot gives it back (LREM). A
429 sets a pause key that every reservation honours.

Each process learns its own margin from what it sees (see _common.Margin): the
variation of the round trips measured from the moment each request left, plus the
recent peak of the delay between a slot and its request leaving (event-loop lag,
connection set-up), which slots in Redis's clock cannot see. Every Redis operation has a deadline
(`timeout`, which also bounds connecting): a dead, frozen or refusing Redis raises
`LimiterUnavailableError`, and the next call tries again, so the limiter recovers when
Redis returns.

In each process a FIFO lock lets one waiter at a time talk to Redis, and that waiter
reserves slots for every local waiter queued behind it in the same round trip, so a
burst of local waiters is one queue and a few round trips, not one per waiter.

Slot times are integer microseconds of Redis's clock, written with '%d': Lua's own
number-to-string conversion keeps 14 digits, too few for a microsecond epoch.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

import anyio

from .._constants import RATE_LIMIT_CALLS, RATE_LIMIT_PERIOD
from .._redact import mask
from ..errors import LimiterUnavailableError
from ._common import Grant, LimiterStats, Margin, Priority, StormLog, logger, sleep_until

if TYPE_CHECKING:
    import coredis
    from redis.asyncio import Redis as RedisPy

__all__ = ["PAUSE_SCRIPT", "RESERVE_SCRIPT", "RedisLimiter"]

#: KEYS: log, pause. ARGV: limit, window (us), pace interval (us), burst, count.
#: Reserves `count` slots in order; returns {slot, delay, slot, delay, ...} (us).
RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local pace = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local count = tonumber(ARGV[5] or '1')
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {}
local slot = now
for i = 1, count do
  slot = now
  if paused > slot then slot = paused end
  local n = redis.call('LLEN', KEYS[1])
  if n >= limit then
    local edge = tonumber(redis.call('LINDEX', KEYS[1], -limit)) + window
    if edge > slot then slot = edge end
  end
  local last = tonumber(redis.call('LINDEX', KEYS[1], -1) or '0')
  if last > slot then slot = last end
  if n >= burst and burst < limit then
    local recent = tonumber(redis.call('LINDEX', KEYS[1], -burst))
    if recent + window > slot and last + pace > slot then slot = last + pace end
  end
  redis.call('RPUSH', KEYS[1], string.format('%d', slot))
  out[2 * i - 1] = slot
  out[2 * i] = slot - now
end
-- keep twice the window's worth, so a slot given back (LREM) leaves the earlier ones
local keep = 2 * limit
if count > limit then keep = limit + count end
if redis.call('LLEN', KEYS[1]) > keep then redis.call('LTRIM', KEYS[1], -keep, -1) end
redis.call('PEXPIREAT', KEYS[1], math.floor((slot + window) / 1000) + 1000)
return out
"""

#: KEYS: pause. ARGV: seconds (us). Extends the pause to now + seconds, never shortens it.
PAUSE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return until_
"""


class _Backend(Protocol):
    async def script(self, script: str, keys: list[str], args: list[Any]) -> Any: ...

    async def lrem(self, key: str, value: int) -> None: ...

    async def delete(self, keys: list[str]) -> None: ...


class _Coredis:
    """coredis (asyncio and trio): scripts by SHA, loaded again after a Redis restart."""

    def __init__(self, client: coredis.Redis[Any]) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    async def script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client.register_script(script)
        return await registered(keys=keys, args=args)

    async def lrem(self, key: str, value: int) -> None:
        await self.client.lrem(key, 1, value)

    async def delete(self, keys: list[str]) -> None:
        await self.client.delete(keys)


class _RedisPy:
    """A redis-py asyncio client (asyncio only), behind the same calls."""

    def __init__(self, client: RedisPy) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    async def script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client.register_script(script)
        return await registered(keys=keys, args=args)

    async def lrem(self, key: str, value: int) -> None:
        await self.client.lrem(key, 1, str(value))

    async def delete(self, keys: list[str]) -> None:
        await self.client.delete(*keys)


def _where(url: str) -> str:
    """host:port/db of a Redis URL, without credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}:{parts.port or 6379}{parts.path}"


class _Ticket:
    __slots__ = ("abandoned", "slot")

    def __init__(self) -> None:
        self.slot: int | None = None  #: the reserved slot, us of Redis's clock
        self.abandoned = False


class _RedisGrant:
    __slots__ = ("_limiter", "at", "local_slot", "sent_at")

    def __init__(self, limiter: RedisLimiter, at: float, local_slot: float) -> None:
        self._limiter = limiter
        self.at = at
        self.local_slot = local_slot
        self.sent_at: float | None = None

    def sent(self) -> None:
        if self.sent_at is None:
            self.sent_at = time.monotonic()

    def finish(self, status: int | None = None, *, sent: bool = True) -> None:
        if status is not None and self.sent_at is not None:
            self._limiter._answered(self, status)


class RedisLimiter:
    """At most `limit` requests in any window of `period` + margin seconds for every
    process that uses the same Redis and `app_id`.

    `redis` is a URL (redis://, rediss:// for TLS, unix://; user and password in the URL;
    coredis, so asyncio and trio both work, with a pool of `max_connections`), a
    `coredis.Redis`, or a `redis.asyncio.Redis` (asyncio only). With a URL, open it with
    `async with RedisLimiter(url, app_id) as limiter:` (or `await limiter.aclose()` in
    the same task): coredis keeps its connections in a task group.

    Every Redis operation has a deadline of `timeout` seconds (connecting included): a
    dead, frozen or refusing Redis raises `LimiterUnavailableError` instead of granting,
    and the next call tries again. `margin` is "auto" (learned per process, between
    `min_margin` and `max_margin`; default 25 ms to period/10, starting at period/20: a
    slot in Redis's clock cannot see how late its request left, so the floor covers the
    stalls of a busy machine's event loops) or fixed seconds; `burst`
    as in `Limiter`. Waiters are FIFO within a process and across processes by arrival
    at Redis; priorities are not applied across processes.
    """

    #: take() accepts tenant= (the client names its account)
    per_tenant: ClassVar[bool] = True

    def __init__(
        self,
        redis: str | coredis.Redis[Any] | RedisPy,
        app_id: str,
        *,
        limit: int = RATE_LIMIT_CALLS,
        period: float = RATE_LIMIT_PERIOD,
        margin: float | Literal["auto"] = "auto",
        min_margin: float = 0.025,
        max_margin: float | None = None,
        burst: int | None = None,
        key_prefix: str = "kartra_async:limit:",
        max_connections: int = 10,
        timeout: float = 2.0,
    ) -> None:
        if limit < 1 or period <= 0 or timeout <= 0:
            raise ValueError("limit >= 1, period > 0 and timeout > 0 are required")
        if burst is not None and not 1 <= burst <= limit:
            raise ValueError("burst is between 1 and limit")
        self.limit = limit
        self.period = period
        self.burst = burst if burst is not None else max(1, limit // 4)
        self.timeout = timeout
        self.stats = LimiterStats()
        self._margin = Margin(
            margin,
            floor=min_margin,
            ceiling=max(period / 10, min_margin) if max_margin is None else max_margin,
            period=period,
            initial=period / 20,  # until answers come: the first slots' lag is unseen
        )
        self._margin.export(self.stats)
        self._keys = [f"{key_prefix}{app_id}:log", f"{key_prefix}{app_id}:pause"]
        self._gate = anyio.Lock(fast_acquire=True)
        self._pending: list[_Ticket] = []
        self._offsets: deque[float] = deque(maxlen=64)
        self._offset = 0.0
        self._lock = threading.Lock()
        self._storm = StormLog(f"App {mask(app_id)}")
        self._client: coredis.Redis[Any] | None = None
        self._entered = 0
        self._open = True
        if isinstance(redis, str):
            import coredis
            from coredis.retry import NoRetryPolicy

            self._where = _where(redis)
            self._client = coredis.Redis.from_url(
                redis,
                connect_timeout=timeout,
                stream_timeout=timeout,
                max_connections=max_connections,
                retry_policy=NoRetryPolicy(),
            )
            self._open = False
            self.redis: _Backend = _Coredis(self._client)
        elif type(redis).__module__.startswith("coredis"):
            self._where = repr(redis)
            self.redis = _Coredis(redis)  # type: ignore[arg-type]
        else:
            self._where = "redis-py client"
            self.redis = _RedisPy(redis)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"<RedisLimiter {self._keys[0]} {self.limit}/{self.period}s margin={self.margin:.3f}s>"
        )

    @property
    def margin(self) -> float:
        """Seconds added to every window now (this process's)."""
        return self._margin.value

    # ---- lifecycle

    async def __aenter__(self) -> RedisLimiter:
        """Open the pool and, best effort within `timeout`, one connection with the
        scripts loaded, so the first burst does not wait for the handshake."""
        if self._client is not None:
            await self._client.__aenter__()
            self._entered += 1
            self._open = True
            with anyio.move_on_after(self.timeout), contextlib.suppress(Exception):
                await self._client.script_load(RESERVE_SCRIPT)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool this limiter opened (in the task that opened it)."""
        if self._client is not None and self._entered:
            self._entered -= 1
            self._open = self._entered > 0
            await self._client.__aexit__(None, None, None)

    # ---- the RateLimiter protocol

    async def acquire(self, priority: Priority = "interactive") -> float:
        """Reserve the next slot (one round trip), sleep until it, return its time
        (seconds, Redis's clock). LimiterUnavailableError if Redis does not answer in
        time."""
        grant = await self.take(priority)
        grant.sent()
        return grant.at

    async def take(self, priority: Priority = "interactive") -> Grant:
        """Like `acquire()`, for a client that reports when the request left and how it
        ended (so the margin learns from the round trips)."""
        ticket = _Ticket()
        self._pending.append(ticket)
        try:
            async with self._deadline("reserve a slot"), self._gate:
                if ticket.slot is None:
                    await self._reserve_pending()
        except BaseException:
            ticket.abandoned = True
            if ticket in self._pending:
                self._pending.remove(ticket)
            raise
        assert ticket.slot is not None
        slot_us = ticket.slot
        waited = slot_us / 1_000_000 + self._offset - time.time()
        local_slot = time.monotonic() + waited
        self.stats.grants += 1
        if waited > 0:
            self.stats.waits += 1
            self.stats.wait_total += waited
            self.stats.wait_max = max(self.stats.wait_max, waited)
            try:
                await sleep_until(anyio.current_time() + waited)
            except BaseException:
                self.stats.grants -= 1
                self.stats.cancelled += 1
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                    try:
                        await self.redis.lrem(self._keys[0], slot_us)
                    except Exception as exc:  # the slot stays taken: safe, only unused
                        logger.debug("could not give a slot back to Redis: %r", exc)
                raise
        return _RedisGrant(self, slot_us / 1_000_000, local_slot)

    async def backoff(self, seconds: float) -> None:
        """Kartra answered 429: pause every process of this App for `seconds`, and widen
        this process's margin."""
        with self._lock:
            self.stats.rate_limited += 1
            self._margin.widen()
            self._margin.export(self.stats)
            self._storm.rate_limited(time.monotonic(), seconds, self._margin.value)
        async with self._deadline("pause the App"):
            await self.redis.script(PAUSE_SCRIPT, self._keys[1:], [math.ceil(seconds * 1e6)])

    async def reset(self) -> None:
        """Forget the App's log and pause (tests, or after changing limit/period)."""
        async with self._deadline("reset"):
            await self.redis.delete(self._keys)

    # ---- internals

    async def _reserve_pending(self) -> None:
        """One round trip reserves a slot for every local waiter queued so far (in
        order), so a burst costs one EVALSHA, not one per waiter."""
        batch, self._pending = self._pending, []
        window = self.period + self._margin.value
        args = [
            self.limit,
            math.ceil(window * 1_000_000),
            math.ceil(window / self.limit * 1_000_000),
            self.burst,
            len(batch),
        ]
        try:
            out = await self.redis.script(RESERVE_SCRIPT, self._keys, args)
        except BaseException:
            # the others stay queued: the next waiter to hold the gate tries again for them
            self._pending[:0] = [t for t in batch if not t.abandoned]
            raise
        # Redis's clock against ours: the smallest (answer - Redis's now) seen lately is the
        # offset plus the fastest one-way trip, so a slot is never awaited too early and a
        # slow answer does not make its waiters late
        redis_now = (int(out[0]) - int(out[1])) / 1_000_000
        offsets = self._offsets
        offsets.append(time.time() - redis_now)
        self._offset = min(offsets)
        for i, ticket in enumerate(batch):
            ticket.slot = int(out[2 * i])
        given_back = [t.slot for t in batch if t.abandoned and t.slot is not None]
        for slot in given_back:  # their waiters left while the batch was on its way
            with contextlib.suppress(Exception):
                await self.redis.lrem(self._keys[0], slot)

    @contextlib.asynccontextmanager
    async def _deadline(self, what: str) -> Any:
        if not self._open:
            raise RuntimeError(
                "RedisLimiter is not open: use 'async with RedisLimiter(url, app_id) as "
                "limiter:' (it keeps a pool of Redis connections)"
            )
        try:
            with anyio.fail_after(self.timeout):
                yield
        except TimeoutError as exc:
            raise LimiterUnavailableError(
                f"Redis ({self._where}) did not answer within {self.timeout}s ({what}); "
                f"no slot was granted and nothing was sent to Kartra"
            ) from exc
        except Exception as exc:
            raise LimiterUnavailableError(
                f"Redis ({self._where}) failed ({what}): {type(exc).__name__}: {exc}; "
                f"no slot was granted and nothing was sent to Kartra"
            ) from exc

    def _answered(self, grant: _RedisGrant, status: int) -> None:
        now = time.monotonic()
        with self._lock:
            margin = self._margin
            assert grant.sent_at is not None
            margin.lag(max(0.0, grant.sent_at - grant.local_slot))
            margin.sample(now - grant.sent_at)
            if status != 429:
                margin.clean()
                self._storm.clean(grant.sent_at, now, margin.value)
            margin.export(self.stats)
