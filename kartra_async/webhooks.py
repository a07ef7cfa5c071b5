"""Kartra's callbacks: outbound API events (JSON) and IPN notifications (form posts).

    event = parse_event(body)           # TagAssigned(lead=Lead(...), tag=WebhookTag(...))
    if isinstance(event, TagAssigned): ...
    notification = parse_ipn(form)      # SaleTransaction / RefundTransaction / ...

Neither callback is signed and Kartra publishes no event id, so `event.dedupe_key`
derives a stable one (action, lead id, details) for receivers to drop duplicates.
An action this SDK does not know becomes `UnknownEvent`, never an error; a body that
is not a Kartra callback raises KartraWebhookError with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import attrs

from ._convert import structure
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

__all__ = [*_event_names, "KartraWebhookError", "parse_event", "parse_ipn"]


def _detail_field(cls: type[Event]) -> attrs.Attribute[Any]:
    field: attrs.Attribute[Any] = next(
        f for f in attrs.fields(cls) if f.name not in ("action", "lead", "raw")
    )
    return field


def _load(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise KartraWebhookError("the event body is not valid JSON") from None
    if not isinstance(data, dict):
        raise KartraWebhookError(f"the event body is a JSON {type(data).__name__}, not an object")
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
    object.__setattr__(event, "raw", data)
    return event


def parse_ipn(form: Mapping[str, Any] | bytes | str) -> Transaction:
    """Parse an IPN notification (flat form fields; "N/A" for empty ones) into the
    transaction class of its transaction_type (SaleTransaction, RefundTransaction, ...)."""
    if isinstance(form, (bytes, str)):
        text = form.decode("utf-8", "replace") if isinstance(form, bytes) else form
        data: Mapping[str, Any] = dict(parse_qsl(text, keep_blank_values=True))
    else:
        data = form
    if not data.get("transaction_id") or not data.get("transaction_type"):
        raise KartraWebhookError("the IPN has no transaction_id or transaction_type")
    try:
        result: Transaction = structure(dict(data), TransactionDetails, what="the IPN")
    except KartraResponseError as exc:
        raise KartraWebhookError(exc.reason) from None
    return result
