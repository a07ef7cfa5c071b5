"""Rate limiting: Kartra allows 20 calls per second per App, shared by every account.

- `Limiter`: in process, any-window guarantee, FIFO, priorities, 429 pause.
- `shared_limiter(app_id)`: the one Limiter every AsyncKartra of that App uses by default.
- `RedisLimiter` (`pip install kartra-async[redis]`): the same guarantee across processes
  and machines (`from kartra_async.limits.redis import RedisLimiter`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._constants import RATE_LIMIT_CALLS, RATE_LIMIT_PERIOD
from ._local import Limiter, LimiterStats, Priority

__all__ = ["Limiter", "LimiterStats", "Priority", "RateLimiter", "shared_limiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What AsyncKartra needs from a limiter."""

    async def acquire(self, priority: Priority = "interactive") -> float: ...

    async def backoff(self, seconds: float) -> None:
        """Kartra answered 429: stop every grant of the App for `seconds`."""


_SHARED: dict[str, Limiter] = {}


def shared_limiter(app_id: str) -> Limiter:
    """The in-process Limiter of one App (created on first use): every AsyncKartra with
    that app_id uses it unless given another, so together they stay under 20 calls/s.
    Limiters of different Apps share nothing."""
    limiter = _SHARED.get(app_id)
    if limiter is None:
        shown = f"{app_id[:3]}***" if len(app_id) > 6 else "***"
        limiter = _SHARED[app_id] = Limiter(
            RATE_LIMIT_CALLS, RATE_LIMIT_PERIOD, name=f"App {shown}"
        )
    return limiter
