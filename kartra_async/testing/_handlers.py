"""What each cmd does to the fake's state, with Kartra's documented checks, codes and
messages: one handler per cmd in `HANDLERS`, written from the docs (the fake shares
no checking code with the SDK, so a bug on one side cannot hide one on the other)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard

import attrs

from ..errors import ERROR_CODES
from ._php import values
from ._state import (
    DATE,
    CalendarBooking,
    CustomFieldDef,
    FakeAccount,
    FakeLead,
    Points,
    Subscription,
    Transaction,
)

__all__ = [
    "HANDLERS",
    "LEAD_CMDS",
    "LEAD_SCOPED",
    "TOP_LEVEL",
    "Context",
    "KartraFault",
    "MalformedRequest",
    "lead_details",
]


class KartraFault(Exception):
    """A documented Kartra error answer."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.message = message or ERROR_CODES[code].message
        super().__init__(f"{code} {self.message}")


@attrs.define
class Context:
    account: FakeAccount
    now: datetime  #: US Eastern, aware
    test_mode: bool
    refund_period_days: int


LEAD_FIELDS = (
    "first_name", "middle_name", "last_name", "last_name2", "phone", "phone_country_code",
    "ip", "address", "zip", "city", "state", "country", "company", "lead_picture", "website",
    "facebook", "twitter", "linkedin", "lead_preferred_time_zone",
)  # fmt: skip

CUSTOM_FIELD_TYPES = ("input_field", "text_area", "drop_down", "radio_button", "checkbox")


def ok(message: str | None = None, code: int | None = None, **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "Success"}
    if message is not None:
        out["message"] = message
    if code is not None:
        out["type"] = str(code)
    out.update(data)
    return out


def _text(action: dict[str, Any], key: str) -> str:
    value = action.get(key)
    return value.strip() if isinstance(value, str) else ""


#: digits in the longest integer PHP holds (PHP_INT_MAX, 64 bits)
MAX_DIGITS = 19


class MalformedRequest(Exception):
    """A request the fake will not read (a number beyond 64 bits): answered HTTP 400."""


def _is_number(value: Any) -> TypeGuard[str]:
    if not isinstance(value, str) or re.fullmatch(r"-?\d+", value.strip()) is None:
        return False
    digits = len(value.strip().lstrip("-"))
    if digits > MAX_DIGITS:
        raise MalformedRequest(f"a number of {digits} digits (at most {MAX_DIGITS})")
    return True


def _money(value: Any) -> Decimal | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d{1,2})?", value.strip()):
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        return None


# ---- the lead and its fields


def _apply_custom_fields(ctx: Context, lead: FakeLead, raw: Any) -> None:
    if raw is None:
        return
    entries = values(raw)
    if entries is None:
        raise KartraFault(271)
    for entry in entries:
        if not isinstance(entry, dict) or "field_identifier" not in entry:
            raise KartraFault(271)
        definition = ctx.account.custom_fields.get(str(entry["field_identifier"]))
        if definition is None:
            continue  # the docs: an unknown identifier is ignored
        value = entry.get("field_value", "")
        if value == "" or value is None:
            lead.custom.pop(definition.identifier, None)
        elif definition.type in ("input_field", "text_area"):
            if not isinstance(value, str):
                raise KartraFault(271)
            lead.custom[definition.identifier] = value
        else:
            given = values(value) if isinstance(value, dict) else [value]
            chosen: list[int] = []
            for item in given or []:
                option = _option(definition, item)
                if option is not None and option not in chosen:
                    chosen.append(option)
            if not chosen:
                continue  # names no option: ignored, like an unknown identifier
            lead.custom[definition.identifier] = (
                chosen if definition.type == "checkbox" else chosen[:1]
            )


def _option(definition: CustomFieldDef, item: Any) -> int | None:
    """The option an item names, by id or by label (exact, then ignoring case), or None.

    Inferred, not documented: Kartra's docs only show option ids. The fake takes a
    label for its option and ignores anything naming no option (an unknown id, an
    unknown label), as the docs say Kartra does with an unknown field identifier."""
    if not isinstance(item, str):
        return None
    if _is_number(item):
        return int(item) if int(item) in definition.options else None
    for folded in (False, True):
        for option_id, label in definition.options.items():
            if label == item or (folded and label.casefold() == item.casefold()):
                return option_id
    return None


def _apply_fields(lead: FakeLead, data: dict[str, Any]) -> None:
    for name in LEAD_FIELDS:
        if isinstance(data.get(name), str):
            lead.fields[name] = data[name]


def _test_mode_email(ctx: Context, email: str) -> str:
    if ctx.test_mode and "@" in email:
        return email.rsplit("@", 1)[0] + "@kartra.com"
    return email


def create_lead(ctx: Context, data: dict[str, Any]) -> FakeLead:
    email = _text(data, "email")
    if not email:
        raise KartraFault(206)
    email = _test_mode_email(ctx, email)
    if email.lower() in ctx.account.emails:
        raise KartraFault(244)
    lead = FakeLead(id=ctx.account.new_id(), email=email, date_joined=ctx.now)
    _apply_fields(lead, data)
    _apply_custom_fields(ctx, lead, data.get("custom_fields"))
    ctx.account.leads[lead.id] = lead
    ctx.account.emails[email.lower()] = lead.id
    return lead


def find_lead(ctx: Context, data: dict[str, Any], *, missing: int = 243) -> FakeLead:
    if not data.get("id") and not _text(data, "email"):
        raise KartraFault(206)
    lead = ctx.account.find_lead(data.get("id"), data.get("email"))
    if lead is None:
        raise KartraFault(missing)
    if lead.deleted:
        raise KartraFault(245)
    return lead


def edit_lead(ctx: Context, data: dict[str, Any]) -> FakeLead:
    lead = find_lead(ctx, data)
    new_email = _text(data, "new_email")
    if new_email:
        new_email = _test_mode_email(ctx, new_email)
        other = ctx.account.emails.get(new_email.lower())
        if other is not None and other != lead.id:
            raise KartraFault(244)
        del ctx.account.emails[lead.email.lower()]
        lead.email = new_email
        ctx.account.emails[new_email.lower()] = lead.id
    _apply_fields(lead, data)
    _apply_custom_fields(ctx, lead, data.get("custom_fields"))
    return lead


LeadHandler = Callable[[Context, dict[str, Any]], tuple[FakeLead, dict[str, Any], str]]
"""A cmd that names the lead: (context, lead[...] form) -> (the lead, the action's
answer, the lead's status in the envelope: "Created" or "Found")."""


def _lead_cmd(act: Callable[[Context, dict[str, Any]], FakeLead], status: str,
              message: str | None = None) -> LeadHandler:  # fmt: skip
    def handler(ctx: Context, data: dict[str, Any]) -> tuple[FakeLead, dict[str, Any], str]:
        lead = act(ctx, data)
        return lead, ok(message, lead_details={"id": str(lead.id)}), status

    return handler


LEAD_CMDS: dict[str, LeadHandler] = {
    "create_lead": _lead_cmd(create_lead, "Created"),
    "edit_lead": _lead_cmd(edit_lead, "Found"),
    "search_lead": _lead_cmd(find_lead, "Found", "Lead found"),
}
"""The cmds that name the lead (they must be action 0)."""


def get_lead(ctx: Context, query: dict[str, Any]) -> dict[str, Any]:
    found = find_lead(ctx, {"id": query.get("id"), "email": query.get("email")}, missing=234)
    return {"status": "Success", "lead_details": lead_details(ctx, found)}


TOP_LEVEL: dict[str, Callable[[Context, dict[str, Any]], dict[str, Any]]] = {
    "get_lead": get_lead,
}
"""The calls sent as a top-level form key (`get_lead[...]`) instead of an action."""


def lead_details(ctx: Context, lead: FakeLead) -> dict[str, Any]:
    """get_lead's lead_details, shaped like the docs' sample (numbers as strings), except
    `score` and `blacklisted`: integers, as the docs' field table says."""
    account = ctx.account
    transactions = [t for t in account.transactions.values() if t.lead_id == lead.id]
    custom = []
    for definition in account.custom_fields.values():
        value = lead.custom.get(definition.identifier)
        entry: dict[str, Any] = {
            "field_id": str(definition.id),
            "field_identifier": definition.identifier,
            "field_type": definition.type,
        }
        if definition.type in ("input_field", "text_area"):
            entry["field_value"] = value or ""
        else:
            entry["field_value"] = [
                {"option_id": str(i), "option_value": definition.options[i]} for i in value or []
            ]
        custom.append(entry)
    calendars = []
    for booking in lead.calendars:
        calendar = account.calendars[booking.calendar]
        events = []
        if booking.starts is not None:
            events.append(
                {"event_date": booking.starts.strftime("%Y-%m-%d %H:%M"), "event_duration": 60}
            )
        calendars.append(
            {
                "calendar_name": calendar.name,
                "calendar_id": str(calendar.id),
                "class_name": booking.class_name,
                "class_id": str(calendar.classes[booking.class_name]),
                "subscription_id": str(booking.subscription_id),
                "calendar_subscription_status": booking.status,
                "vendor_id": "1",
                "vendor_timezone": calendar.vendor_timezone,
                "hosts": [
                    {
                        "host_first_name": "Host",
                        "host_last_name": "Fake",
                        "host_email_address": "host@example.com",
                    }
                ],
                "events": events,
                "ics_calendar_link": f"https://app.kartra.com/calendar/ics/{booking.subscription_id}",
            }
        )
    fields = lead.fields
    return {
        "id": str(lead.id),
        "first_name": fields.get("first_name", ""),
        "middle_name": fields.get("middle_name", ""),
        "last_name": fields.get("last_name", ""),
        "last_name2": fields.get("last_name2", ""),
        "company": fields.get("company", ""),
        "sales_tax_id": "",
        "email": lead.email,
        "username": "",
        "date_joined": lead.date_joined.strftime(DATE),
        "phone_country_code": fields.get("phone_country_code", ""),
        "phone": fields.get("phone", ""),
        "ip": fields.get("ip", ""),
        "address": fields.get("address", ""),
        "zip": fields.get("zip", ""),
        "city": fields.get("city", ""),
        "state": fields.get("state", ""),
        "country": fields.get("country", ""),
        "lead_picture": fields.get("lead_picture", ""),
        "score": lead.score(ctx.now),
        "source": lead.source,
        "source_id": "0",
        "ip_country": "",
        "website": fields.get("website", ""),
        "facebook": fields.get("facebook", ""),
        "twitter": fields.get("twitter", ""),
        "linkedin": fields.get("linkedin", ""),
        "lead_preferred_time_zone": fields.get("lead_preferred_time_zone", ""),
        "notes": lead.notes,
        "referring_id": "0",
        "blacklisted": 1 if lead.blacklisted else 0,
        "gdpr_lead_status": "0",
        "gdpr_lead_status_date": "0000-00-00 00:00:00",
        "gdpr_lead_communications": "0",
        "gdpr_lead_status_ip": "",
        "tags": [{"tag_name": t} for t in lead.tags],
        "lists": [{"list_name": n, "active": "1" if a else "0"} for n, a in lead.lists.items()],
        "sequences": [
            {"tree_name": n, "step": step, "status": status}
            for n, (step, status) in lead.sequences.items()
        ],
        "transactions": [
            {
                "transaction_id": str(t.id),
                "product_name": t.product.name,
                "product_price_point": str(t.price_point),
                "transaction_type": t.type.capitalize(),
                "transaction_amount": f"{t.amount:.2f}",
                "transaction_date": t.date.strftime(DATE),
            }
            for t in transactions
        ],
        "memberships": [
            {"name": n, "level_name": level, "active": "1" if a else "0"}
            for n, level, a in lead.memberships
        ],
        "custom_fields": custom,
        "calendars": calendars,
        "surveys": [],
    }


# ---- lead actions

Handler = Callable[[Context, dict[str, Any], "FakeLead | None"], dict[str, Any]]


def _lead(lead: FakeLead | None) -> FakeLead:
    if lead is None:
        raise KartraFault(206)
    return lead


def subscribe_lead_to_list(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    name = _text(action, "list_name")
    if not name:
        raise KartraFault(207)
    if name not in ctx.account.lists:
        raise KartraFault(231)
    _lead(lead).lists[name] = True
    return ok("Lead subscribed to list", 101)


def unsubscribe_lead_from_list(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    name = _text(action, "list_name")
    if not name:
        raise KartraFault(208)
    if name not in ctx.account.lists:
        raise KartraFault(209)
    lead = _lead(lead)
    if name in lead.lists:
        lead.lists[name] = False
    return ok("Lead unsubscribed from list", 101)


def assign_tag(ctx: Context, action: dict[str, Any], lead: FakeLead | None) -> dict[str, Any]:
    name = _text(action, "tag_name")
    if not name:
        raise KartraFault(211)
    if name not in ctx.account.tags:
        raise KartraFault(212)
    lead = _lead(lead)
    if name not in lead.tags:
        lead.tags.append(name)
    return ok("Tag added to lead", 103)


def unassign_tag(ctx: Context, action: dict[str, Any], lead: FakeLead | None) -> dict[str, Any]:
    name = _text(action, "tag_name")
    if not name:
        raise KartraFault(213)
    if name not in ctx.account.tags:
        raise KartraFault(214)
    lead = _lead(lead)
    if name in lead.tags:
        lead.tags.remove(name)
    return ok("Tag removed from lead", 104)


def _points(action: dict[str, Any], empty: int, not_number: int) -> int:
    raw = action.get("points")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise KartraFault(empty)
    if not _is_number(raw):
        raise KartraFault(not_number)
    return int(raw)


def give_points_to_lead(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    points = _points(action, 215, 227)
    days = action.get("expiration")
    expires = None
    if _is_number(days) and int(days) > 0:
        try:
            expires = ctx.now + timedelta(days=int(days))
        except OverflowError:
            expires = None  # beyond year 9999: never
    _lead(lead).points.append(Points(points, expires))
    return ok("Points added to lead", 105)


def remove_points_from_lead(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    points = _points(action, 217, 228)
    _lead(lead).points.append(Points(-points, None))
    return ok("Points removed from lead", 106)


def subscribe_lead_to_sequence_at_step(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    name, step = _text(action, "sequence_name"), _text(action, "step")
    if not name:
        raise KartraFault(226)
    if not step:
        raise KartraFault(225)
    if name not in ctx.account.sequences:
        raise KartraFault(219)
    if not step.isalnum():
        raise KartraFault(229)
    if step not in ctx.account.sequences[name]:
        raise KartraFault(230)
    _lead(lead).sequences[name] = (step, "active")
    return ok("Lead added to sequence", 107)


def unsubscribe_lead_from_sequence(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    name = _text(action, "sequence_name")
    if not name:
        raise KartraFault(226)
    if name not in ctx.account.sequences:
        raise KartraFault(220)
    lead = _lead(lead)
    if name in lead.sequences:
        lead.sequences[name] = (lead.sequences[name][0], "unsubscribed")
    return ok("Lead removed from sequence", 108)


def _calendar_class(ctx: Context, action: dict[str, Any]) -> tuple[str, str]:
    calendar, class_name = _text(action, "calendar_name"), _text(action, "class_name")
    if not calendar:
        raise KartraFault(255)
    if not class_name:
        raise KartraFault(256)
    if calendar not in ctx.account.calendars:
        raise KartraFault(257)
    if class_name not in ctx.account.calendars[calendar].classes:
        raise KartraFault(258)
    return calendar, class_name


def calendar_subscribe(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    calendar, class_name = _calendar_class(ctx, action)
    day, hour = _text(action, "starting_date"), _text(action, "starting_hour")
    starts = None
    if day or hour:
        try:
            when = datetime.strptime(day or ctx.now.strftime("%d %b %Y"), "%d %b %Y")
            if hour:
                if not re.fullmatch(r"\d{2}:\d{2}", hour):
                    raise ValueError(hour)
                parsed = datetime.strptime(hour, "%H:%M")
                when = when.replace(hour=parsed.hour, minute=parsed.minute)
        except ValueError:
            raise KartraFault(260) from None
        starts = when.replace(tzinfo=ctx.now.tzinfo)
        if starts < ctx.now:
            raise KartraFault(261)
    booking = CalendarBooking(ctx.account.new_id(), calendar, class_name, "Active", starts)
    _lead(lead).calendars.append(booking)
    return ok("Lead subscribed to class", 112)


def calendar_cancel(ctx: Context, action: dict[str, Any], lead: FakeLead | None) -> dict[str, Any]:
    calendar, class_name = _calendar_class(ctx, action)
    bookings = [
        b
        for b in _lead(lead).calendars
        if (b.calendar, b.class_name) == (calendar, class_name)
        and b.status in ("Active", "Pending")
    ]
    if not bookings:
        raise KartraFault(259)
    for booking in bookings:
        booking.status = "Cancelled"
    return ok("Lead unsubscribed from class", 113)


def retrieve_transactions_from_lead(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    lead = _lead(lead)
    rows = [
        {
            "transaction_id": str(t.id),
            "lead_id": str(t.lead_id),
            "lead_email": t.lead_email,
            "transaction_type": t.type,
        }
        for t in ctx.account.transactions.values()
        if t.lead_id == lead.id
    ]
    return {"transaction_list": rows}


def retrieve_subscriptions_from_lead(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    lead = _lead(lead)
    rows = [
        {
            "subscription_id": str(s.id),
            "lead_id": str(s.lead_id),
            "lead_email": s.lead_email,
            "subscription_status": s.status,
        }
        for s in ctx.account.subscriptions.values()
        if s.lead_id == lead.id
    ]
    return {"subscriptions_list": rows}


# ---- account actions


def create_custom_field(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    identifier = action.get("custom_field_identifier")
    if not isinstance(identifier, str) or identifier == "":
        raise KartraFault(265)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", identifier):
        raise KartraFault(263)
    if (
        identifier in ctx.account.custom_fields
        or identifier in LEAD_FIELDS
        or identifier == "email"
    ):
        raise KartraFault(264)
    kind = action.get("custom_field_type")
    if kind not in CUSTOM_FIELD_TYPES:
        raise KartraFault(269)
    options: dict[int, str] = {}
    if kind in ("drop_down", "radio_button", "checkbox"):
        raw = action.get("custom_field_options")
        entries = values(raw)
        if entries is None:
            raise KartraFault(270)
        names = []
        for entry in entries:
            name = entry.get("option_name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name.strip():
                raise KartraFault(272)
            names.append(name)
        if len(names) < 2:
            raise KartraFault(273)
        options = {ctx.account.new_id(): name for name in names}
    definition = CustomFieldDef(ctx.account.new_id(), identifier, str(kind), options)
    ctx.account.custom_fields[identifier] = definition
    return ok("Custom Field created", 114)


def _transaction(ctx: Context, raw: Any) -> Transaction:
    if not _is_number(raw) or int(raw) not in ctx.account.transactions:
        raise KartraFault(247)
    return ctx.account.transactions[int(raw)]


def _subscription(ctx: Context, raw: Any) -> Subscription:
    if not _is_number(raw) or int(raw) not in ctx.account.subscriptions:
        raise KartraFault(248)
    return ctx.account.subscriptions[int(raw)]


def search_transaction(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    _transaction(ctx, action.get("transaction_id"))
    return ok("Transaction exists")


def _record(ctx: Context, source: Transaction, kind: str, amount: Decimal) -> Transaction:
    record = attrs.evolve(
        source, id=ctx.account.new_id(), type=kind, amount=amount, date=ctx.now, parent_id=source.id,
        refunded=Decimal(0),
    )  # fmt: skip
    ctx.account.transactions[record.id] = record
    return record


def refund_transaction(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    transaction = _transaction(ctx, action.get("transaction_id"))
    raw_amount = action.get("refund_amount")
    amount: Decimal | None = None
    if raw_amount not in (None, ""):
        amount = _money(raw_amount)
        if amount is None or amount <= 0:
            raise KartraFault(268)
    if transaction.type not in ("sale", "rebill") or transaction.test:
        raise KartraFault(253)
    if ctx.now - transaction.date > timedelta(days=ctx.refund_period_days):
        raise KartraFault(250)
    left = transaction.amount - transaction.refunded
    if left <= 0:
        raise KartraFault(251)
    amount = left if amount is None else amount
    if amount > left:
        raise KartraFault(268)
    transaction.refunded += amount
    _record(
        ctx,
        transaction,
        "refund" if transaction.refunded == transaction.amount else "partial_refund",
        amount,
    )
    return {"status": "Success", "transaction_refunded": str(transaction.id)}


_PERIODS_1 = (
    "monthly",
    "every 2 months",
    "quarterly",
    "yearly",
    "every 2 years",
    "weekly",
    "every 2 weeks",
)
_INSTALLMENT_PERIODS_1 = ("monthly", "every 2 months", "weekly", "every 2 weeks")
_EDITABLE = (
    "subscription_product_id", "subscription_price_point", "subscription_next_payment_date",
    "subscription_amount", "subscription_recurrence", "subscription_product_quantity",
    "subscription_installments_left", "subscription_tax_percent",
)  # fmt: skip


def edit_subscription(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    sub = _subscription(ctx, action.get("subscription_id"))
    if sub.processor == "PayPal":
        raise KartraFault(284)
    if sub.status in ("Cancelled", "Terminated"):
        raise KartraFault(275)
    if not any(action.get(k) not in (None, "") for k in _EDITABLE):
        raise KartraFault(285)
    changes: dict[str, Any] = {}
    product_id, price_point = (
        action.get("subscription_product_id"),
        action.get("subscription_price_point"),
    )
    if product_id is not None or price_point is not None:
        product = ctx.account.products.get(int(product_id)) if _is_number(product_id) else None
        if (
            product is None
            or not _is_number(price_point)
            or int(price_point) not in product.price_points
        ):
            raise KartraFault(283)
        changes.update(product=product, price_point=int(price_point))
    if (raw := action.get("subscription_next_payment_date")) is not None:
        match = re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", str(raw))
        try:
            if not match:
                raise ValueError(raw)
            when = datetime.strptime(str(raw)[:16], "%Y-%m-%d %H:%M").replace(tzinfo=ctx.now.tzinfo)
        except ValueError:
            raise KartraFault(260) from None
        if when < ctx.now:
            raise KartraFault(261)
        changes["next_payment"] = when
    if (raw := action.get("subscription_amount")) is not None:
        amount = _money(raw)
        if amount is None:
            raise KartraFault(268)
        if not Decimal("1.00") <= amount <= Decimal("9999.99"):
            raise KartraFault(277)
        changes["amount"] = amount
    if (raw := action.get("subscription_recurrence")) is not None:
        if not isinstance(raw, dict):
            raise KartraFault(280)
        first, second = raw.get("recurring_period_1"), raw.get("recurring_period_2")
        if first not in _PERIODS_1 or (
            second is not None
            and (second not in ("yearly", "every 2 years") or first not in _INSTALLMENT_PERIODS_1)
        ):
            raise KartraFault(280)
        if sub.kind == "one_time_trial" or (second is not None) != (
            sub.kind == "recurring_installments"
        ):
            raise KartraFault(281)
        changes["recurring_period"] = first if second is None else f"{first} over {second}"
    if (raw := action.get("subscription_product_quantity")) is not None:
        if not _is_number(raw) or not 1 <= int(raw) <= 9999:
            raise KartraFault(276)
        changes["quantity"] = int(raw)
    if (raw := action.get("subscription_installments_left")) is not None:
        if isinstance(raw, str) and raw.strip().lower() == "until cancelled":
            changes["installments_left"] = None
        elif _is_number(raw) and int(raw) > 0:
            if sub.kind == "recurring_installments" and int(raw) > 99:
                raise KartraFault(282)
            changes["installments_left"] = int(raw)
        else:
            raise KartraFault(278)
    if (raw := action.get("subscription_tax_percent")) is not None:
        tax = _money(raw)
        if tax is None or not Decimal(0) <= tax <= Decimal(100):
            raise KartraFault(290)
        changes["tax_percent"] = tax
    for key, value in changes.items():
        setattr(sub, key, value)
    return ok("Subscription modified", 115)


def _cancel(ctx: Context, sub: Subscription) -> None:
    if sub.status == "Cancelled":
        raise KartraFault(252)
    if sub.status == "Terminated":
        raise KartraFault(275)
    sub.status = "Cancelled"
    sub.end = ctx.now
    sub.next_payment = None
    source = next(
        (t for t in ctx.account.transactions.values() if t.subscription_id == sub.id), None
    )
    if source is not None:
        _record(ctx, source, "cancellation", Decimal(0))


def cancel_transaction(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    if action.get("transaction_id") not in (None, ""):
        transaction = (
            ctx.account.transactions.get(int(action["transaction_id"]))
            if _is_number(action["transaction_id"])
            else None
        )
        if transaction is None:
            raise KartraFault(248)
        if transaction.type not in ("sale", "rebill") or transaction.test:
            raise KartraFault(253)
        if transaction.subscription_id is None:
            raise KartraFault(249)
        sub = ctx.account.subscriptions[transaction.subscription_id]
    else:
        sub = _subscription(ctx, action.get("transaction_internal_subscription_id"))
    _cancel(ctx, sub)
    return {
        "status": "Success",
        "transaction_subscription_id": sub.external_id,
        "transaction_internal_subscription_id": str(sub.id),
    }


def modify_subscription_status(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    sub = _subscription(ctx, action.get("subscription_id"))
    change = action.get("subscription_status_modification")
    if change not in ("cancel", "pause", "unpause"):
        raise KartraFault(274)
    if change == "cancel":
        _cancel(ctx, sub)
    else:
        if sub.processor == "PayPal":
            raise KartraFault(284)
        if sub.status in ("Cancelled", "Terminated"):
            raise KartraFault(275)
        sub.status = "Paused" if change == "pause" else "Active"
    return ok("Subscription modified", 115)


def search_subscription(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    _subscription(ctx, action.get("transaction_internal_subscription_id"))
    return ok("Subscription exists")


def _date(value: datetime | None) -> str:
    return value.strftime(DATE) if value is not None else "0000-00-00 00:00:00"


def get_subscription_details(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    sub = _subscription(ctx, action.get("subscription_id"))
    details = {
        "subscription_id": str(sub.id),
        "subscription_product_id": str(sub.product.id),
        "subscription_price_point": str(sub.price_point),
        "subscription_lead_id": str(sub.lead_id),
        "subscription_start_date": _date(sub.start),
        "subscription_end_date": _date(sub.end),
        "subscription_current_installment": str(sub.current_installment),
        "subscription_installments_left": "Until cancelled"
        if sub.installments_left is None
        else str(sub.installments_left),
        "subscription_recurring_period": sub.recurring_period,
        "subscription_status": sub.status,
        "subscription_next_payment_date": _date(sub.next_payment),
        "subscription_next_scheduled_payment_amount": "N/A"
        if sub.next_payment is None
        else f"{sub.amount:.2f}",
        "subscription_affiliate": sub.affiliate or "N/A",
        "subscription_jv": "N/A",
    }
    return {"subscription_details": details}


def get_transaction_details(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    t = _transaction(ctx, action.get("transaction_id"))
    owner = ctx.account.leads.get(t.lead_id)
    fields = owner.fields if owner is not None else {}
    sub = ctx.account.subscriptions.get(t.subscription_id) if t.subscription_id else None
    details: dict[str, Any] = {
        "transaction_id": str(t.id),
        "lead_first_name": fields.get("first_name", ""),
        "lead_last_name": fields.get("last_name", ""),
        "lead_email": t.lead_email,
        "lead_id": str(t.lead_id),
        "lead_username": "",
        "lead_country": fields.get("country", ""),
        "lead_country_code_2": "",
        "lead_country_code_3": "",
        "lead_state": fields.get("state", ""),
        "lead_phone_country_code": fields.get("phone_country_code", ""),
        "lead_phone_number": fields.get("phone", ""),
        "lead_address": fields.get("address", ""),
        "lead_city": fields.get("city", ""),
        "lead_zip": fields.get("zip", ""),
        "lead_ip": fields.get("ip", ""),
        "product_name": t.product.name,
        "product_id": str(t.product.id),
        "product_price_point": str(t.price_point),
        "transaction_date": t.date.strftime(DATE),
        "transaction_type": t.type,
        "transaction_parent_id": str(t.parent_id),
        "transaction_subscription_id": sub.external_id if sub else "N/A",
        "transaction_internal_subscription_id": str(sub.id) if sub else "N/A",
        "original_id": str(t.parent_id or t.id),
        "vendor_tracking_id_1": "N/A",
        "vendor_tracking_id_2": "N/A",
        "vendor_tracking_link": "",
        "payment_processor_type": t.processor,
    }
    if t.type != "cancellation":
        details.update(
            {
                "transaction_full_amount": f"{t.amount:.2f}",
                "transaction_base_amount": f"{t.amount:.2f}",
                "transaction_quantity": "1",
                "transaction_affiliate": "N/A",
                "transaction_jv": "N/A",
                "transaction_subscription_pay_number": str(sub.current_installment)
                if sub
                else "N/A",
                "transaction_discount": "N/A",
                "transaction_tax": "N/A",
                "transaction_shipping": "0.00",
                **{
                    f"shipping_{k}": "N/A"
                    for k in (
                        "first_name",
                        "last_name",
                        "address",
                        "city",
                        "zip",
                        "country",
                        "state",
                    )
                },
            }
        )
    if t.type in ("sale", "cancellation"):
        details["transaction_last_4_card_digits"] = "N/A" if t.processor == "PayPal" else "4242"
    if t.type == "sale":
        details.update({"trial": "0", "trial_period": "N/A", "trial_amount": "N/A"})
    if t.type in ("sale", "rebill") and sub is not None:
        details.update(
            {
                "rebill_circle": "30",
                "payments_left": "9999"
                if sub.installments_left is None
                else str(sub.installments_left),
            }
        )
    return {"transaction_details": details}


def _names(key: str, attribute: str) -> Handler:
    def handler(ctx: Context, action: dict[str, Any], lead: FakeLead | None) -> dict[str, Any]:
        return {"status": "Success", key: list(getattr(ctx.account, attribute))}

    return handler


def retrieve_custom_fields(
    ctx: Context, action: dict[str, Any], lead: FakeLead | None
) -> dict[str, Any]:
    fields = []
    for definition in ctx.account.custom_fields.values():
        entry: dict[str, Any] = {
            "field_id": str(definition.id),
            "field_identifier": definition.identifier,
            "field_type": definition.type,
        }
        if definition.options:
            entry["field_value"] = [
                {"option_id": str(i), "option_value": v} for i, v in definition.options.items()
            ]
        fields.append(entry)
    return {"status": "Success", "custom_fields": fields}


HANDLERS: dict[str, Handler] = {
    "subscribe_lead_to_list": subscribe_lead_to_list,
    "unsubscribe_lead_from_list": unsubscribe_lead_from_list,
    "assign_tag": assign_tag,
    "unassign_tag": unassign_tag,
    "give_points_to_lead": give_points_to_lead,
    "remove_points_from_lead": remove_points_from_lead,
    "subscribe_lead_to_sequence_at_step": subscribe_lead_to_sequence_at_step,
    "unsubscribe_lead_from_sequence": unsubscribe_lead_from_sequence,
    "calendar_subscribe": calendar_subscribe,
    "calendar_cancel": calendar_cancel,
    "retrieve_transactions_from_lead": retrieve_transactions_from_lead,
    "retrieve_subscriptions_from_lead": retrieve_subscriptions_from_lead,
    "create_custom_field": create_custom_field,
    "search_transaction": search_transaction,
    "refund_transaction": refund_transaction,
    "edit_subscription": edit_subscription,
    "cancel_transaction": cancel_transaction,
    "modify_subscription_status": modify_subscription_status,
    "search_subscription": search_subscription,
    "get_subscription_details": get_subscription_details,
    "get_transaction_details": get_transaction_details,
    "retrieve_account_tags": _names("account_tags", "tags"),
    "retrieve_account_lists": _names("account_lists", "lists"),
    "retrieve_account_sequences": _names("account_sequences", "sequences"),
    "retrieve_account_pages": _names("account_pages", "pages"),
    "retrieve_custom_fields": retrieve_custom_fields,
}
"""Every actions cmd but the three lead cmds (LEAD_CMDS): cmd -> handler."""

#: cmds that work on the lead named in `lead[...]` (the rest work on the account)
LEAD_SCOPED = frozenset(
    {
        "subscribe_lead_to_list", "unsubscribe_lead_from_list", "assign_tag", "unassign_tag",
        "give_points_to_lead", "remove_points_from_lead", "subscribe_lead_to_sequence_at_step",
        "unsubscribe_lead_from_sequence", "calendar_subscribe", "calendar_cancel",
        "retrieve_transactions_from_lead", "retrieve_subscriptions_from_lead",
    }
)  # fmt: skip
