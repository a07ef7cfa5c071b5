"""What every limiter shares: stats, the grant handle, the adaptive margin, storm logging.

The margin follows TCP's round-trip estimator (RFC 6298): SRTT and RTTVAR are
exponentially weighted averages of the round trip and of its deviation (gains 1/8 and
1/4). Kartra counts a call when it *arrives*; if the one-way delay of requests varies by
J seconds, two requests sent a window apart can arrive less than a window apart, so each
window needs J seconds of margin. RTTVAR measures the variation the client sees (for a
delay spread evenly over J seconds, 4 x RTTVAR = J, as in RFC 6298's RTO = SRTT +
4 RTTVAR). The margin rises at once to the estimate, and doubles on any HTTP 429; it
narrows slowly (1/128 per clean answer) while answers are clean.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Literal, Protocol, TypeAlias

import anyio
import attrs

__all__ = [
    "DEFAULT_TENANT",
    "Grant",
    "LimiterStats",
    "Margin",
    "Priority",
    "StormLog",
    "TenantStats",
    "Tenants",
    "Weights",
    "sleep_until",
]

logger = logging.getLogger("kartra_async.limits")

Priority = Literal["interactive", "bulk"]

#: RFC 6298: SRTT gain, RTTVAR gain, and RTTVAR's multiplier in the estimate
_ALPHA = 1 / 8
_BETA = 1 / 4
_K = 4.0
#: per clean answer, a margin above the estimate shrinks by this share
_NARROW = 1 / 128
#: sleeps longer than this wake ~1-2 ms late (timer slack): wake _EARLY before, then
#: sleep the short rest, which is precise
_LONG_SLEEP = 0.02
_EARLY = 0.004

#: the tenant of a call that names none
DEFAULT_TENANT = "default"

#: a tenant's share of the budget relative to others (default 1): a mapping of tenant to
#: weight, or a callable
Weights: TypeAlias = Mapping[str, float] | Callable[[str], float]


async def sleep_until(deadline: float) -> None:
    """Sleep until `deadline` (anyio.current_time()), precisely: a long sleep ends a
    little early and the short rest follows."""
    if deadline - anyio.current_time() > _LONG_SLEEP:
        await anyio.sleep_until(deadline - _EARLY)
    await anyio.sleep_until(deadline)


@attrs.define
class LimiterStats:
    """Counters and estimates of one limiter (read `limiter.stats`)."""

    grants: int = 0  #: acquire()/take() calls that got a slot
    waits: int = 0  #: of those, how many had to queue
    wait_total: float = 0.0  #: seconds spent queued, summed
    wait_max: float = 0.0  #: the longest single wait, seconds
    rate_limited: int = 0  #: HTTP 429 answers reported through pause()/backoff()
    cancelled: int = 0  #: waiters cancelled in the queue or right after their grant
    margin: float = 0.0  #: seconds added to every window now (fixed, or learned)
    jitter: float = 0.0  #: estimated spread of arrival delays (4 x RTTVAR), seconds
    rtt: float | None = None  #: smoothed round trip (SRTT), seconds; None before any answer
    samples: int = 0  #: round trips measured
    #: per tenant (account) of the App, those seen within `idle_ttl` or queued now
    tenants: dict[str, TenantStats] = attrs.field(factory=dict)

    @property
    def wait_mean(self) -> float:
        return self.wait_total / self.waits if self.waits else 0.0


@attrs.define
class TenantStats:
    """Counters of one tenant (an account of the App) in `limiter.stats.tenants`."""

    grants: int = 0  #: slots granted to this tenant
    waits: int = 0  #: of those, how many had to queue
    wait_total: float = 0.0  #: seconds queued, summed
    wait_max: float = 0.0  #: the longest single wait, seconds
    queued: int = 0  #: waiters of this tenant queued now
    last_seen: float = 0.0  #: the limiter's clock at its last grant or arrival

    @property
    def wait_mean(self) -> float:
        return self.wait_total / self.waits if self.waits else 0.0


class Tenants:
    """The weight and the stats of each tenant; a tenant idle (nothing queued, no grant)
    for `idle_ttl` seconds is forgotten, so memory follows the active tenants."""

    def __init__(self, stats: LimiterStats, weights: Weights | None, idle_ttl: float) -> None:
        if idle_ttl <= 0:
            raise ValueError("idle_ttl must be > 0 seconds")
        if weights is not None and not callable(weights):
            for tenant, weight in weights.items():
                _check_weight(tenant, weight)
        self.stats = stats.tenants
        self.weights = weights
        self.idle_ttl = idle_ttl
        self.sweep_at = -math.inf

    def weight(self, tenant: str) -> float:
        weights = self.weights
        if weights is None:
            return 1.0
        if callable(weights):
            return _check_weight(tenant, weights(tenant))
        return float(weights.get(tenant, 1.0))

    def get(self, tenant: str, now: float) -> TenantStats:
        entry = self.stats.get(tenant)
        if entry is None:
            entry = self.stats[tenant] = TenantStats()
        entry.last_seen = now
        if now >= self.sweep_at:
            self.expire(now)
        return entry

    def waited(self, tenant: str, seconds: float) -> None:
        entry = self.stats.get(tenant)
        if entry is not None:
            entry.waits += 1
            entry.wait_total += seconds
            entry.wait_max = max(entry.wait_max, seconds)

    def expire(self, now: float) -> None:
        """Forget the tenants idle for `idle_ttl` (run at most every idle_ttl / 4)."""
        horizon = now - self.idle_ttl
        idle = [t for t, e in self.stats.items() if not e.queued and e.last_seen <= horizon]
        for tenant in idle:
            del self.stats[tenant]
        self.sweep_at = now + self.idle_ttl / 4


def _check_weight(tenant: str, weight: object) -> float:
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise ValueError(f"the weight of tenant {tenant!r} must be a finite number > 0")
    return float(weight)


class Grant(Protocol):
    """One request's slot, from `take()`. Call `sent()` the moment the request leaves
    (the limiter counts it from then, as Kartra counts it on arrival) and `finish()`
    when the exchange is over."""

    at: float  #: when the slot was granted (the limiter's clock)

    def sent(self) -> None:
        """The request is leaving now (only the first call counts)."""

    def finish(self, status: int | None = None, *, sent: bool = True) -> None:
        """The exchange is over: `status` is the HTTP status, None if it failed. A request
        never marked sent counts from now when `sent` (it may have reached Kartra), and
        gives its slot back when not (it never left)."""


class Margin:
    """The margin added to every window: fixed, or learned from the round trips.

    Adaptive: `floor` <= margin; round trips alone never push it past `ceiling` (they
    include Kartra's own processing time, so they over-state the jitter); 429s can widen
    it up to `period`.
    """

    def __init__(
        self,
        margin: float | Literal["auto"],
        *,
        floor: float,
        ceiling: float,
        period: float,
        initial: float = 0.0,
    ) -> None:
        self.adaptive = margin == "auto"
        if self.adaptive:
            if not 0 <= floor <= ceiling:
                raise ValueError("0 <= min_margin <= max_margin is required")
            self.value = min(ceiling, max(floor, initial))
        else:
            if not isinstance(margin, (int, float)) or margin < 0:
                raise ValueError("margin is 'auto' or seconds >= 0")
            self.value = float(margin)
        self.floor, self.ceiling, self.period = floor, ceiling, period
        self.srtt: float | None = None
        self.rttvar = 0.0
        #: a decaying peak of the delay between a slot and its request leaving (Redis)
        self.lag_peak = 0.0
        self.samples = 0

    @property
    def jitter(self) -> float:
        return _K * self.rttvar + self.lag_peak

    def sample(self, rtt: float) -> None:
        """One measured round trip (seconds), from a clean or a 429 answer: the margin
        rises at once to the estimate."""
        self.samples += 1
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar += _BETA * (abs(self.srtt - rtt) - self.rttvar)
            self.srtt += _ALPHA * (rtt - self.srtt)
        if self.adaptive:
            self.value = max(self.value, self._estimate())

    def clean(self) -> None:
        """A clean answer: a margin above the estimate narrows by 1/128 of the gap."""
        if self.adaptive and self.value > self.floor:
            estimate = self._estimate()
            self.value = max(estimate, self.value - (self.value - estimate) * _NARROW)

    def lag(self, seconds: float) -> None:
        """How long after its slot a request left (a reservation-based limiter): the
        margin covers the recent peak, which decays by 1/64 per request."""
        self.lag_peak = max(seconds, self.lag_peak * (1 - 1 / 64))
        if self.adaptive:
            self.value = max(self.value, self._estimate())

    def _estimate(self) -> float:
        return min(self.ceiling, max(self.floor, self.jitter))

    def widen(self) -> None:
        """An HTTP 429: the margin was too thin. Double it at once (at least 10 ms more)."""
        if self.adaptive:
            self.value = min(self.period, max(2 * self.value, self.value + 0.01))

    def export(self, stats: LimiterStats) -> None:
        stats.margin, stats.jitter, stats.rtt = self.value, self.jitter, self.srtt
        stats.samples = self.samples


class StormLog:
    """One WARNING for the first 429 of a storm and one summary when it is over (the first
    clean answer of a request sent after the last 429), not a line per answer."""

    def __init__(self, name: str) -> None:
        self.name = name or "this App"
        self.count = 0
        self.started = 0.0
        self.last = -math.inf

    def rate_limited(self, now: float, pause: float, margin: float) -> None:
        self.last = now
        if self.count:
            self.count += 1
            return
        self.count, self.started = 1, now
        logger.warning(
            "Kartra answered 429 (Too many requests): every call of %s pauses %.2fs, "
            "margin now %.3fs; further 429s are summed up when the storm is over",
            self.name,
            pause,
            margin,
        )

    def clean(self, sent_at: float, now: float, margin: float) -> None:
        """A clean answer to a request sent at `sent_at`."""
        if not self.count or sent_at <= self.last:
            return
        count, self.count = self.count, 0
        level = logging.WARNING if count > 1 else logging.INFO
        logger.log(
            level,
            "429 storm of %s over: %d answer%s 429 in %.1fs; margin now %.3fs",
            self.name,
            count,
            "s" if count > 1 else "",
            now - self.started,
            margin,
        )
