"""Kartra's callbacks: outbound API events (JSON) and IPN notifications (form posts).

    event = parse_event(body)           # TagAssigned(lead=Lead(...), tag=WebhookTag(...))
    if isinstance(event, TagAssigned): ...
    notification = parse_ipn(form)      # SaleTransaction / RefundTransaction / ...
    dedupe_key(event)                   # "event:<hash of the body>" / "ipn:<id>:<type>"

An action this SDK does not know becomes `UnknownEvent`, never an error; a body that
is not a Kartra callback (bad JSON, bad encoding, nested deeper than `MAX_DEPTH`,
numbers out of range, missing fields) raises KartraWebhookError with the reason.

Neither callback is signed and Kartra publishes no event id, so `dedupe_key` is all a
receiver has to spot a redelivery: for an event, a hash of the whole body; for an IPN,
its transaction_id and transaction_type. Also here, for any web framework:

- seen-stores for deduplication: `MemorySeenStore` (default) and `RedisSeenStore`
  (shared by workers; the `redis` extra), behind the `SeenStore` protocol;
- `HandlerRetry` (background mode's local retries) and `DeadLetter` (what the
  `on_failure` hook receives);
- `redact_in_logs(secret)` and the `RedactSecrets` logging filter, which keep a
  callback secret out of every log line.

`kartra_async.fastapi.KartraWebhookRouter` puts them together.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
import attrs

from ._convert import structure
from ._redact import REDACTED, RedactSecrets, redact_in_logs
from ._seen import Claim, MemorySeenStore, RedisSeenStore, SeenStore
from .errors import KartraResponseError, KartraWebhookError
from .models.lead import Lead
from .models.payments import Transaction, TransactionDetails
from .models.webhooks import *  # noqa: F403 (the event classes are this module's API too)
from .models.webhooks import (
    EVENT_TYPES,
    Event,
    UnknownEvent,
)
from .models.webhooks import __all__ as _event_names

__all__ = [
    *_event_names,
    "MAX_DEPTH",
    "REDACTED",
    "Claim",
    "HandlerRetry",
    "KartraWebhookError",
    "MemorySeenStore",
    "RedactSecrets",
    "RedisSeenStore",
    "SeenStore",
    "dedupe_key",
    "parse_event",
    "parse_ipn",
    "redact_in_logs",
]

#: the deepest nesting a callback body may have (Kartra's own go 7 levels deep)
MAX_DEPTH = 32
#: the most fields an IPN form may have (Kartra posts about 40)
MAX_IPN_FIELDS = 1000

_INPUT_ERRORS = (RecursionError, ValueError, ArithmeticError, UnicodeError)


def _detail_field(cls: type[Event]) -> attrs.Attribute[Any]:
    field: attrs.Attribute[Any] = next(
        f for f in attrs.fields(cls) if f.name not in ("action", "lead", "raw")
    )
    return field


def _too_deep(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _load(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        data: Any = body
    else:
        try:
            data = json.loads(body)
        except RecursionError:
            raise KartraWebhookError(f"the event body is nested deeper than {MAX_DEPTH}") from None
        except json.JSONDecodeError:
            raise KartraWebhookError("the event body is not valid JSON") from None
        except UnicodeError:
            raise KartraWebhookError("the event body is not UTF-8") from None
        except ValueError:  # int("9" * 5000): over sys.get_int_max_str_digits()
            raise KartraWebhookError("the event body holds a number too long to read") from None
    if not isinstance(data, dict):
        raise KartraWebhookError(f"the event body is a JSON {type(data).__name__}, not an object")
    if _too_deep(data, MAX_DEPTH):
        raise KartraWebhookError(f"the event body is nested deeper than {MAX_DEPTH}")
    return data


def parse_event(body: bytes | str | Mapping[str, Any]) -> Event:
    """Parse an outbound API event (the raw POST body, or its decoded JSON)."""
    data = _load(body)
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise KartraWebhookError("the event has no 'action'")
    lead_data = data.get("lead")
    if not isinstance(lead_data, Mapping):
        raise KartraWebhookError("the event has no 'lead' object")
    details = data.get("action_details") or {}
    if not isinstance(details, (Mapping, int, str)):
        raise KartraWebhookError("'action_details' is not an object")
    try:
        lead = structure(lead_data, Lead, what=f"the {action} event's lead")
        cls = EVENT_TYPES.get(action)
        if cls is None:
            event: Event = UnknownEvent(
                action=action,
                lead=lead,
                details=dict(details) if isinstance(details, Mapping) else {"value": details},
            )
        else:
            field = _detail_field(cls)
            raw_detail = details.get(field.name) if isinstance(details, Mapping) else details
            value = (
                structure(raw_detail, field.type, what=f"the {action} event's {field.name}")
                if raw_detail is not None
                else None
            )
            event = cls(action=action, lead=lead, **{field.name: value})  # type: ignore[arg-type]
    except KartraResponseError as exc:
        raise KartraWebhookError(exc.reason) from None
    except _INPUT_ERRORS as exc:
        raise KartraWebhookError(f"the {action} event does not fit: {type(exc).__name__}") from None
    object.__setattr__(event, "raw", data)
    return event


def parse_ipn(form: Mapping[str, Any] | bytes | str) -> Transaction:
    """Parse an IPN notification (flat form fields; "N/A" for empty ones) into the
    transaction class of its transaction_type (SaleTransaction, RefundTransaction, ...).

    Bytes that are not UTF-8 become U+FFFD rather than an error: a mangled name is
    better than a lost sale."""
    if isinstance(form, (bytes, str)):
        text = form.decode("utf-8", "replace") if isinstance(form, bytes) else form
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_IPN_FIELDS)
        except ValueError:
            raise KartraWebhookError(f"the IPN has more than {MAX_IPN_FIELDS} fields") from None
        data: Mapping[str, Any] = dict(pairs)
    else:
        data = form
    if not data.get("transaction_id") or not data.get("transaction_type"):
        raise KartraWebhookError("the IPN has no transaction_id or transaction_type")
    try:
        result: Transaction = structure(dict(data), TransactionDetails, what="the IPN")
    except KartraResponseError as exc:
        raise KartraWebhookError(exc.reason) from None
    except _INPUT_ERRORS as exc:
        raise KartraWebhookError(f"the IPN does not fit: {type(exc).__name__}") from None
    return result


def dedupe_key(received: Event | Transaction) -> str:
    """The identity of a callback, for deduplication: `event:<hash>` of an event's whole
    body (see `Event.dedupe_key`), or `ipn:<transaction_id>:<transaction_type>`."""
    if isinstance(received, Event):
        return "event:" + received.dedupe_key
    return f"ipn:{received.transaction_id}:{received.transaction_type.value}"


Sleep = Callable[[float], Awaitable[None]]


@attrs.frozen
class HandlerRetry:
    """How background mode retries a failing handler before handing the callback to
    `on_failure`: `attempts` runs in all, waiting `backoff` seconds before the second,
    doubling up to `max_backoff`. `sleep` is injectable for tests."""

    attempts: int = 5  #: runs in all, the first included
    backoff: float = 1.0  #: seconds before the first retry
    max_backoff: float = 60.0  #: the longest wait between runs
    sleep: Sleep = attrs.field(default=anyio.sleep, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        return float(min(self.max_backoff, self.backoff * 2 ** (retry - 1)))

    @property
    def total_delay(self) -> float:
        """Seconds spent waiting when every attempt fails."""
        return sum(self.delay(n) for n in range(1, self.attempts))
