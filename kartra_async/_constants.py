"""Every transport default in one place: URLs, timeouts, pool sizes, limits."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import httpx

from ._version import __version__

DEFAULT_BASE_URL = "https://app.kartra.com/api"

#: Kartra dates (both directions) are US Eastern time.
KARTRA_TZ = ZoneInfo("America/New_York")

#: connect 5 s, read 30 s, write 30 s, wait for a pooled connection 10 s.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=10.0)

#: Kartra allows 20 calls/s per App; at ~1 s latency about 20-40 requests are in flight.
DEFAULT_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=25, keepalive_expiry=15)

#: Kartra's documented limit: calls per period (seconds) per App id.
RATE_LIMIT_CALLS = 20
RATE_LIMIT_PERIOD = 1.0

#: On HTTP 429 the whole App pauses this long (or Retry-After, capped), then the refused
#: request is sent again (Kartra did not apply it), at most this many times.
RATE_LIMIT_PAUSE = 1.0
RATE_LIMIT_PAUSE_MAX = 30.0
RATE_LIMIT_RESENDS = 5

#: How much of a response body an error message quotes.
BODY_EXCERPT_CHARS = 200

USER_AGENT = f"kartra-async/{__version__}"
