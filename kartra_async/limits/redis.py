"""RedisLimiter: one App's budget shared by every process and machine (redis-py asyncio).

Each grant is one EVALSHA of one Lua script, atomic on the Redis server and timed by
the server's clock (TIME), so machines with skewed clocks still agree. The script keeps
the last `limit` slot times of the App in a list and *reserves* the earliest slot that
keeps every window of `period` (+ margin) seconds at `limit` or fewer: the caller
sleeps until its slot and sends, with no second round trip. A waiter cancelled before
its slot gives it back (LREM). A 429 sets a pause key that every reservation honours.

In each process a FIFO lock lets one waiter at a time talk to Redis, so a burst of
local waiters is one queue, not a storm of round trips; the connection pool blocks
instead of failing when it is exhausted.

Slot times are integer microseconds of Redis's clock, written with '%d': Lua's own
number-to-string conversion keeps 14 digits, too few for a microsecond epoch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .._constants import RATE_LIMIT_CALLS, RATE_LIMIT_PERIOD
from ._local import _EARLY, _LONG_SLEEP, LimiterStats, Priority
from ._resp import RespPool

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RESERVE_SCRIPT", "RedisLimiter"]

#: KEYS: log, pause. ARGV: limit, window (us). Returns {slot (us), delay (us)}.
RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local slot = now
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > slot then slot = paused end
local n = redis.call('LLEN', KEYS[1])
if n >= limit then
  local edge = tonumber(redis.call('LINDEX', KEYS[1], -limit)) + window
  if edge > slot then slot = edge end
end
local last = tonumber(redis.call('LINDEX', KEYS[1], -1) or '0')
if last > slot then slot = last end
redis.call('RPUSH', KEYS[1], string.format('%d', slot))
-- keep twice the window's worth, so a slot given back (LREM) leaves the earlier ones
if n + 1 > 2 * limit then redis.call('LTRIM', KEYS[1], -2 * limit, -1) end
redis.call('PEXPIREAT', KEYS[1], math.floor((slot + window) / 1000) + 1000)
return {slot, slot - now}
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
    async def call(self, *args: Any) -> Any: ...

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any: ...

    async def aclose(self) -> None: ...


class _RedisPy:
    """A redis-py asyncio client behind the same two calls as RespPool."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    async def call(self, *args: Any) -> Any:
        return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client.register_script(script)
        return await registered(keys=keys, args=args)

    async def aclose(self) -> None:
        await self.client.aclose()


class RedisLimiter:
    """At most `limit` grants in any window of `period` (+ `margin`) seconds for every
    process that uses the same Redis and `app_id`. The default margin (10 ms) covers the
    wake-up jitter of several processes sharing a machine's cores.

    `redis` is a URL (redis://host:port/db: a small RESP client on anyio, so asyncio
    and trio both work, with a blocking pool of `max_connections`, closed by
    `aclose()`) or a `redis.asyncio.Redis` (asyncio only; size its pool or make it a
    BlockingConnectionPool). Waiters are FIFO within a process and across processes
    by arrival at Redis; priorities are not applied across processes.
    """

    def __init__(
        self,
        redis: Redis | str,
        app_id: str,
        *,
        limit: int = RATE_LIMIT_CALLS,
        period: float = RATE_LIMIT_PERIOD,
        margin: float = 0.01,
        key_prefix: str = "kartra_async:limit:",
        max_connections: int = 10,
    ) -> None:
        if limit < 1 or period <= 0 or margin < 0:
            raise ValueError("limit >= 1, period > 0 and margin >= 0")
        self._owns = isinstance(redis, str)
        self.redis: _Backend = (
            RespPool(redis, max_connections) if isinstance(redis, str) else _RedisPy(redis)
        )
        self.limit = limit
        self.period = period
        self.margin = margin
        self.stats = LimiterStats()
        self._window_us = math.ceil((period + margin) * 1_000_000)
        self._keys = [f"{key_prefix}{app_id}:log", f"{key_prefix}{app_id}:pause"]
        self._gate = anyio.Lock(fast_acquire=True)

    def __repr__(self) -> str:
        return f"<RedisLimiter {self._keys[0]} {self.limit}/{self.period}s>"

    async def acquire(self, priority: Priority = "interactive") -> float:
        """Reserve the next slot (one round trip), sleep until it, return its time
        (seconds, Redis's clock)."""
        async with self._gate:
            slot_us, delay_us = await self.redis.evalsha(
                RESERVE_SCRIPT, self._keys, [self.limit, self._window_us]
            )
        self.stats.grants += 1
        if delay_us > 0:
            self.stats.waits += 1
            waited = delay_us / 1_000_000
            self.stats.wait_total += waited
            self.stats.wait_max = max(self.stats.wait_max, waited)
            try:
                # a long sleep wakes 1-2 ms late: sleep to just before the slot, then the
                # short, precise rest
                deadline = anyio.current_time() + waited
                if waited > _LONG_SLEEP:
                    await anyio.sleep_until(deadline - _EARLY)
                await anyio.sleep_until(deadline)
            except BaseException:
                self.stats.grants -= 1
                self.stats.cancelled += 1
                with anyio.CancelScope(shield=True):
                    await self.redis.call("LREM", self._keys[0], 1, slot_us)
                raise
        return float(slot_us) / 1_000_000

    async def backoff(self, seconds: float) -> None:
        """Kartra answered 429: pause every process of this App for `seconds`."""
        self.stats.rate_limited += 1
        await self.redis.evalsha(PAUSE_SCRIPT, self._keys[1:], [math.ceil(seconds * 1_000_000)])

    async def reset(self) -> None:
        """Forget the App's log and pause (tests, or after changing limit/period)."""
        await self.redis.call("DEL", *self._keys)

    async def aclose(self) -> None:
        if self._owns:
            await self.redis.aclose()
