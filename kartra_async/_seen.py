"""Seen-stores: which callbacks were handled recently, for KartraWebhookRouter's dedupe.

A key goes through three states. `claim` marks it *busy* for a lease (a handler is
running), `mark_seen` marks it *seen* for the dedupe window once every handler
succeeded, `release` forgets a busy claim whose handler failed, so a redelivery runs
again. Nothing is remembered longer than its window; a busy claim whose worker died
ends with its lease.

`MemorySeenStore` (the default) lives in one process; `RedisSeenStore` (the `redis`
extra, coredis) is shared by every worker and machine that points at the same Redis.
Both are public through `kartra_async.webhooks`; a store of your own needs the three
coroutine methods of `SeenStore`.
"""

from __future__ import annotations

import enum
import heapq
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import coredis

__all__ = ["Claim", "MemorySeenStore", "RedisSeenStore", "SeenStore"]

_SEEN = "seen"


class Claim(enum.Enum):
    """What `SeenStore.claim` found."""

    NEW = "new"  #: nobody has it: the caller now holds it for the lease
    BUSY = "busy"  #: another delivery of it is being handled right now
    SEEN = "seen"  #: handled successfully within the window


@runtime_checkable
class SeenStore(Protocol):
    """Where the router remembers callbacks (see the module docs for the states)."""

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        """Atomically: if `key` is unknown, hold it as `token` (a fresh random hex string)
        for `lease` seconds and answer NEW; else say whether it is BUSY or SEEN."""
        ...

    async def mark_seen(self, key: str, window: float) -> None:
        """Remember `key` as handled for `window` seconds (whoever holds it)."""
        ...

    async def release(self, key: str, token: str) -> None:
        """Forget `key` if it is still held as `token` (its handler failed)."""
        ...


class MemorySeenStore:
    """A seen-store in this process's memory (one worker; lost on restart).

    Entries leave when their window or lease ends, so memory is bounded by the
    callbacks of one window. `clock` (monotonic seconds) is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemorySeenStore({len(self)} keys)"

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            entry = self._entries.get(key)
            if entry is not None and entry[1] <= now:
                del self._entries[key]

    def _set(self, key: str, value: str, seconds: float) -> None:
        until = self._clock() + seconds
        self._entries[key] = (value, until)
        heapq.heappush(self._expiries, (until, key))

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        self._purge(self._clock())
        entry = self._entries.get(key)
        if entry is None:
            self._set(key, token, lease)
            return Claim.NEW
        return Claim.SEEN if entry[0] == _SEEN else Claim.BUSY

    async def mark_seen(self, key: str, window: float) -> None:
        self._set(key, _SEEN, window)

    async def release(self, key: str, token: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == token:
            del self._entries[key]


#: KEYS: key. ARGV: token, lease (ms).
CLAIM_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'new'
end
if v == 'seen' then return 'seen' end
return 'busy'
"""

#: KEYS: key. ARGV: token. Deletes the key only while it is still held as token.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisSeenStore:
    """A seen-store in Redis (`pip install 'kartra-async[redis]'`, coredis), shared by
    every worker pointed at it: a callback handled by one is a duplicate for all.

    Pass a URL and the store makes its own client, connected by `async with store:`
    (KartraWebhookRouter does that in its lifespan); or pass a coredis client that you
    enter and close yourself. Keys are `prefix` + the callback's dedupe key and expire
    by Redis's own clock (PX), so workers' clocks need not agree. Each call is one
    atomic command or Lua script."""

    def __init__(self, redis: coredis.Redis[Any] | str, *, prefix: str = "kartra:seen:") -> None:
        self._url = redis if isinstance(redis, str) else None
        self._redis: coredis.Redis[Any] | None = None if isinstance(redis, str) else redis
        self.prefix = prefix
        self._entered = 0
        self._scripts: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        return f"RedisSeenStore(prefix={self.prefix!r})"

    async def __aenter__(self) -> RedisSeenStore:
        if self._url is not None and self._entered == 0:
            import coredis

            # made here, not in __init__: a coredis client that is never entered leaks
            redis: coredis.Redis[Any] = coredis.Redis.from_url(self._url)
            await redis.__aenter__()
            self._redis, self._scripts = redis, None
        self._entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered -= 1
        if self._url is not None and self._entered == 0 and self._redis is not None:
            redis, self._redis, self._scripts = self._redis, None, None
            await redis.__aexit__(exc_type, exc, tb)

    def _client(self) -> tuple[coredis.Redis[Any], Any, Any]:
        redis = self._redis
        if redis is None:
            raise RuntimeError(
                "RedisSeenStore(url) is not connected: enter it with `async with store:` "
                "(KartraWebhookRouter's lifespan does, once the app includes the router)"
            )
        if self._scripts is None:
            self._scripts = (
                redis.register_script(CLAIM_SCRIPT),
                redis.register_script(RELEASE_SCRIPT),
            )
        return redis, *self._scripts

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        _, claim, _ = self._client()
        answer: Any = await claim(keys=[self.prefix + key], args=[token, _ms(lease)])
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        return Claim(text)

    async def mark_seen(self, key: str, window: float) -> None:
        redis, _, _ = self._client()
        await redis.set(self.prefix + key, _SEEN, px=_ms(window))

    async def release(self, key: str, token: str) -> None:
        _, _, release = self._client()
        await release(keys=[self.prefix + key], args=[token])
