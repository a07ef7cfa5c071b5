"""Rate limiting: Kartra allows 20 calls per second per App, shared by every account,
and counts a call when it *arrives*.

- `Limiter`: in process, counted in send times, paced, adaptive margin, fair between
  the App's accounts (tenants, weighted) and FIFO within each, priorities, 429 pause; one instance serves every thread and event loop of a process.
- `shared_limiter(app_id)`: the one Limiter every AsyncKartra of that App uses by default.
- `RedisLimiter` (`pip install kartra-async[redis]`): the same budget across processes
  and machines (`from kartra_async.limits.redis import RedisLimiter`).
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from .._constants import RATE_LIMIT_CALLS, RATE_LIMIT_PERIOD
from .._redact import mask
from ..errors import LimiterUnavailableError
from ._common import DEFAULT_TENANT, Grant, LimiterStats, Priority, TenantStats, Weights
from ._local import Limiter

__all__ = [
    "DEFAULT_TENANT",
    "Grant",
    "Limiter",
    "LimiterStats",
    "LimiterUnavailableError",
    "Priority",
    "RateLimiter",
    "TenantStats",
    "Weights",
    "shared_limiter",
]


@runtime_checkable
class RateLimiter(Protocol):
    """What AsyncKartra needs from a limiter. A limiter may also offer
    `async take(priority, *, tenant) -> Grant` (Limiter and RedisLimiter do): the
    client then names its account (tenant), reports the moment each request leaves and
    how its exchange ended."""

    async def acquire(self, priority: Priority = "interactive") -> float: ...

    async def backoff(self, seconds: float) -> None:
        """Kartra answered 429: stop every grant of the App for `seconds`."""


_SHARED: dict[str, Limiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(app_id: str) -> Limiter:
    """The in-process Limiter of one App (created on first use): every AsyncKartra with
    that app_id uses it unless given another, in any thread or event loop, so together
    they stay under 20 calls/s. Limiters of different Apps share nothing."""
    limiter = _SHARED.get(app_id)
    if limiter is None:
        with _SHARED_LOCK:
            limiter = _SHARED.get(app_id)
            if limiter is None:
                limiter = _SHARED[app_id] = Limiter(
                    RATE_LIMIT_CALLS, RATE_LIMIT_PERIOD, name=f"App {mask(app_id)}"
                )
    return limiter
