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

Tenants (the accounts of the App) share the budget fairly, decided in the same script:
a tenant may hold at most its weighted share of the next window's slots, so its deep
queue cannot reserve the future ahead of another tenant's; its waiters beyond the share
wait in their process and reserve when one of its slots passes. Data model (under
`key_prefix` + app_id): `log` (list, the App's latest slots, at most 2 x limit plus a
batch), `pause` (string), `active` (sorted set tenant -> latest slot) and `weights`
(hash), holding the tenants active within `idle_ttl`, and `t:<tenant>` (list, the
tenant's slots ahead, at most its share, expiring `idle_ttl` after its last slot).

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

if TYPE_CHECKING:
    import coredis
    from redis.asyncio import Redis as RedisPy

__all__ = ["PAUSE_SCRIPT", "RESERVE_SCRIPT", "RedisLimiter"]

#: KEYS: log, pause, active, weights, then one slot list per tenant of the batch.
#: ARGV: limit, window (us), pace interval (us), burst, idle ttl (us), then per tenant:
#: name, weight, count. Reserves up to `count` slots per tenant, round-robin between the
#: tenants, each tenant holding at most its share of the slots ahead; returns
#: {now, then per tenant: granted, retry_at, slot, ...} (us; retry_at 0 if all granted).
RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local pace = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local n = (#ARGV - 5) / 3
-- tenants idle for ttl are forgotten: memory follows the active tenants
local idle = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now - ttl))
for i = 1, #idle, 500 do
  local chunk = {unpack(idle, i, math.min(i + 499, #idle))}
  redis.call('ZREM', KEYS[3], unpack(chunk))
  redis.call('HDEL', KEYS[4], unpack(chunk))
end
local name, want, left, held = {}, {}, {}, {}
for j = 1, n do
  name[j] = ARGV[3 + 3 * j]
  want[j] = tonumber(ARGV[5 + 3 * j])
  redis.call('HSET', KEYS[4], name[j], ARGV[4 + 3 * j])
  local seen = tonumber(redis.call('ZSCORE', KEYS[3], name[j]) or '0')
  if seen < now then redis.call('ZADD', KEYS[3], string.format('%d', now), name[j]) end
  -- its slots still ahead (the passed ones leave its list)
  local key = KEYS[4 + j]
  while true do
    local head = redis.call('LINDEX', key, 0)
    if not head or tonumber(head) > now then break end
    redis.call('LPOP', key)
  end
  held[j] = redis.call('LLEN', key)
end
-- the weights of the tenants active in the last window (or holding slots ahead)
local active = redis.call('ZRANGEBYSCORE', KEYS[3], string.format('%d', now - window), '+inf')
local total = 0
for i = 1, #active, 500 do
  local ws = redis.call('HMGET', KEYS[4], unpack(active, i, math.min(i + 499, #active)))
  for _, w in ipairs(ws) do total = total + (tonumber(w) or 1) end
end
for j = 1, n do
  local share = math.max(1, math.ceil(limit * tonumber(ARGV[4 + 3 * j]) / total))
  left[j] = math.max(0, math.min(want[j], share - held[j]))
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
local slots = {}
for j = 1, n do slots[j] = {} end
local slot = now
local granted = 0
local more = true
while more do
  more = false
  for j = 1, n do
    if left[j] > 0 then
      slot = now
      if paused > slot then slot = paused end
      local count = redis.call('LLEN', KEYS[1])
      if count >= limit then
        local edge = tonumber(redis.call('LINDEX', KEYS[1], -limit)) + window
        if edge > slot then slot = edge end
      end
      local last = tonumber(redis.call('LINDEX', KEYS[1], -1) or '0')
      if last > slot then slot = last end
      if count >= burst and burst < limit then
        local recent = tonumber(redis.call('LINDEX', KEYS[1], -burst))
        if recent + window > slot and last + pace > slot then slot = last + pace end
      end
      local text = string.format('%d', slot)
      redis.call('RPUSH', KEYS[1], text)
      redis.call('RPUSH', KEYS[4 + j], text)
      table.insert(slots[j], slot)
      granted = granted + 1
      left[j] = left[j] - 1
      if left[j] > 0 then more = true end
    end
  end
end
local out = {now}
for j = 1, n do
  local key = KEYS[4 + j]
  local got = #slots[j]
  local retry = 0
  if got < want[j] then retry = tonumber(redis.call('LINDEX', key, 0)) + 1 end
  table.insert(out, got)
  table.insert(out, retry)
  for _, s in ipairs(slots[j]) do table.insert(out, s) end
  if got > 0 then
    redis.call('ZADD', KEYS[3], string.format('%d', slots[j][got]), name[j])
    redis.call('PEXPIREAT', key, math.floor((slots[j][got] + ttl) / 1000) + 1000)
  end
end
-- keep twice the window's worth, so a slot given back (LREM) leaves the earlier ones
local keep = 2 * limit
if granted > limit then keep = limit + granted end
if redis.call('LLEN', KEYS[1]) > keep then redis.call('LTRIM', KEYS[1], -keep, -1) end
local expire = math.floor((slot + ttl) / 1000) + 1000
redis.call('PEXPIREAT', KEYS[1], expire)
redis.call('PEXPIREAT', KEYS[3], expire)
redis.call('PEXPIREAT', KEYS[4], expire)
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
        await self.client.lrem(key, 1, str(value))

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
    __slots__ = ("abandoned", "retry_at", "slot", "tenant")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.slot: int | None = None  #: the reserved slot, us of Redis's clock
        #: not granted: the tenant holds its share of the slots ahead until then (us)
        self.retry_at = 0
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
    as in `Limiter`.

    Tenants (`take(tenant=...)`, the accounts of the App) share the budget fairly in
    every process together, decided in Redis: each tenant may hold at most its share of
    the next window's slots (`limit` x its weight / the weights of the tenants active in
    the last window, at least one), so a tenant's deep queue cannot reserve the future
    ahead of another's; one tenant alone holds all of them. Waiters are FIFO within a
    tenant; priorities are not applied across processes. `weights` as in `Limiter`
    (give every process the same). A tenant idle for `idle_ttl` seconds is forgotten,
    in Redis and in `stats.tenants`.
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
        weights: Weights | None = None,
        idle_ttl: float = 300.0,
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
        self._tenants = Tenants(self.stats, weights, idle_ttl)
        self._margin = Margin(
            margin,
            floor=min_margin,
            ceiling=max(period / 10, min_margin) if max_margin is None else max_margin,
            period=period,
            initial=period / 20,  # until answers come: the first slots' lag is unseen
        )
        self._margin.export(self.stats)
        base = f"{key_prefix}{app_id}:"
        #: the App's slot log, its pause, the active tenants and their weights
        self._keys = [f"{base}log", f"{base}pause", f"{base}active", f"{base}weights"]
        self._tenant_prefix = f"{base}t:"
        self._gate = anyio.Lock(fast_acquire=True)
        self._pending: list[_Ticket] = []
        #: set (and dropped) after each reservation, and when a waiter leaves
        self._reserved: anyio.Event | None = None
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

    async def acquire(
        self, priority: Priority = "interactive", *, tenant: str | None = None
    ) -> float:
        """Reserve the next slot (one round trip), sleep until it, return its time
        (seconds, Redis's clock). LimiterUnavailableError if Redis does not answer in
        time."""
        grant = await self.take(priority, tenant=tenant)
        grant.sent()
        return grant.at

    async def take(self, priority: Priority = "interactive", *, tenant: str | None = None) -> Grant:
        """Like `acquire()`, for a client that reports when the request left and how it
        ended (so the margin learns from the round trips)."""
        tenant = DEFAULT_TENANT if tenant is None else tenant
        ticket = _Ticket(tenant)
        started = time.monotonic()
        entry = self._tenants.get(tenant, started)
        entry.queued += 1
        self._pending.append(ticket)
        try:
            while True:
                async with self._deadline("reserve a slot"), self._gate:
                    if ticket.slot is None and self._redis_now() >= ticket.retry_at:
                        await self._reserve_pending()
                if ticket.slot is not None:
                    break
                # the tenant holds its share of the slots ahead: its first waiter here
                # tries again when one passes, the others when a reservation is made
                first = next((t for t in self._pending if t.tenant == tenant), ticket)
                if first is ticket:
                    await sleep_until(anyio.current_time() + self._until(ticket.retry_at) + 0.0005)
                else:
                    if self._reserved is None:
                        self._reserved = anyio.Event()
                    await self._reserved.wait()
        except BaseException as exc:
            ticket.abandoned = True
            entry.queued -= 1
            if not isinstance(exc, Exception):
                self.stats.cancelled += 1
            if ticket in self._pending:
                self._pending.remove(ticket)
                self._wake_pending()  # it may have been its tenant's first
            raise
        entry.queued -= 1
        slot_us = ticket.slot
        waited = self._until(slot_us)
        local_slot = time.monotonic() + waited
        self.stats.grants += 1
        entry.grants += 1
        if waited > 0:
            try:
                await sleep_until(anyio.current_time() + waited)
            except BaseException:
                self.stats.grants -= 1
                entry.grants -= 1
                self.stats.cancelled += 1
                await self._give_back(tenant, slot_us)
                raise
        waited = time.monotonic() - started
        if waited > 0.001:
            self.stats.waits += 1
            self.stats.wait_total += waited
            self.stats.wait_max = max(self.stats.wait_max, waited)
            self._tenants.waited(tenant, waited)
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
        """Forget the App's log, pause and tenants (tests, or after changing
        limit/period); slot lists of tenants expire by themselves."""
        async with self._deadline("reset"):
            await self.redis.delete(self._keys)

    # ---- internals

    def _wake_pending(self) -> None:
        reserved, self._reserved = self._reserved, None
        if reserved is not None:
            reserved.set()

    def _redis_now(self) -> int:
        """Redis's clock now, as this process estimates it (us)."""
        return int((time.time() - self._offset) * 1_000_000)

    def _until(self, at_us: int) -> float:
        """Seconds from now until `at_us` of Redis's clock."""
        return at_us / 1_000_000 + self._offset - time.time()

    async def _give_back(self, tenant: str, slot_us: int) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
            try:
                await self.redis.lrem(self._keys[0], slot_us)
                await self.redis.lrem(self._tenant_prefix + tenant, slot_us)
            except Exception as exc:  # the slot stays taken: safe, only unused
                logger.debug("could not give a slot back to Redis: %r", exc)

    async def _reserve_pending(self) -> None:
        """One round trip reserves slots for every local waiter queued so far (FIFO
        within each tenant, as many as each tenant's share allows), so a burst costs
        one EVALSHA, not one per waiter."""
        batch, self._pending = self._pending, []
        by_tenant: dict[str, list[_Ticket]] = {}
        for ticket in batch:
            by_tenant.setdefault(ticket.tenant, []).append(ticket)
        window = self.period + self._margin.value
        args: list[Any] = [
            self.limit,
            math.ceil(window * 1_000_000),
            math.ceil(window / self.limit * 1_000_000),
            self.burst,
            math.ceil(self._tenants.idle_ttl * 1_000_000),
        ]
        for tenant, tickets in by_tenant.items():
            args += [tenant, repr(self._tenants.weight(tenant)), len(tickets)]
        keys = self._keys + [self._tenant_prefix + tenant for tenant in by_tenant]
        try:
            out = await self.redis.script(RESERVE_SCRIPT, keys, args)
        except BaseException:
            # the others stay queued: the next waiter to hold the gate tries again for them
            self._pending[:0] = [t for t in batch if not t.abandoned]
            raise
        # Redis's clock against ours: the smallest (answer - Redis's now) seen lately is the
        # offset plus the fastest one-way trip, so a slot is never awaited too early and a
        # slow answer does not make its waiters late
        offsets = self._offsets
        offsets.append(time.time() - int(out[0]) / 1_000_000)
        self._offset = min(offsets)
        at = 1
        given_back: list[tuple[str, int]] = []
        for tenant, tickets in by_tenant.items():
            got, retry_at = int(out[at]), int(out[at + 1])
            for ticket, slot in zip(tickets, out[at + 2 : at + 2 + got], strict=False):
                ticket.slot = int(slot)
                if ticket.abandoned:  # its waiter left while the batch was on its way
                    given_back.append((tenant, ticket.slot))
            for ticket in tickets[got:]:
                ticket.retry_at = retry_at
            at += 2 + got
        self._pending[:0] = [t for t in batch if t.slot is None and not t.abandoned]
        self._wake_pending()
        for tenant, slot in given_back:
            with contextlib.suppress(Exception):
                await self.redis.lrem(self._keys[0], slot)
                await self.redis.lrem(self._tenant_prefix + tenant, slot)

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
