"""The fake's state: Apps, accounts and everything an account holds."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

__all__ = [
    "App",
    "Calendar",
    "CalendarBooking",
    "CustomFieldDef",
    "FakeAccount",
    "FakeLead",
    "Points",
    "Product",
    "Subscription",
    "Transaction",
]

DATE = "%Y-%m-%d %H:%M:%S"


@attrs.define
class Points:
    amount: int
    expires: datetime | None  #: None: never


@attrs.define
class CalendarBooking:
    subscription_id: int
    calendar: str
    class_name: str
    status: str  #: Active, Pending, Completed, Declined, Cancelled
    starts: datetime | None


@attrs.define
class FakeLead:
    id: int
    email: str
    date_joined: datetime
    fields: dict[str, str] = attrs.field(factory=dict)
    custom: dict[str, Any] = attrs.field(factory=dict)  #: identifier -> str | list[int]
    tags: list[str] = attrs.field(factory=list)
    lists: dict[str, bool] = attrs.field(factory=dict)  #: name -> active
    sequences: dict[str, tuple[str, str]] = attrs.field(factory=dict)  #: name -> (step, status)
    points: list[Points] = attrs.field(factory=list)
    calendars: list[CalendarBooking] = attrs.field(factory=list)
    memberships: list[tuple[str, str, bool]] = attrs.field(factory=list)  #: (name, level, active)
    notes: str = ""
    blacklisted: bool = False
    source: str = "api"
    deleted: bool = False

    def score(self, now: datetime) -> int:
        return sum(p.amount for p in self.points if p.expires is None or p.expires > now)


@attrs.define
class CustomFieldDef:
    id: int
    identifier: str
    type: str
    options: dict[int, str] = attrs.field(factory=dict)  #: option id -> value


@attrs.define
class Calendar:
    id: int
    name: str
    classes: dict[str, int]  #: class name -> class id
    vendor_timezone: str = "America/New_York"


@attrs.define
class Product:
    id: int
    name: str
    price_points: dict[int, Decimal]  #: price point number -> amount


@attrs.define
class Transaction:
    id: int
    type: str  #: sale, refund, partial_refund, chargeback, rebill, failed, cancellation
    lead_id: int
    lead_email: str
    product: Product
    price_point: int
    amount: Decimal
    date: datetime
    parent_id: int = 0
    subscription_id: int | None = None
    processor: str = "Stripe"
    test: bool = False
    refunded: Decimal = Decimal(0)


@attrs.define
class Subscription:
    id: int
    external_id: str
    lead_id: int
    lead_email: str
    product: Product
    price_point: int
    start: datetime
    next_payment: datetime | None
    amount: Decimal
    status: str = "Active"  #: Active, Paused, Cancelled, Terminated
    #: 'recurring', 'installments', 'recurring_installments' or 'one_time_trial'
    kind: str = "recurring"
    recurring_period: str = "monthly"
    installments_left: int | None = None  #: None: until cancelled
    current_installment: int = 1
    quantity: int = 1
    tax_percent: Decimal = Decimal(0)
    end: datetime | None = None
    processor: str = "Stripe"
    affiliate: str | None = None


@attrs.define
class FakeAccount:
    """One Kartra account (an api_key / api_password pair) and all it holds."""

    api_key: str
    api_password: str = attrs.field(repr=False)
    active: bool = True
    leads: dict[int, FakeLead] = attrs.field(factory=dict)
    emails: dict[str, int] = attrs.field(factory=dict)  #: lower-cased email -> lead id
    tags: list[str] = attrs.field(factory=list)
    lists: list[str] = attrs.field(factory=list)
    sequences: dict[str, set[str]] = attrs.field(factory=dict)  #: name -> step ids
    calendars: dict[str, Calendar] = attrs.field(factory=dict)
    memberships: dict[str, list[str]] = attrs.field(factory=dict)  #: name -> level names
    custom_fields: dict[str, CustomFieldDef] = attrs.field(factory=dict)
    pages: list[str] = attrs.field(factory=list)
    products: dict[int, Product] = attrs.field(factory=dict)
    transactions: dict[int, Transaction] = attrs.field(factory=dict)
    subscriptions: dict[int, Subscription] = attrs.field(factory=dict)
    next_id: int = 1000

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def find_lead(self, lead_id: Any = None, email: Any = None) -> FakeLead | None:
        """By id first, as Kartra does, then by email (case-insensitive)."""
        if lead_id not in (None, ""):
            try:
                return self.leads.get(int(lead_id))
            except (TypeError, ValueError):
                return None
        if isinstance(email, str) and email:
            found = self.emails.get(email.lower())
            return self.leads.get(found) if found is not None else None
        return None


@attrs.define
class App:
    """A Kartra App: its id, its accounts, and what it may do."""

    app_id: str
    accounts: dict[str, FakeAccount] = attrs.field(factory=dict)  #: api_key -> account
    active: bool = True
    allowed_ips: frozenset[str] | None = None  #: None: any IP (else error 242)
    forbidden_cmds: frozenset[str] = frozenset()  #: error 262
