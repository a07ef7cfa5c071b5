"""When a failed call may be sent again, and how long to wait first.

Kartra has no idempotency keys, so the rule is what a repeat could do:

==========================================  =========================================
what happened                               sent again?
==========================================  =========================================
HTTP 429 Too many requests                  always, after the App-wide pause, at most
                                            `rate_limit_resends` times
the connection never opened (connect        always: Kartra never saw the call
error, connect timeout, pool timeout)
5xx, read/write timeout, connection         only if every cmd of the call is read-only
dropped after sending, unreadable body      or idempotent (commands.Safety); otherwise
                                            AmbiguousResultError
Kartra answered status "Error"              never
==========================================  =========================================

A 429 resend does not count as an attempt: Kartra refused the request unapplied. An
ambiguous result (the last rows) is reconciled instead of raised only when the
client's (or the call's) `reconcile` option is on and the call's first cmd has a
strategy in the command table (`Command.reconcile`).

Backoff before retry number n (1, 2, ...)::

    b = min(backoff_cap, backoff_base * 2 ** (n - 1))
    delay = b * (1 - jitter + jitter * random())     # random() in [0, 1)

so jitter=0 waits exactly b, jitter=1 anywhere in [0, b).
"""

from __future__ import annotations

import enum
import random as _random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import attrs

from ._commands import Safety, ambiguous_error
from ._constants import (
    RATE_LIMIT_PAUSE,
    RATE_LIMIT_PAUSE_MAX,
    RATE_LIMIT_RESENDS,
    SERVER_RETRY_AFTER_MAX,
)
from .errors import KartraConnectionError, KartraDecodeError, KartraError, KartraResponseError

if TYPE_CHECKING:
    from ._commands import Call

__all__ = ["Decision", "RetryEvent", "RetryPolicy", "ambiguous_error", "decide"]


@attrs.frozen
class RetryEvent:
    """Passed to `RetryPolicy.on_retry` before each new attempt."""

    attempt: int  #: the attempt about to be made (2 for the first retry)
    delay: float  #: seconds it will wait first
    error: KartraError  #: what went wrong with the previous attempt
    cmds: tuple[str, ...]  #: the cmds of the call, in order


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0 (got {value!r})")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how patiently a call is sent again: the ONE place for retries (after
    transport failures and 5xx) and resends (after HTTP 429). A call that a repeat
    could apply twice is never retried after it may have reached Kartra (see the
    module docs). Keyword-only and frozen: derive a variant with `attrs.evolve`.

    Examples:
        >>> RetryPolicy(max_attempts=5, backoff_cap=2.0, rate_limit_resends=10)
    """

    #: attempts in all, the first included (1: never retry); 429 resends do not count
    max_attempts: int = attrs.field(default=3)
    #: seconds before the first retry, before jitter; doubles with each retry
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    #: the longest wait between two attempts, before jitter
    backoff_cap: float = attrs.field(default=8.0, validator=_non_negative)
    #: share of each wait drawn at random: 0 waits exactly, 1 anywhere in [0, wait)
    jitter: float = 0.5
    #: a 503's Retry-After is honoured (when longer than the backoff) up to this many seconds
    server_retry_after_max: float = attrs.field(
        default=SERVER_RETRY_AFTER_MAX, validator=_non_negative
    )
    #: seconds the whole App pauses after an HTTP 429 without a Retry-After header
    rate_limit_pause: float = attrs.field(default=RATE_LIMIT_PAUSE, validator=_non_negative)
    #: the longest App-wide pause after a 429, whatever its Retry-After says
    rate_limit_pause_max: float = attrs.field(default=RATE_LIMIT_PAUSE_MAX, validator=_non_negative)
    #: how many times one request refused with 429 is sent again before RateLimitError
    #: (0: never; without a limiter a 429 is raised at once)
    rate_limit_resends: int = RATE_LIMIT_RESENDS
    #: called with a RetryEvent before each retry (not before 429 resends)
    on_retry: Callable[[RetryEvent], None] | None = attrs.field(default=None, eq=False)
    #: random numbers in [0, 1) for the jitter (injectable for tests)
    random: Callable[[], float] = attrs.field(default=_random.random, eq=False, repr=False)
    #: how a retry waits (injectable for tests)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=anyio.sleep, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff_base and backoff_cap >= 0, jitter between 0 and 1")
        if self.rate_limit_resends < 0:
            raise ValueError("rate_limit_resends must be >= 0")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        base = min(self.backoff_cap, self.backoff_base * 2 ** (retry - 1))
        return float(base * (1 - self.jitter + self.jitter * self.random()))

    def rate_limit_delay(self, retry_after: float | None) -> float:
        """Seconds the App pauses after a 429 whose Retry-After asked for `retry_after`
        (None or 0: `rate_limit_pause`), at most `rate_limit_pause_max`."""
        return min(retry_after or self.rate_limit_pause, self.rate_limit_pause_max)


class Decision(enum.Enum):
    """What may be done with a call that failed (see `decide`)."""

    RETRY = "retry"  #: safe to send again
    AMBIGUOUS = "ambiguous"  #: may have been applied, and a repeat could do harm
    RAISE = "raise"  #: not a transport failure: raise as it is


def decide(error: KartraError, call: Call) -> Decision:
    """Whether `call`, which failed with `error`, may be sent again."""
    if isinstance(error, KartraConnectionError):
        if not error.request_sent:
            return Decision.RETRY
    elif isinstance(error, KartraDecodeError):
        return Decision.RAISE  # Kartra answered: resending gets the same data, or repeats a write
    elif not isinstance(error, KartraResponseError):
        return Decision.RAISE  # Kartra's own error answers, validation, 429 exhausted
    return Decision.RETRY if call.safety is not Safety.UNSAFE else Decision.AMBIGUOUS
