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
#: request is sent again (Kartra did not apply it), at most this many times: the defaults
#: of RetryPolicy's rate_limit_pause, rate_limit_pause_max and rate_limit_resends.
RATE_LIMIT_PAUSE = 1.0
RATE_LIMIT_PAUSE_MAX = 30.0
RATE_LIMIT_RESENDS = 5

#: How much of a response body an error message quotes.
BODY_EXCERPT_CHARS = 200

#: The longest answer read, in bytes: on the wire (compressed) and decoded alike, enforced
#: while the body streams in. Kartra's documented answers are a few KB (get_lead with
#: every list, tag, transaction and survey of a busy lead stays well under 1 MB); an
#: answer past this raises KartraResponseError. AsyncKartra(max_answer_bytes=...).
MAX_ANSWER_BYTES = 8 * 1024 * 1024

#: Seconds one HTTP exchange may take in all: waiting for a pooled connection, connecting,
#: sending, the headers and the whole body. httpx's timeouts (DEFAULT_TIMEOUT) are per
#: operation: a body dripped one byte at a time never trips them, the deadline does
#: (KartraTimeoutError). Each attempt of a retried call gets its own. AsyncKartra(deadline=...).
DEFAULT_DEADLINE = 60.0

#: Kartra's answers nest about 6 levels deep (get_lead's calendars -> hosts); an answer
#: nested deeper, or with an integer of more digits, raises KartraResponseError.
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 32

#: Form variables one request may carry (the three credentials included). PHP drops the
#: variables past its `max_input_vars` (1,000 by default) WITHOUT an error: a chain whose
#: body would carry more raises KartraValidationError naming the count instead of losing
#: its last actions. AsyncKartra(max_form_vars=...) if Kartra is known to allow more.
MAX_FORM_VARS = 1000

#: A 503's Retry-After is honoured before a retry (of a call safe to repeat), up to this
#: (the default of RetryPolicy.server_retry_after_max).
SERVER_RETRY_AFTER_MAX = 30.0

#: Size caps on the strings a call sends (Kartra documents none; these are what its
#: fields hold). Names (tags, lists, sequences, calendars, classes, options, custom field
#: identifiers): characters. Free text (lead fields, custom field values): UTF-8 bytes.
#: Email addresses: RFC 5321's 254 characters.
MAX_NAME_CHARS = 255
MAX_TEXT_BYTES = 65_535
MAX_EMAIL_CHARS = 254

#: Reconciling an ambiguous create_lead by the lead's date_joined (US Eastern, taken as
#: precise to the minute only): Kartra's clock may differ from ours by this much, so a
#: lead that joined at or after (first send - skew), floored to the minute, counts as
#: created by the call. One that joined more than RECONCILE_CLEARLY_BEFORE earlier
#: still clearly predates the call (LeadExistsError); in between, nobody can tell
#: (AmbiguousResultError), and the rest of the chain is not applied.
RECONCILE_CLOCK_SKEW = 120.0
RECONCILE_CLEARLY_BEFORE = 3600.0

USER_AGENT = f"kartra-async/{__version__}"
