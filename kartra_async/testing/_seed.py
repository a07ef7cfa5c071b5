"""Seed files: a FakeKartra's state as JSON, in and out.

`load(fake, data)` adds what a seed describes to the fake; `dump(fake)` describes the
fake's state in the same form, so `load(other, dump(fake))` rebuilds it (passwords
aside: a dump never holds one). `python -m kartra_async.testing --seed FILE` and
`POST /_fake/seed` read this form; `GET /_fake/state` answers it. The demo account is
`demo_seed.json` next to this module (`demo_seed_path()`), a file to copy and edit.

A seed is a JSON object; every key is optional:

    {
      "app_ids": ["MyApp"],                 App ids that share the fake's accounts
      "accounts": [{"api_key": "K2", "api_password": "P2", ...account data...}],
      ...account data of the fake's own account (the constructor's api_key)...
    }

Account data:

    "tags": ["VIP"], "lists": ["Newsletter"], "pages": ["Home"],
    "sequences": {"Welcome": ["1", "2"]},
    "calendars": {"Coaching": {"classes": ["Strategy Call"]}},      or {"id": 7,
                 "classes": {"Strategy Call": 8}, "vendor_timezone": "America/New_York"}
    "memberships": {"Gold Club": ["Basic", "Premium"]},              name -> levels
    "custom_fields": {"size": {"type": "drop_down", "options": ["S", "M"]}},
                 options as labels or {"id": label}; type: input_field, text_area,
                 drop_down, radio_button, checkbox
    "products": [{"name": "Course", "price_points": {"1": "199.00"}}],  (+ "id")
    "leads": [{"email": "a@example.com", "first_name": "Ann", "tags": ["VIP"],
               "lists": ["Newsletter"] or {"Newsletter": true},
               "sequences": {"Welcome": {"step": "2", "status": "active"}},
               "points": 12 or [{"amount": 12, "expires": null}],
               "custom_fields": {"size": ["M"], "notes": "text"},
               "memberships": [{"name": "Gold Club", "level_name": "Basic", "active": true}],
               "calendars": [{"calendar": "Coaching", "class_name": "Strategy Call",
                              "status": "Active", "starts": "2030-01-02 10:00:00"}],
               "notes": "", "blacklisted": false, "source": "api",
               "date_joined": "2024-01-02 03:04:05"}],                 (+ "id")
    "sales": [{"lead": "a@example.com", "product": "Course", "price_point": 1,
               "subscription": false, "processor": "Stripe", "days_ago": 0}],
    "transactions": [...], "subscriptions": [...]    as `dump` writes them
    "next_id": 2000                                  ids handed out after this one

Dates are "YYYY-MM-DD HH:MM:SS" in US Eastern time, as Kartra writes them. Seeding
adds: names already there are kept once; a lead, product, transaction or
subscription whose id (or a lead whose email) exists is an error. Every error is a
SeedError naming the place in the seed (`leads[2].tags[0]: ...`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._constants import KARTRA_TZ
from ._handlers import CUSTOM_FIELD_TYPES, LEAD_FIELDS
from ._state import (
    DATE,
    Calendar,
    CalendarBooking,
    CustomFieldDef,
    FakeAccount,
    FakeLead,
    Points,
    Product,
    Subscription,
    Transaction,
)

if TYPE_CHECKING:
    from .fake import FakeKartra

__all__ = ["SeedError", "demo_seed", "demo_seed_path", "dump", "load", "read_seed_file"]

_ACCOUNT_KEYS = frozenset(
    {"tags", "lists", "pages", "sequences", "calendars", "memberships", "custom_fields",
     "products", "leads", "sales", "transactions", "subscriptions", "next_id"}
)  # fmt: skip
_TOP_KEYS = _ACCOUNT_KEYS | {"app_ids", "accounts"}
_BOOKING_STATUSES = ("Active", "Pending", "Completed", "Declined", "Cancelled")
_SUBSCRIPTION_STATUSES = ("Active", "Paused", "Cancelled", "Terminated")
_SUBSCRIPTION_KINDS = ("recurring", "installments", "recurring_installments", "one_time_trial")
_TRANSACTION_TYPES = (
    "sale", "refund", "partial_refund", "chargeback", "rebill", "failed", "cancellation",
)  # fmt: skip


class SeedError(ValueError):
    """A seed that cannot be loaded; the message names the place in the seed."""


# --------------------------------------------------------------------------- reading values


def _fail(path: str, rule: str) -> SeedError:
    return SeedError(f"{path}: {rule}" if path else rule)


def _object(value: Any, path: str, keys: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be a JSON object (got {_kind(value)})")
    if keys is not None:
        unknown = sorted(set(value) - keys)
        if unknown:
            raise _fail(path, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"must be a list (got {_kind(value)})")
    return value


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "must be a non-empty string")
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"must be a string (got {_kind(value)})")
    return value


def _names(value: Any, path: str) -> list[str]:
    return [_name(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path))]


def _int(value: Any, path: str, minimum: int = 1) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(path, f"must be an integer >= {minimum} (got {value!r})")
    if value >= 10**18:
        raise _fail(path, f"must be below 10**18 (got {value})")
    return value


def _flag(value: Any, path: str) -> bool:
    if value in (True, False, 0, 1, "0", "1"):
        return value in (True, 1, "1")
    raise _fail(path, f"must be true/false or 0/1 (got {value!r})")


def _money(value: Any, path: str) -> Decimal:
    try:
        amount = Decimal(str(value)) if isinstance(value, (str, int, float)) else None
    except InvalidOperation:
        amount = None
    if isinstance(value, bool) or amount is None or not amount.is_finite() or amount < 0:
        raise _fail(path, f'must be an amount like "49.00" (got {value!r})')
    return amount.quantize(Decimal("0.01"))


def _date(value: Any, path: str) -> datetime:
    if isinstance(value, str):
        for fmt in (DATE, "%Y-%m-%d %H:%M"):
            try:
                return datetime.strptime(value, fmt).replace(tzinfo=KARTRA_TZ)
            except ValueError:
                continue
    raise _fail(path, f"must be a date 'YYYY-MM-DD HH:MM:SS' (US Eastern; got {value!r})")


def _optional_date(value: Any, path: str) -> datetime | None:
    return None if value is None else _date(value, path)


def _choice(value: Any, path: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise _fail(path, f"must be one of {', '.join(options)} (got {value!r})")
    return str(value)


def _get(data: Mapping[str, Any], key: str, path: str, read: Callable[[Any, str], Any]) -> Any:
    return read(data[key], f"{path}.{key}" if path else key)


# --------------------------------------------------------------------------- loading


class _Loader:
    def __init__(self, fake: FakeKartra, account: FakeAccount, path: str) -> None:
        self.fake, self.account, self.path = fake, account, path
        self.now = fake.now()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def reserve(self, value: Any, path: str, taken: Mapping[int, Any]) -> int:
        if value is None:
            return self.account.new_id()
        new = _int(value, path)
        if new in taken:
            raise _fail(path, f"id {new} is already used")
        self.account.next_id = max(self.account.next_id, new)
        return new

    def load(self, data: Mapping[str, Any]) -> None:
        account = self.account
        if "next_id" in data:
            account.next_id = max(account.next_id, _get(data, "next_id", self.path, _int))
        for key in ("tags", "lists", "pages"):
            if key in data:
                names: list[str] = getattr(account, key)
                for name in _names(data[key], self.at(key)):
                    if name not in names:
                        names.append(name)
        if "sequences" in data:
            path = self.at("sequences")
            for name, steps in _object(data["sequences"], path).items():
                where = f"{path}.{name}"
                _name(name, where)
                for i, step in enumerate(_list(steps, where)):
                    if not isinstance(step, str) or not step.isalnum():
                        raise _fail(f"{where}[{i}]", f"a step is alphanumeric (got {step!r})")
                account.sequences.setdefault(name, set()).update(steps)
        if "calendars" in data:
            self.calendars(_object(data["calendars"], self.at("calendars")))
        if "memberships" in data:
            path = self.at("memberships")
            for name, levels in _object(data["memberships"], path).items():
                _name(name, f"{path}.{name}")
                known = account.memberships.setdefault(name, [])
                for level in _names(levels, f"{path}.{name}"):
                    if level not in known:
                        known.append(level)
        if "custom_fields" in data:
            self.custom_fields(_object(data["custom_fields"], self.at("custom_fields")))
        if "products" in data:
            for i, product in enumerate(_list(data["products"], self.at("products"))):
                self.product(_object(product, f"{self.at('products')}[{i}]"), i)
        if "leads" in data:
            for i, lead in enumerate(_list(data["leads"], self.at("leads"))):
                self.lead(lead, f"{self.at('leads')}[{i}]")
        if "subscriptions" in data:
            path = self.at("subscriptions")
            for i, sub in enumerate(_list(data["subscriptions"], path)):
                self.subscription(_object(sub, f"{path}[{i}]", _SUBSCRIPTION_KEYS), f"{path}[{i}]")
        if "transactions" in data:
            path = self.at("transactions")
            for i, row in enumerate(_list(data["transactions"], path)):
                self.transaction(_object(row, f"{path}[{i}]", _TRANSACTION_KEYS), f"{path}[{i}]")
        if "sales" in data:
            path = self.at("sales")
            for i, sale in enumerate(_list(data["sales"], path)):
                self.sale(_object(sale, f"{path}[{i}]", _SALE_KEYS), f"{path}[{i}]")

    def calendars(self, data: dict[str, Any]) -> None:
        path = self.at("calendars")
        for name, raw in data.items():
            where = f"{path}.{name}"
            _name(name, where)
            spec = _object(raw, where, frozenset({"id", "classes", "vendor_timezone"}))
            calendar = self.account.calendars.get(name)
            if calendar is None:
                ids = {c.id: c for c in self.account.calendars.values()}
                calendar = Calendar(self.reserve(spec.get("id"), f"{where}.id", ids), name, {})
                self.account.calendars[name] = calendar
            if "vendor_timezone" in spec:
                calendar.vendor_timezone = _get(spec, "vendor_timezone", where, _name)
            classes = spec.get("classes", [])
            taken = {i: n for c in self.account.calendars.values() for n, i in c.classes.items()}
            if isinstance(classes, dict):
                for class_name, class_id in classes.items():
                    _name(class_name, f"{where}.classes.{class_name}")
                    if class_name not in calendar.classes:
                        calendar.classes[class_name] = self.reserve(
                            class_id, f"{where}.classes.{class_name}", taken
                        )
            else:
                for class_name in _names(classes, f"{where}.classes"):
                    calendar.classes.setdefault(class_name, self.account.new_id())

    def custom_fields(self, data: dict[str, Any]) -> None:
        path = self.at("custom_fields")
        for identifier, raw in data.items():
            where = f"{path}.{identifier}"
            _name(identifier, where)
            spec = _object(raw, where, frozenset({"id", "type", "options"}))
            kind = _choice(spec.get("type"), f"{where}.type", CUSTOM_FIELD_TYPES)
            definition = self.account.custom_fields.get(identifier)
            if definition is None:
                ids = {d.id: d for d in self.account.custom_fields.values()}
                definition = CustomFieldDef(
                    self.reserve(spec.get("id"), f"{where}.id", ids), identifier, kind
                )
                self.account.custom_fields[identifier] = definition
            elif definition.type != kind:
                raise _fail(f"{where}.type", f"the field exists as {definition.type}, not {kind}")
            options = spec.get("options", [])
            if kind in ("input_field", "text_area"):
                if options:
                    raise _fail(f"{where}.options", f"a {kind} field has no options")
                continue
            taken = {
                i: v for d in self.account.custom_fields.values() for i, v in d.options.items()
            }
            if isinstance(options, dict):
                for option_id, label in options.items():
                    at = f"{where}.options.{option_id}"
                    label = _name(label, at)
                    if label not in definition.options.values():
                        definition.options[self.reserve(option_id, at, taken)] = label
            else:
                for label in _names(options, f"{where}.options"):
                    if label not in definition.options.values():
                        definition.options[self.account.new_id()] = label

    def product(self, data: dict[str, Any], index: int) -> None:
        where = f"{self.at('products')}[{index}]"
        _object(data, where, frozenset({"id", "name", "price_points"}))
        name = _get(data, "name", where, _name) if "name" in data else None
        if name is None:
            raise _fail(where, "a product needs a name")
        points = _object(data.get("price_points", {"1": "49.00"}), f"{where}.price_points")
        if not points:
            raise _fail(f"{where}.price_points", "needs at least one price point")
        prices = {
            _int(k, f"{where}.price_points.{k}"): _money(v, f"{where}.price_points.{k}")
            for k, v in points.items()
        }
        product_id = self.reserve(data.get("id"), f"{where}.id", self.account.products)
        self.account.products[product_id] = Product(product_id, name, prices)

    def lead(self, raw: Any, where: str) -> None:
        account = self.account
        data = _object(raw, where, _LEAD_KEYS)
        email = _get(data, "email", where, _name) if "email" in data else None
        if email is None:
            raise _fail(where, "a lead needs an email")
        if email.lower() in account.emails:
            raise _fail(f"{where}.email", f"a lead with email {email!r} already exists")
        lead_id = self.reserve(data.get("id"), f"{where}.id", account.leads)
        joined = data.get("date_joined")
        lead = FakeLead(
            id=lead_id,
            email=email,
            date_joined=self.now if joined is None else _date(joined, f"{where}.date_joined"),
        )
        for name in LEAD_FIELDS:
            if name in data:
                lead.fields[name] = _get(data, name, where, _text)
        if "notes" in data:
            lead.notes = _get(data, "notes", where, _text)
        if "blacklisted" in data:
            lead.blacklisted = _get(data, "blacklisted", where, _flag)
        if "source" in data:
            lead.source = _get(data, "source", where, _name)
        if "deleted" in data:
            lead.deleted = _get(data, "deleted", where, _flag)
        for i, tag in enumerate(_names(data.get("tags", []), f"{where}.tags")):
            if tag not in account.tags:
                raise _fail(f"{where}.tags[{i}]", f"tag {tag!r} is not one of the account's tags")
            if tag not in lead.tags:
                lead.tags.append(tag)
        lists = data.get("lists", [])
        if isinstance(lists, list):
            lists = {name: True for name in _names(lists, f"{where}.lists")}
        for name, active in _object(lists, f"{where}.lists").items():
            if name not in account.lists:
                raise _fail(f"{where}.lists.{name}", "not one of the account's lists")
            lead.lists[name] = _flag(active, f"{where}.lists.{name}")
        sequences = _object(data.get("sequences", {}), f"{where}.sequences")
        for name, spec in sequences.items():
            at = f"{where}.sequences.{name}"
            _object(spec, at, frozenset({"step", "status"}))
            if name not in account.sequences:
                raise _fail(at, "not one of the account's sequences")
            step = _get(spec, "step", at, _name) if "step" in spec else None
            if step not in account.sequences[name]:
                raise _fail(f"{at}.step", f"{step!r} is not a step of {name!r}")
            status = _choice(
                spec.get("status", "active"), f"{at}.status", ("active", "unsubscribed")
            )
            lead.sequences[name] = (step, status)
        points = data.get("points", [])
        if isinstance(points, int) and not isinstance(points, bool):
            points = [{"amount": points}] if points else []
        for i, grant in enumerate(_list(points, f"{where}.points")):
            at = f"{where}.points[{i}]"
            grant = _object(grant, at, frozenset({"amount", "expires"}))
            amount = grant.get("amount")
            if not isinstance(amount, int) or isinstance(amount, bool) or abs(amount) >= 10**18:
                raise _fail(f"{at}.amount", f"must be an integer (got {amount!r})")
            lead.points.append(
                Points(amount, _optional_date(grant.get("expires"), f"{at}.expires"))
            )
        custom = _object(data.get("custom_fields", {}), f"{where}.custom_fields")
        for identifier, value in custom.items():
            lead.custom[identifier] = self.custom_value(identifier, value, f"{where}.custom_fields")
        for i, raw_membership in enumerate(
            _list(data.get("memberships", []), f"{where}.memberships")
        ):
            at = f"{where}.memberships[{i}]"
            membership = _object(raw_membership, at, frozenset({"name", "level_name", "active"}))
            name = _get(membership, "name", at, _name) if "name" in membership else ""
            if name not in account.memberships:
                raise _fail(f"{at}.name", f"{name!r} is not one of the account's memberships")
            level = membership.get("level_name")
            if level not in account.memberships[name]:
                raise _fail(f"{at}.level_name", f"{level!r} is not a level of {name!r}")
            active = _flag(membership.get("active", True), f"{at}.active")
            lead.memberships.append((name, level, active))
        for i, raw_booking in enumerate(_list(data.get("calendars", []), f"{where}.calendars")):
            at = f"{where}.calendars[{i}]"
            booking = _object(raw_booking, at, _BOOKING_KEYS)
            calendar = booking.get("calendar")
            if calendar not in account.calendars:
                raise _fail(f"{at}.calendar", f"{calendar!r} is not one of the account's calendars")
            class_name = booking.get("class_name")
            if class_name not in account.calendars[calendar].classes:
                raise _fail(f"{at}.class_name", f"{class_name!r} is not a class of {calendar!r}")
            taken = {b.subscription_id: b for b in lead.calendars}
            lead.calendars.append(
                CalendarBooking(
                    self.reserve(booking.get("subscription_id"), f"{at}.subscription_id", taken),
                    calendar,
                    class_name,
                    _choice(booking.get("status", "Active"), f"{at}.status", _BOOKING_STATUSES),
                    _optional_date(booking.get("starts"), f"{at}.starts"),
                )
            )
        account.leads[lead.id] = lead
        account.emails[email.lower()] = lead.id

    def custom_value(self, identifier: str, value: Any, path: str) -> str | list[int]:
        where = f"{path}.{identifier}"
        definition = self.account.custom_fields.get(identifier)
        if definition is None:
            raise _fail(where, "not one of the account's custom fields")
        if definition.type in ("input_field", "text_area"):
            return _text(value, where)
        items = value if isinstance(value, list) else [value]
        by_label = {label: option_id for option_id, label in definition.options.items()}
        chosen = []
        for i, item in enumerate(items):
            if isinstance(item, int) and not isinstance(item, bool) and item in definition.options:
                chosen.append(item)
            elif isinstance(item, str) and item in by_label:
                chosen.append(by_label[item])
            else:
                raise _fail(f"{where}[{i}]", f"{item!r} is not an option of {identifier!r}")
        if definition.type != "checkbox" and len(chosen) > 1:
            raise _fail(where, f"a {definition.type} field holds one option")
        return chosen

    def _lead_of(self, data: Mapping[str, Any], where: str) -> FakeLead:
        if "lead_id" in data:
            lead = self.account.leads.get(_get(data, "lead_id", where, _int))
        else:
            email = data.get("lead", data.get("lead_email"))
            lead = self.account.find_lead(email=email) if isinstance(email, str) else None
        if lead is None:
            raise _fail(where, "names no lead of the account (lead_id, lead or lead_email)")
        return lead

    def _product_of(self, data: Mapping[str, Any], where: str) -> Product:
        if "product_id" in data:
            product = self.account.products.get(_get(data, "product_id", where, _int))
        else:
            name = data.get("product")
            product = next((p for p in self.account.products.values() if p.name == name), None)
        if product is None:
            raise _fail(where, "names no product of the account (product_id or product)")
        return product

    def _price_point(self, data: Mapping[str, Any], product: Product, where: str) -> int:
        point = _int(data.get("price_point", 1), f"{where}.price_point")
        if point not in product.price_points:
            raise _fail(f"{where}.price_point", f"{product.name!r} has no price point {point}")
        return point

    def subscription(self, data: dict[str, Any], where: str) -> None:
        lead, product = self._lead_of(data, where), self._product_of(data, where)
        sub_id = self.reserve(data.get("id"), f"{where}.id", self.account.subscriptions)
        price_point = self._price_point(data, product, where)
        left = data.get("installments_left")
        sub = Subscription(
            id=sub_id,
            external_id=_get(data, "external_id", where, _name)
            if "external_id" in data
            else str(sub_id),
            lead_id=lead.id,
            lead_email=lead.email,
            product=product,
            price_point=price_point,
            start=_date(data["start"], f"{where}.start") if "start" in data else self.now,
            next_payment=_optional_date(data.get("next_payment"), f"{where}.next_payment"),
            amount=_money(data.get("amount", product.price_points[price_point]), f"{where}.amount"),
            status=_choice(data.get("status", "Active"), f"{where}.status", _SUBSCRIPTION_STATUSES),
            kind=_choice(data.get("kind", "recurring"), f"{where}.kind", _SUBSCRIPTION_KINDS),
            recurring_period=_get(data, "recurring_period", where, _name)
            if "recurring_period" in data
            else "monthly",
            installments_left=None if left is None else _int(left, f"{where}.installments_left"),
            current_installment=_int(
                data.get("current_installment", 1), f"{where}.current_installment"
            ),
            quantity=_int(data.get("quantity", 1), f"{where}.quantity"),
            tax_percent=_money(data.get("tax_percent", 0), f"{where}.tax_percent"),
            end=_optional_date(data.get("end"), f"{where}.end"),
            processor=_get(data, "processor", where, _name) if "processor" in data else "Stripe",
            affiliate=None
            if data.get("affiliate") is None
            else _get(data, "affiliate", where, _name),
        )
        self.account.subscriptions[sub.id] = sub

    def transaction(self, data: dict[str, Any], where: str) -> None:
        lead, product = self._lead_of(data, where), self._product_of(data, where)
        transaction_id = self.reserve(data.get("id"), f"{where}.id", self.account.transactions)
        price_point = self._price_point(data, product, where)
        sub_id = data.get("subscription_id")
        if sub_id is not None and _int(sub_id, f"{where}.subscription_id") not in (
            self.account.subscriptions
        ):
            raise _fail(f"{where}.subscription_id", f"names no subscription ({sub_id})")
        self.account.transactions[transaction_id] = Transaction(
            id=transaction_id,
            type=_choice(data.get("type", "sale"), f"{where}.type", _TRANSACTION_TYPES),
            lead_id=lead.id,
            lead_email=lead.email,
            product=product,
            price_point=price_point,
            amount=_money(data.get("amount", product.price_points[price_point]), f"{where}.amount"),
            date=_date(data["date"], f"{where}.date") if "date" in data else self.now,
            parent_id=_int(data.get("parent_id", 0), f"{where}.parent_id", minimum=0),
            subscription_id=None if sub_id is None else int(sub_id),
            processor=_get(data, "processor", where, _name) if "processor" in data else "Stripe",
            test=_flag(data.get("test", False), f"{where}.test"),
            refunded=_money(data.get("refunded", 0), f"{where}.refunded"),
        )

    def sale(self, data: dict[str, Any], where: str) -> None:
        lead, product = self._lead_of(data, where), self._product_of(data, where)
        if "date" in data and "days_ago" in data:
            raise _fail(where, "give date or days_ago, not both")
        days = _int(data.get("days_ago", 0), f"{where}.days_ago", minimum=0)
        when = _date(data["date"], f"{where}.date") if "date" in data else None
        self.fake.add_sale(
            lead,
            product,
            price_point=self._price_point(data, product, where),
            subscription=_flag(data.get("subscription", False), f"{where}.subscription"),
            kind=_choice(data.get("kind", "recurring"), f"{where}.kind", _SUBSCRIPTION_KINDS),
            processor=_get(data, "processor", where, _name) if "processor" in data else "Stripe",
            days_ago=min(days, 36500),
            when=when,
            account=self.account,
        )


_LEAD_KEYS = frozenset(
    {"id", "email", *LEAD_FIELDS, "notes", "blacklisted", "source", "deleted", "date_joined",
     "tags", "lists", "sequences", "points", "custom_fields", "memberships", "calendars"}
)  # fmt: skip
_BOOKING_KEYS = frozenset({"subscription_id", "calendar", "class_name", "status", "starts"})
_SALE_KEYS = frozenset(
    {"lead", "lead_id", "lead_email", "product", "product_id", "price_point", "subscription",
     "kind", "processor", "days_ago", "date"}
)  # fmt: skip
_TRANSACTION_KEYS = frozenset(
    {"id", "type", "lead_id", "lead", "lead_email", "product_id", "product", "price_point",
     "amount", "date", "parent_id", "subscription_id", "processor", "test", "refunded"}
)  # fmt: skip
_SUBSCRIPTION_KEYS = frozenset(
    {"id", "external_id", "lead_id", "lead", "lead_email", "product_id", "product",
     "price_point", "start", "next_payment", "amount", "status", "kind", "recurring_period",
     "installments_left", "current_installment", "quantity", "tax_percent", "end", "processor",
     "affiliate"}
)  # fmt: skip


def load(fake: FakeKartra, data: Any) -> None:
    """Add what the seed `data` (parsed JSON) describes to `fake`; SeedError if it cannot
    (and then the fake's state is as it was)."""
    _object(data, "", _TOP_KEYS)
    before = copy.deepcopy(fake.apps)
    try:
        _apply(fake, data)
    except SeedError:
        fake.apps = before
        raise


def _apply(fake: FakeKartra, data: Mapping[str, Any]) -> None:
    for i, app_id in enumerate(_list(data.get("app_ids", []), "app_ids")):
        fake.allow_app(_name(app_id, f"app_ids[{i}]"))
    _Loader(fake, fake.account, "").load(data)
    for i, raw in enumerate(_list(data.get("accounts", []), "accounts")):
        where = f"accounts[{i}]"
        spec = _object(raw, where, _ACCOUNT_KEYS | {"api_key", "api_password"})
        key = _get(spec, "api_key", where, _name) if "api_key" in spec else None
        if key is None:
            raise _fail(where, "an account needs its api_key")
        account = fake.app.accounts.get(key)
        if account is None:
            if "api_password" not in spec:
                raise _fail(where, f"a new account ({key!r}) needs its api_password")
            account = fake.add_account(key, _get(spec, "api_password", where, _name))
        elif "api_password" in spec:
            account.api_password = _get(spec, "api_password", where, _name)
        _Loader(fake, account, where).load(spec)


# --------------------------------------------------------------------------- dumping


def _fmt(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(KARTRA_TZ).strftime(DATE)


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def dump_account(account: FakeAccount) -> dict[str, Any]:
    """One account's data in seed form (no credentials)."""
    out: dict[str, Any] = {
        "tags": list(account.tags),
        "lists": list(account.lists),
        "pages": list(account.pages),
        "sequences": {
            name: sorted(steps, key=lambda s: (len(s), s))
            for name, steps in account.sequences.items()
        },
        "calendars": {
            name: {
                "id": c.id,
                "classes": dict(c.classes),
                "vendor_timezone": c.vendor_timezone,
            }
            for name, c in account.calendars.items()
        },
        "memberships": {name: list(levels) for name, levels in account.memberships.items()},
        "custom_fields": {
            identifier: {
                "id": d.id,
                "type": d.type,
                **(
                    {"options": {str(i): v for i, v in d.options.items()}}
                    if d.type not in ("input_field", "text_area")
                    else {}
                ),
            }
            for identifier, d in account.custom_fields.items()
        },
        "products": [
            {
                "id": p.id,
                "name": p.name,
                "price_points": {str(k): _amount(v) for k, v in p.price_points.items()},
            }
            for p in account.products.values()
        ],
        "leads": [_dump_lead(lead) for lead in account.leads.values()],
        "subscriptions": [
            {
                "id": s.id,
                "external_id": s.external_id,
                "lead_id": s.lead_id,
                "product_id": s.product.id,
                "price_point": s.price_point,
                "start": _fmt(s.start),
                "next_payment": _fmt(s.next_payment),
                "amount": _amount(s.amount),
                "status": s.status,
                "kind": s.kind,
                "recurring_period": s.recurring_period,
                "installments_left": s.installments_left,
                "current_installment": s.current_installment,
                "quantity": s.quantity,
                "tax_percent": _amount(s.tax_percent),
                "end": _fmt(s.end),
                "processor": s.processor,
                "affiliate": s.affiliate,
            }
            for s in account.subscriptions.values()
        ],
        "transactions": [
            {
                "id": t.id,
                "type": t.type,
                "lead_id": t.lead_id,
                "product_id": t.product.id,
                "price_point": t.price_point,
                "amount": _amount(t.amount),
                "date": _fmt(t.date),
                "parent_id": t.parent_id,
                "subscription_id": t.subscription_id,
                "processor": t.processor,
                "test": t.test,
                "refunded": _amount(t.refunded),
            }
            for t in account.transactions.values()
        ],
    }
    out["next_id"] = account.next_id
    return out


def _dump_lead(lead: FakeLead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "email": lead.email,
        **lead.fields,
        "notes": lead.notes,
        "blacklisted": lead.blacklisted,
        "source": lead.source,
        "deleted": lead.deleted,
        "date_joined": _fmt(lead.date_joined),
        "tags": list(lead.tags),
        "lists": dict(lead.lists),
        "sequences": {
            name: {"step": step, "status": status}
            for name, (step, status) in lead.sequences.items()
        },
        "points": [{"amount": p.amount, "expires": _fmt(p.expires)} for p in lead.points],
        "custom_fields": {
            identifier: value if isinstance(value, str) else list(value)
            for identifier, value in lead.custom.items()
        },
        "memberships": [
            {"name": name, "level_name": level, "active": active}
            for name, level, active in lead.memberships
        ],
        "calendars": [
            {
                "subscription_id": b.subscription_id,
                "calendar": b.calendar,
                "class_name": b.class_name,
                "status": b.status,
                "starts": _fmt(b.starts),
            }
            for b in lead.calendars
        ],
    }


def dump(fake: FakeKartra) -> dict[str, Any]:
    """The fake's state in seed form: its own account's data at the top, its other
    accounts under "accounts" (api_key, no password), the App ids sharing them."""
    shared = fake.app.accounts
    out: dict[str, Any] = {
        "app_ids": [a.app_id for a in fake.apps.values() if a.accounts is shared],
        **dump_account(fake.account),
        "accounts": [
            {"api_key": key, **dump_account(account)}
            for key, account in shared.items()
            if account is not fake.account
        ],
    }
    return out


# --------------------------------------------------------------------------- files


def demo_seed_path() -> Path:
    """The demo account's seed file (package data): copy it to start your own."""
    return Path(str(resources.files(__package__).joinpath("demo_seed.json")))


def read_seed_file(path: str | Path) -> Any:
    """Parse a seed file; SeedError (naming the file) if it is not readable JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"{path}: cannot read the seed file ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SeedError(f"{path}: not valid JSON ({exc})") from None


def demo_seed() -> Any:
    """The demo account's seed (a fresh copy)."""
    return read_seed_file(demo_seed_path())
