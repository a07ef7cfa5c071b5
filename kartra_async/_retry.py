"""When a failed call may be sent again, and how long to wait first.

Kartra has no idempotency keys, so the rule is what a repeat could do:

==========================================  =========================================
what happened                               sent again?
==========================================  =========================================
HTTP 429 Too many requests                  always, after the App-wide pause (client)
the connection never opened (connect        always: Kartra never saw the call
error, connect timeout, pool timeout)
5xx, read/write timeout, connection         only if every cmd of the call is read-only
dropped after sending, unreadable body      or idempotent (commands.Safety); otherwise
                                            AmbiguousResultError
Kartra answered status "Error"              never
==========================================  =========================================

Backoff before retry number n (1, 2, ...)::

    b = min(backoff_cap, backoff_base * 2 ** (n - 1))
    delay = b * (1 - jitter + jitter * random())     # random() in [0, 1)

so jitter=0 waits exactly b, jitter=1 anywhere in [0, b).
"""

from __future__ import annotations

import random as _random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import attrs

from ._commands import Safety
from .errors import AmbiguousResultError, KartraConnectionError, KartraError, KartraResponseError

if TYPE_CHECKING:
    from ._commands import Call

__all__ = ["Decision", "RetryEvent", "RetryPolicy", "ambiguous_error", "decide"]


@attrs.frozen
class RetryEvent:
    """Passed to `RetryPolicy.on_retry` before each new attempt."""

    attempt: int  #: the attempt about to be made (2 for the first retry)
    delay: float  #: seconds it will wait first
    error: KartraError  #: what went wrong with the previous attempt
    cmds: tuple[str, ...]


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a failed call is sent again (never when a repeat
    could apply a write twice: see the module docs). Frozen: derive with `attrs.evolve`.
    `random` and `sleep` are injectable for tests."""

    max_attempts: int = 3  #: attempts in all, the first included (1: never retry)
    backoff_base: float = 0.5  #: seconds before the first retry (before jitter)
    backoff_cap: float = 8.0  #: the longest wait between attempts
    jitter: float = 0.5  #: 0: exact; 1: anywhere in [0, b)
    on_retry: Callable[[RetryEvent], None] | None = attrs.field(default=None, eq=False)
    #: opt in: an ambiguous chain that starts with create_lead is checked with a search
    #: and finished with its remaining idempotent actions (see AsyncKartra.send)
    reconcile_create: bool = False
    random: Callable[[], float] = attrs.field(default=_random.random, eq=False, repr=False)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=anyio.sleep, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_cap < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff_base and backoff_cap >= 0, jitter between 0 and 1")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        base = min(self.backoff_cap, self.backoff_base * 2 ** (retry - 1))
        return float(base * (1 - self.jitter + self.jitter * self.random()))


class Decision:
    RETRY = "retry"  #: safe to send again
    AMBIGUOUS = "ambiguous"  #: may have been applied, and a repeat could do harm
    RAISE = "raise"  #: not a transport failure: raise as it is


def decide(error: KartraError, call: Call) -> str:
    """Whether `call`, which failed with `error`, may be sent again."""
    if isinstance(error, KartraConnectionError):
        if not error.request_sent:
            return Decision.RETRY
    elif not isinstance(error, KartraResponseError):
        return Decision.RAISE  # Kartra's own error answers, validation, 429 exhausted
    return Decision.RETRY if call.safety is not Safety.UNSAFE else Decision.AMBIGUOUS


def ambiguous_error(call: Call, error: KartraError) -> AmbiguousResultError:
    """Say what may or may not have happened, and how to find out."""
    unsafe = [c for c in call.commands if c.safety is Safety.UNSAFE]
    what = "; ".join(f"{c.name}: {c.why}" for c in unsafe)
    checks = sorted({c.check for c in unsafe if c.check})
    lead = call.payload.get("lead")
    who = ""
    if isinstance(lead, dict) and (lead.get("email") or lead.get("id")):
        who = f" for lead {lead.get('email') or lead.get('id')}"
    message = (
        f"{', '.join(call.cmds)}{who} may or may not have been applied: {error}. "
        f"It was not sent again, since a repeat could do harm ({what}). "
        f"To find out: {'; '.join(checks) or 'look the change up in Kartra'}."
    )
    return AmbiguousResultError(message, call=call, cause=error)
