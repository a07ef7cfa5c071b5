"""THE command table: one `Command` per documented Kartra cmd, plus `get_lead`.

Each row says the wire name, where its parameters go (`actions[i]`, `lead` or
`get_lead`), every documented constraint on them, whether the cmd works on a
lead or on the account, whether sending it twice could do harm (`Safety`, with
the reason), the codes the docs list for it and the key its result lives
under, whether that result names the call's lead, how the docs print its answer
when it is a call's only action, and how an ambiguous call that starts with it is
reconciled (`Reconcile`). The builder (_chain.py), validation, the response reader
(_response.py), the retry policy, the client, fan_out and the fake server all read
this table: adding a cmd is one row here and a one-line builder method.
"""

from __future__ import annotations

import difflib
import enum
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Literal, Protocol

import attrs

from ._constants import (
    KARTRA_TZ,
    MAX_EMAIL_CHARS,
    MAX_INT_DIGITS,
    MAX_NAME_CHARS,
    MAX_TEXT_BYTES,
    RECONCILE_CLEARLY_BEFORE,
    RECONCILE_CLOCK_SKEW,
)
from .errors import (
    ERROR_CODES,
    AmbiguousResultError,
    KartraError,
    KartraValidationError,
    LeadExistsError,
    LeadNotFoundError,
)
from .models.account import CustomField
from .models.lead import Lead, LeadRef
from .models.payments import (
    CancelResult,
    RefundResult,
    SubscriptionDetails,
    SubscriptionSummary,
    TransactionDetails,
    TransactionSummary,
)
from .models.results import ActionResult, ChainResult

__all__ = [
    "COMMANDS",
    "CUSTOM_FIELD_TYPES",
    "LEAD_FIELDS",
    "TIME_ZONES",
    "UNTIL_CANCELLED",
    "AnswerForm",
    "Call",
    "Command",
    "LookUpCreatedLead",
    "Param",
    "Reconcile",
    "Safety",
    "Scope",
    "ambiguous_error",
    "unknown_command",
]

logger = logging.getLogger("kartra_async")


class Scope(enum.Enum):
    """What a cmd works on."""

    LEAD = "lead"  #: one lead, named in `lead[...]`
    ACCOUNT = "account"  #: the account (no lead)
    GET_LEAD = "get_lead"  #: the top-level `get_lead[...]` call


class Safety(enum.Enum):
    """What sending a cmd a second time could do (read by the retry policy)."""

    READ_ONLY = "read-only"  #: changes nothing
    IDEMPOTENT = "idempotent"  #: a repeat leaves the same state as one send
    UNSAFE = "unsafe"  #: a repeat can apply the change twice or hide the first result


class _Invalid(Exception):
    """Raised by a check with the rule the value broke."""


Check = Callable[[Any], Any]
"""Takes the user's value, returns the value to put on the wire, or raises _Invalid."""

AnswerForm = Literal["flat", "wrapped", "unwrapped"]
"""How Kartra's docs print a cmd's answer when it is a call's only action: "flat"
(`{"status", "message", "type"}` plus its data at the top level), "wrapped" (inside
`actions`, as a chain's) or "unwrapped" (`{cmd: {...}}` at the top level)."""


class Reconcile(Protocol):
    """How a call that starts with a row's cmd, and whose result is ambiguous (it may or
    may not have been applied), is settled without applying anything twice.

    `send` sends a call with the caller's priority and retry policy, never reconciling
    again; `sent_at` (aware) is when the call was first sent (None: unknown); `clock`
    is the wall clock. It returns the call's result, or raises what the call would
    have raised, or AmbiguousResultError when nobody can tell.
    """

    async def __call__(
        self,
        call: Call,
        error: KartraError | None,
        *,
        send: Callable[[Call], Awaitable[ChainResult]],
        sent_at: datetime | None,
        clock: Callable[[], datetime],
    ) -> ChainResult: ...


@attrs.frozen
class Param:
    """One parameter of a cmd: the Python keyword, the wire key and its check."""

    name: str
    wire: str
    check: Check
    required: bool = False
    #: the check returns a mapping of several wire keys (e.g. starting -> date + hour)
    spread: bool = False


@attrs.frozen
class Command:
    """One documented cmd."""

    name: str
    scope: Scope
    safety: Safety
    why: str  #: why it has that Safety (a retry decision rests on it)
    params: tuple[Param, ...] = ()
    #: where the params go: "action" (actions[i][...]), "lead" (lead[...]) or "get_lead"
    params_in: str = "action"
    #: checks across params (either/or ids, at least one of, pairs); take the wire dict
    rules: tuple[Callable[[Mapping[str, Any]], None], ...] = ()
    #: key of the action's result holding its data (None: the whole action result)
    result_key: str | None = None
    #: the type the result's data is structured into (models/); None: message only
    result: Any = None
    #: its result names the call's lead (ChainResult.lead_id is read from it)
    names_lead: bool = False
    #: the point of the cmd is its data: a success without it is not an answer
    data_required: bool = False
    #: how the docs print its answer when it is a call's only action (the fake answers so)
    single_form: AnswerForm = "flat"
    #: for unsafe cmds: how to find out whether an ambiguous call was applied
    check: str = ""
    #: how an ambiguous call that starts with this cmd is settled (None: it is not)
    reconcile: Reconcile | None = attrs.field(default=None, eq=False, repr=False)
    success_code: int | None = None
    error_codes: frozenset[int] = frozenset()
    _by_name: Mapping[str, Param] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    @property
    def starts_chain(self) -> bool:
        """create_lead, edit_lead and search_lead must be action 0 (they name the lead)."""
        return self.params_in == "lead"

    def build(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check the user's values and return the wire dict (without `cmd`).

        Raises KartraValidationError naming the field and the rule; None means "not sent".
        """
        unknown = [k for k in values if k not in self._by_name]
        if unknown:
            known = ", ".join(self._by_name) or "none"
            raise KartraValidationError(
                unknown[0], f"unknown parameter (this cmd takes: {known})", cmd=self.name
            )
        out: dict[str, Any] = {}
        # the user's order first (it is the order on the wire), then the table's
        names = list(values) + [p.name for p in self.params if p.name not in values]
        for name in names:
            param = self._by_name[name]
            value = values.get(name)
            if value is None:
                if param.required:
                    raise KartraValidationError(param.name, "is required", cmd=self.name)
                continue
            try:
                checked = param.check(value)
            except _Invalid as exc:
                raise KartraValidationError(param.name, str(exc), cmd=self.name) from None
            if param.spread:
                out.update(checked)
            else:
                out[param.wire] = checked
        for rule in self.rules:
            try:
                rule(out)
            except _Invalid as exc:
                field, _, text = str(exc).partition(": ")
                raise KartraValidationError(field, text, cmd=self.name) from None
        return out


# --------------------------------------------------------------------------- checks


def _show(value: Any) -> str:
    """The user's value for a message: its repr, cut short."""
    text = repr(value[:80] if isinstance(value, str) else value)
    if len(text) > 100 or (isinstance(value, str) and len(value) > 80):
        return text[:100] + "..."
    return text


def _text(value: Any) -> str:
    """Any string sent: no NUL, encodable as UTF-8, at most MAX_TEXT_BYTES."""
    if not isinstance(value, str):
        raise _Invalid(f"must be a string (got {type(value).__name__})")
    if "\x00" in value:
        raise _Invalid(f"contains a NUL character at position {value.index(chr(0))}")
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise _Invalid(
            f"contains text that cannot be encoded as UTF-8 (a lone surrogate at position "
            f"{exc.start})"
        ) from None
    if size > MAX_TEXT_BYTES:
        raise _Invalid(f"is {size:,} bytes long in UTF-8; at most {MAX_TEXT_BYTES:,}")
    return value


def _short(value: Any, limit: int = MAX_NAME_CHARS) -> str:
    """A name: a string of at most `limit` characters."""
    if isinstance(value, str) and len(value) > limit:
        raise _Invalid(f"is {len(value):,} characters long; at most {limit:,}")
    return _text(value)


def _name(value: Any) -> str:
    text = _short(value)
    if not text.strip():
        raise _Invalid("cannot be empty")
    return text


_EMAIL = re.compile(r"\A[^@]+@[^@]+\Z")  # \Z, not $: "a@b.co\n" must not pass
_NOT_IN_EMAIL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")  # whitespace, C0, DEL, C1


def _email(value: Any) -> str:
    text = _short(value, MAX_EMAIL_CHARS)
    bad = _NOT_IN_EMAIL.search(text)
    if bad:
        raise _Invalid(
            f"must be an email address without spaces or control characters "
            f"(got {bad.group()!r} at position {bad.start()})"
        )
    if not _EMAIL.match(text):
        raise _Invalid(f"must be an email address like name@example.com (got {_show(text)})")
    return text


_INTEGER = re.compile(rf"[+-]?[0-9]{{1,{MAX_INT_DIGITS}}}")
_INT_LIMIT = 10**MAX_INT_DIGITS


def _integer(*, minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise _Invalid("must be an integer (got a bool)")
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            value = int(value)
        if not isinstance(value, int):
            raise _Invalid(f"must be an integer (got {_show(value)})")
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise _Invalid(f"must have at most {MAX_INT_DIGITS} digits")
        if minimum is not None and value < minimum:
            raise _Invalid(f"must be >= {minimum} (got {value})")
        if maximum is not None and value > maximum:
            raise _Invalid(f"must be <= {maximum:,} (got {value})")
        return value

    return check


_ID = _integer(minimum=1)


def _decimal(
    *, minimum: Decimal, maximum: Decimal | None = None, exclusive_min: bool = False
) -> Check:
    """A money-like number (at most two decimals). Floats stay floats, so they go on the
    wire as PHP writes them (22.0 -> "22"); int, str and Decimal become Decimal."""

    def check(value: Any) -> Decimal | float:
        if isinstance(value, bool):
            raise _Invalid("must be a number (got a bool)")
        try:
            if isinstance(value, float):
                number = Decimal(repr(value))
            elif isinstance(value, (int, str, Decimal)):
                number = Decimal(value.strip() if isinstance(value, str) else value)
            else:
                raise _Invalid(f"must be a number (got {type(value).__name__})")
        except InvalidOperation:
            raise _Invalid(f"must be a number (got {_show(value)})") from None
        if not number.is_finite():
            raise _Invalid(f"must be a finite number (got {value!r})")
        if number and number.adjusted() >= MAX_INT_DIGITS:
            raise _Invalid(f"must have at most {MAX_INT_DIGITS} digits before the point")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise _Invalid(f"must have at most two decimals (got {value!r})")
        low = "more than" if exclusive_min else "at least"
        if number < minimum or (exclusive_min and number == minimum):
            raise _Invalid(f"must be {low} {minimum} (got {value!r})")
        if maximum is not None and number > maximum:
            raise _Invalid(f"must be at most {maximum:,} (got {value!r})")
        return value if isinstance(value, float) else number

    return check


def _choice(options: Iterable[str], *, casefold: bool = False) -> Check:
    allowed = tuple(options)
    lookup = {o.casefold() if casefold else o: o for o in allowed}

    def check(value: Any) -> str:
        text = _text(value)
        key = text.casefold() if casefold else text
        if key not in lookup:
            raise _Invalid(f"must be one of {_allowed(allowed, text)} (got {_show(text)})")
        return lookup[key]

    return check


def _allowed(allowed: tuple[str, ...], given: str) -> str:
    """The allowed values, or for a long list (Kartra's ~140 time zones) its size and
    the closest few, whole: a reason is never cut mid-value."""
    shown = ", ".join(repr(o) for o in allowed)
    if len(shown) <= 160:
        return shown
    close = difflib.get_close_matches(given, allowed, n=3, cutoff=0.6)
    if close:
        return f"{len(allowed)} values; closest: {', '.join(repr(o) for o in close)}"
    return f"{len(allowed)} values, such as {', '.join(repr(o) for o in allowed[:3])}"


def _step(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise _Invalid(f"must have at most {MAX_INT_DIGITS} digits")
        value = str(value)
    text = _short(value)
    if not text:
        raise _Invalid("cannot be empty")
    if not re.fullmatch(r"[A-Za-z0-9]+", text):
        raise _Invalid(f"must be alphanumeric (letters and digits only; got {_show(text)})")
    return text


_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")


def _identifier(value: Any) -> str:
    text = _short(value)
    if not text:
        raise _Invalid("cannot be empty")
    if not _IDENTIFIER.fullmatch(text):
        raise _Invalid(
            f"can only contain letters, numbers, dashes or underscores (got {_show(text)})"
        )
    return text


def _now() -> datetime:
    return datetime.now(KARTRA_TZ)


def _eastern(value: datetime) -> datetime:
    """Aware datetimes are converted to US Eastern; naive ones are taken as US Eastern."""
    if value.tzinfo is None:
        return value.replace(tzinfo=KARTRA_TZ)
    return value.astimezone(KARTRA_TZ)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _not_past(when: datetime, what: str) -> None:
    if when < _now():
        raise _Invalid(f"{what} is in the past (US Eastern time)")


def _starting(value: Any) -> dict[str, str]:
    """A datetime becomes starting_date 'DD Mmm YYYY' + starting_hour 'HH:MM' (US Eastern)."""
    if isinstance(value, datetime):
        when = _eastern(value)
        _not_past(when, "starting")
        day = f"{when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d}"
        return {"starting_date": day, "starting_hour": f"{when.hour:02d}:{when.minute:02d}"}
    if isinstance(value, date):
        if value < _now().date():
            raise _Invalid("starting is in the past (US Eastern time)")
        return {"starting_date": f"{value.day:02d} {_MONTHS[value.month - 1]} {value.year:04d}"}
    raise _Invalid(f"must be a datetime or a date (got {type(value).__name__})")


_PAYMENT_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})(?::(\d{2}))?")


def _payment_date(value: Any) -> str:
    """'YYYY-MM-DD HH:MM' (US Eastern) from a datetime, or a string of that form.

    The docs state 'yyyy-mm-dd hh:mm' but their example sends seconds too;
    a string in either form is accepted and sent as given.
    """
    if isinstance(value, datetime):
        when = _eastern(value)
        text = when.strftime("%Y-%m-%d %H:%M")
    else:
        text = _text(value)
        match = _PAYMENT_DATE.fullmatch(text)
        if not match:
            raise _Invalid(f"must be 'YYYY-MM-DD HH:MM' in US Eastern time (got {_show(text)})")
        fmt = "%Y-%m-%d %H:%M:%S" if match.group(6) else "%Y-%m-%d %H:%M"
        try:
            when = datetime.strptime(text, fmt).replace(tzinfo=KARTRA_TZ)
        except ValueError as exc:
            raise _Invalid(f"is not a real date: {exc} (got {text!r})") from None
    _not_past(when, "the date")
    return text


UNTIL_CANCELLED = "until cancelled"


def _installments(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().casefold() == UNTIL_CANCELLED:
        return UNTIL_CANCELLED
    try:
        return int(_integer(minimum=1)(value))
    except _Invalid:
        raise _Invalid(
            f"must be a positive integer or {UNTIL_CANCELLED!r} (got {_show(value)})"
        ) from None


CUSTOM_FIELD_TYPES = ("input_field", "text_area", "drop_down", "radio_button", "checkbox")
_OPTION_TYPES = frozenset({"drop_down", "radio_button", "checkbox"})


def _options(value: Any) -> list[dict[str, str]]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _Invalid(f"must be a list of option names (got {type(value).__name__})")
    out = []
    for i, option in enumerate(value):
        try:
            out.append({"option_name": _name(option)})
        except _Invalid as exc:
            raise _Invalid(f"option {i} {exc}") from None
    if len(out) < 2:
        raise _Invalid(f"must have two or more options (got {len(out)})")
    return out


def _custom_field_value(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _ID(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        if not value:
            return ""  # "To clear the values, you need to send an empty string."
        return [_ID(v) for v in value]
    raise _Invalid(
        "must be a string (text fields), an option id (drop_down, radio_button), "
        f"a list of option ids (checkbox), or '' / [] to clear (got {type(value).__name__})"
    )


def _custom_fields(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be a mapping {{identifier: value}} (got {type(value).__name__})")
    out = []
    for identifier, field_value in value.items():
        try:
            ident = _identifier(identifier)
        except _Invalid as exc:
            raise _Invalid(f"identifier {exc}") from None
        try:
            wire_value = _custom_field_value(field_value)
        except _Invalid as exc:
            raise _Invalid(f"{_show(identifier)} {exc}") from None
        out.append({"field_identifier": ident, "field_value": wire_value})
    return out


#: The time zones `lead_preferred_time_zone` accepts, in the docs' order.
TIME_ZONES: tuple[str, ...] = tuple(
    """America/Los_Angeles America/Boise America/Chicago America/New_York Europe/London
    Europe/Brussels Etc/GMT+12 Pacific/Midway Pacific/Honolulu America/Juneau America/Chihuahua
    America/Phoenix America/Regina America/Mexico_City America/Belize America/Indiana/Indianapolis
    America/Bogota America/Glace_Bay America/Caracas America/Santiago America/St_Johns
    America/Sao_Paulo America/Argentina/Buenos_Aires America/Nuuk Etc/GMT+2 Atlantic/Azores
    Atlantic/Cape_Verde Africa/Casablanca Atlantic/Canary Europe/Belgrade Europe/Sarajevo
    Europe/Amsterdam Africa/Algiers Europe/Bucharest Africa/Cairo Europe/Helsinki Europe/Athens
    Asia/Jerusalem Africa/Harare Europe/Moscow Asia/Kuwait Africa/Nairobi Asia/Baghdad Asia/Tehran
    Asia/Dubai Asia/Baku Asia/Kabul Asia/Yekaterinburg Asia/Karachi Asia/Kolkata Asia/Kathmandu
    Asia/Dhaka Asia/Colombo Asia/Almaty Asia/Rangoon Asia/Bangkok Asia/Krasnoyarsk Asia/Shanghai
    Asia/Kuala_Lumpur Asia/Taipei Australia/Perth Asia/Irkutsk Asia/Seoul Asia/Tokyo Asia/Yakutsk
    Australia/Darwin Australia/Adelaide Australia/Sydney Australia/Brisbane Australia/Hobart
    Asia/Vladivostok Pacific/Guam Asia/Magadan Pacific/Fiji Pacific/Auckland Pacific/Tongatapu
    """.split()
)

_PERIODS_1 = ("monthly", "every 2 months", "quarterly", "yearly", "every 2 years", "weekly",
              "every 2 weeks")  # fmt: skip
_PERIODS_2 = ("yearly", "every 2 years")
#: 'Recurring installments' (the only type with a recurring_period_2) takes these as period 1
_INSTALLMENT_PERIODS_1 = frozenset({"monthly", "every 2 months", "weekly", "every 2 weeks"})


def _recurrence(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _Invalid("must be a mapping with recurring_period_1 (and recurring_period_2)")
    extra = set(value) - {"recurring_period_1", "recurring_period_2"}
    if extra:
        raise _Invalid(f"unknown key {sorted(extra)[0]!r}")
    out: dict[str, str] = {}
    try:
        if value.get("recurring_period_1") is not None:
            out["recurring_period_1"] = _choice(_PERIODS_1)(value["recurring_period_1"])
        if value.get("recurring_period_2") is not None:
            out["recurring_period_2"] = _choice(_PERIODS_2)(value["recurring_period_2"])
    except _Invalid as exc:
        raise _Invalid(f"recurring period {exc}") from None
    if "recurring_period_2" in out and out.get("recurring_period_1") not in _INSTALLMENT_PERIODS_1:
        raise _Invalid(
            "recurring_period_2 needs recurring_period_1 set to one of 'monthly', "
            "'every 2 months', 'weekly', 'every 2 weeks' (recurring installments)"
        )
    if not out:
        raise _Invalid("must set recurring_period_1")
    return out


# --------------------------------------------------------------------------- rules


def _either(*keys: str, exactly_one: bool = True) -> Callable[[Mapping[str, Any]], None]:
    def rule(wire: Mapping[str, Any]) -> None:
        present = [k for k in keys if k in wire]
        if not present:
            raise _Invalid(f"{keys[0]}: one of {' or '.join(keys)} is required")
        if exactly_one and len(present) > 1:
            raise _Invalid(f"{keys[0]}: give only one of {' or '.join(keys)}")

    return rule


def _options_match_type(wire: Mapping[str, Any]) -> None:
    kind = wire.get("custom_field_type")
    if kind in _OPTION_TYPES and "custom_field_options" not in wire:
        raise _Invalid(f"options: are required for a {kind} field (two or more)")
    if kind not in _OPTION_TYPES and "custom_field_options" in wire:
        raise _Invalid(
            f"options: only drop_down, radio_button and checkbox take options, not {kind}"
        )


_EDITABLE = (
    "subscription_product_id",
    "subscription_price_point",
    "subscription_next_payment_date",
    "subscription_amount",
    "subscription_recurrence",
    "subscription_product_quantity",
    "subscription_installments_left",
    "subscription_tax_percent",
)


def _subscription_edit(wire: Mapping[str, Any]) -> None:
    if not any(k in wire for k in _EDITABLE):
        raise _Invalid(
            "subscription: at least one setting to change is required (product_id with "
            "price_point, next_payment_date, amount, recurrence, quantity, installments_left, "
            "tax_percent)"
        )
    if ("subscription_product_id" in wire) != ("subscription_price_point" in wire):
        raise _Invalid("product_id: product_id and price_point must be given together")


# --------------------------------------------------------------------------- the table


def _p(
    name: str,
    check: Check,
    *,
    wire: str | None = None,
    required: bool = False,
    spread: bool = False,
) -> Param:
    return Param(name=name, wire=wire or name, check=check, required=required, spread=spread)


_CONTACT_FIELDS = (
    "phone", "phone_country_code", "first_name", "middle_name", "last_name", "last_name2",
    "ip", "address", "zip", "city", "state", "country", "company", "lead_picture", "website",
    "facebook", "twitter", "linkedin",
)  # fmt: skip

#: The lead fields create_lead and edit_lead take (sent under `lead[...]`).
LEAD_FIELDS: tuple[Param, ...] = (
    *(_p(f, _text) for f in _CONTACT_FIELDS),
    _p("lead_preferred_time_zone", _choice(TIME_ZONES)),
    _p("custom_fields", _custom_fields),
)

# --------------------------------------------------------------------------- reconcile


def _joined_since(joined: datetime | None, sent_at: datetime | None, now: datetime) -> bool | None:
    """Whether a lead with this date_joined was created by a call first sent at
    `sent_at`: True, False (it clearly predates the call) or None (cannot tell).

    Kartra's clock may differ from ours by up to RECONCILE_CLOCK_SKEW and date_joined
    may be cut to the minute, so the bound is `sent_at - skew`, floored to the minute;
    "clearly predates" means more than RECONCILE_CLEARLY_BEFORE before that bound. A
    naive time of the hour repeated when US Eastern time falls back reads two ways:
    both must agree. A date_joined past `now` (plus the same allowance) means the
    clocks are further apart than allowed: cannot tell. With no `sent_at`, the lead
    is taken as the call's (nothing can prove otherwise)."""
    if sent_at is None:
        return True
    if joined is None or joined.tzinfo is None:
        return None
    skew = timedelta(seconds=RECONCILE_CLOCK_SKEW)
    bound = (sent_at - skew).astimezone(timezone.utc).replace(second=0, microsecond=0)
    early = joined.replace(fold=0).astimezone(timezone.utc)
    late = joined.replace(fold=1).astimezone(timezone.utc)
    if late < bound - timedelta(seconds=RECONCILE_CLEARLY_BEFORE):
        return False
    if early < bound or early > now + skew + timedelta(minutes=1):
        return None
    return True


def _shifted(action: ActionResult, by: int) -> ActionResult:
    """An action's result renumbered `by` places later (its error too)."""
    index = action.index + by
    error = action.error.with_index(index) if action.error is not None else None
    return attrs.evolve(action, index=index, error=error)


@attrs.frozen
class LookUpCreatedLead:
    """`Reconcile` for a chain whose first action creates its lead: look the lead up
    by email with `lookup` (get_lead).

    Not found: nothing was applied (every other action needs the lead), so the chain
    is sent again. Found: the create counts as applied only if the lead joined at or
    after the send (`_joined_since`); a lead that clearly predates the call raises the
    LeadExistsError the call would have met, and one that cannot be told apart raises
    AmbiguousResultError: the rest of the chain is never applied to a lead that may
    have existed before. Then the rest is sent, by lead id, if every remaining cmd is
    safe to repeat."""

    lookup: str = "get_lead"  #: the cmd that reads the lead by email
    exists_code: int = 244  #: the code the call meets when the lead already exists

    async def __call__(
        self,
        call: Call,
        error: KartraError | None,
        *,
        send: Callable[[Call], Awaitable[ChainResult]],
        sent_at: datetime | None,
        clock: Callable[[], datetime],
    ) -> ChainResult:
        first = call.commands[0]
        email = call.payload["lead"].get("email")
        lookup = COMMANDS[self.lookup]
        try:
            found = await send(Call({lookup.params_in: lookup.build({"email": email})}, (lookup,)))
        except LeadNotFoundError:
            logger.info("%s for %s was not applied: sending the chain again", first.name, email)
            return await send(call)
        except KartraError as exc:
            raise ambiguous_error(
                call,
                KartraError(
                    f"{error or 'the call was interrupted'}; looking the lead up failed: {exc}"
                ),
            ) from error
        lead_id = found.lead_id
        joined = getattr(found.actions[0].data, "date_joined", None)
        verdict = _joined_since(joined, sent_at, clock())
        if verdict is False:
            exists = LeadExistsError(
                ERROR_CODES[self.exists_code].message,
                code=self.exists_code,
                cmd=first.name,
                action_index=0,
            )
            logger.info(
                "%s for %s was not applied: lead %s joined %s, before the call",
                first.name, email, lead_id, joined,
            )  # fmt: skip
            raise exists from error
        if verdict is None:
            sent = f"{sent_at:%Y-%m-%d %H:%M:%S %Z}" if sent_at is not None else "unknown"
            raise AmbiguousResultError(
                f"{first.name} for lead {email} may or may not have been applied: "
                f"{error or 'the call was interrupted'}. Lead {lead_id} exists, but its "
                f"date_joined ({joined or 'unknown'}) does not tell whether this call created "
                f"it or it existed before (first sent {sent}, allowing "
                f"{RECONCILE_CLOCK_SKEW:g} s of clock skew), so the rest of the chain was not "
                "applied to it. "
                "To find out: look at the lead in Kartra.",
                call=call,
                cause=error,
            ) from error
        rest, actions = call.commands[1:], list(call.payload["actions"][1:])
        if any(c.safety is Safety.UNSAFE for c in rest):
            cause = error or KartraError(
                f"{first.name} was applied (lead {lead_id}); the rest may not have been"
            )
            raise ambiguous_error(call, cause) from error
        created = ActionResult(
            index=0, cmd=first.name, ok=True, code=None,
            message=f"reconciled: the lead exists after an ambiguous {first.name}",
            data=LeadRef(lead_id) if lead_id is not None else None,
        )  # fmt: skip
        if not rest:
            return ChainResult(actions=(created,), lead_id=lead_id, raw=found.raw)
        remaining = await send(Call({"lead": {"id": lead_id}, "actions": actions}, rest, lead_id))
        return ChainResult(
            actions=(created, *(_shifted(a, 1) for a in remaining.actions)),
            lead_id=lead_id,
            raw=remaining.raw,
        )


_LOOK_UP_CREATED_LEAD = LookUpCreatedLead()


_LEAD_ID = (_p("id", _ID), _p("email", _email))
_NOT_FOUND = frozenset({243, 245})

# fmt: off
_TABLE: tuple[Command, ...] = (
    # ---- the lead itself: params under lead[...], must be action 0
    Command(
        "create_lead", Scope.LEAD, Safety.UNSAFE,
        "a repeat answers 244 'Lead already exists' and loses the created id",
        params=(_p("email", _email, required=True), *LEAD_FIELDS),
        params_in="lead", result_key="lead_details", result=LeadRef, names_lead=True,
        single_form="wrapped", error_codes=frozenset({244, 271}),
        check="kartra.lead(email).search() finds the lead if it was created",
        reconcile=_LOOK_UP_CREATED_LEAD,
    ),
    Command(
        "edit_lead", Scope.LEAD, Safety.IDEMPOTENT,
        "sets fields to the values sent; a repeat writes the same values",
        params=(*_LEAD_ID, *LEAD_FIELDS, _p("new_email", _email)),
        params_in="lead", rules=(_either("id", "email", exactly_one=False),),
        result_key="lead_details", result=LeadRef, names_lead=True, single_form="wrapped",
        error_codes=frozenset({243, 244, 245, 271}),
    ),
    Command(
        "search_lead", Scope.LEAD, Safety.READ_ONLY, "only reads",
        params=_LEAD_ID, params_in="lead", rules=(_either("id", "email", exactly_one=False),),
        result_key="lead_details", result=LeadRef, names_lead=True, error_codes=_NOT_FOUND,
    ),
    Command(
        "get_lead", Scope.GET_LEAD, Safety.READ_ONLY, "only reads",
        params=_LEAD_ID, params_in="get_lead", rules=(_either("email", "id"),),
        result_key="lead_details", result=Lead, names_lead=True, data_required=True,
        error_codes=frozenset({234, 245}),
    ),
    # ---- lead actions
    Command(
        "subscribe_lead_to_list", Scope.LEAD, Safety.IDEMPOTENT,
        "list membership is a set: subscribing twice leaves one subscription",
        params=(_p("list_name", _name, required=True),),
        success_code=101, error_codes=frozenset({207, 231}),
    ),
    Command(
        "unsubscribe_lead_from_list", Scope.LEAD, Safety.IDEMPOTENT,
        "the docs: a lead not on the list is left alone",
        params=(_p("list_name", _name, required=True),),
        success_code=101, error_codes=frozenset({208, 209}),
    ),
    Command(
        "assign_tag", Scope.LEAD, Safety.IDEMPOTENT, "tags are a set: a lead has a tag or not",
        params=(_p("tag_name", _name, required=True),),
        success_code=103, error_codes=frozenset({211, 212}),
    ),
    Command(
        "unassign_tag", Scope.LEAD, Safety.IDEMPOTENT,
        "the docs: a lead without the tag is left alone",
        params=(_p("tag_name", _name, required=True),),
        success_code=104, error_codes=frozenset({213, 214}),
    ),
    Command(
        "give_points_to_lead", Scope.LEAD, Safety.UNSAFE, "points add up: a repeat doubles them",
        params=(
            _p("points", _integer(), required=True),
            _p("expiration_days", _integer(minimum=0), wire="expiration"),
        ),
        success_code=105, error_codes=frozenset({215, 227}),
        check="kartra.get_lead(email).score shows whether the points were added",
    ),
    Command(
        "remove_points_from_lead", Scope.LEAD, Safety.UNSAFE,
        "points add up: a repeat removes them twice",
        params=(_p("points", _integer(), required=True),),
        success_code=106, error_codes=frozenset({217, 228}),
        check="kartra.get_lead(email).score shows whether the points were removed",
    ),
    Command(
        "subscribe_lead_to_sequence_at_step", Scope.LEAD, Safety.IDEMPOTENT,
        "puts the lead at the given step; a repeat puts it at the same step",
        params=(
            _p("sequence_name", _name, required=True),
            _p("step", _step, required=True),
        ),
        success_code=107, error_codes=frozenset({219, 225, 226, 229, 230}),
    ),
    Command(
        "unsubscribe_lead_from_sequence", Scope.LEAD, Safety.IDEMPOTENT,
        "the docs: a lead not in the sequence is left alone",
        params=(_p("sequence_name", _name, required=True),),
        success_code=108, error_codes=frozenset({220, 226}),
    ),
    Command(
        "calendar_subscribe", Scope.LEAD, Safety.UNSAFE,
        "each send books the lead into a class session; a repeat can book it twice",
        params=(
            _p("calendar_name", _name, required=True),
            _p("class_name", _name, required=True),
            _p("starting", _starting, spread=True),
        ),
        success_code=112, error_codes=frozenset({255, 256, 257, 258, 260, 261}),
        check="kartra.get_lead(email).calendars lists the lead's bookings",
    ),
    Command(
        "calendar_cancel", Scope.LEAD, Safety.IDEMPOTENT,
        "a repeat finds nothing to cancel (259) and changes nothing",
        params=(
            _p("calendar_name", _name, required=True),
            _p("class_name", _name, required=True),
        ),
        success_code=113, error_codes=frozenset({255, 256, 257, 258, 259}),
    ),
    Command(
        "retrieve_transactions_from_lead", Scope.LEAD, Safety.READ_ONLY, "only reads",
        result_key="transaction_list", result=list[TransactionSummary],
        single_form="unwrapped", error_codes=_NOT_FOUND,
    ),
    Command(
        "retrieve_subscriptions_from_lead", Scope.LEAD, Safety.READ_ONLY, "only reads",
        result_key="subscriptions_list", result=list[SubscriptionSummary],
        single_form="unwrapped", error_codes=_NOT_FOUND,
    ),
    # ---- account
    Command(
        "create_custom_field", Scope.ACCOUNT, Safety.UNSAFE,
        "a repeat answers 264 'already exists' and hides that the first one succeeded",
        params=(
            _p("identifier", _identifier, wire="custom_field_identifier", required=True),
            _p("type", _choice(CUSTOM_FIELD_TYPES), wire="custom_field_type", required=True),
            _p("options", _options, wire="custom_field_options"),
        ),
        rules=(_options_match_type,), success_code=114,
        check="kartra.account.custom_fields() lists the field if it was created",
        error_codes=frozenset({263, 264, 265, 269, 270, 272, 273}),
    ),
    Command(
        "search_transaction", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
        params=(_p("transaction_id", _ID, required=True),), error_codes=frozenset({247}),
    ),
    Command(
        "refund_transaction", Scope.ACCOUNT, Safety.UNSAFE,
        "moves money: partial refunds add up; a repeat may refund twice",
        params=(
            _p("transaction_id", _ID, required=True),
            _p("amount", _decimal(minimum=Decimal(0), exclusive_min=True), wire="refund_amount"),
        ),
        result=RefundResult, single_form="unwrapped",
        error_codes=frozenset({247, 250, 251, 253, 266, 268}),
        check="kartra.lead(email).transactions() lists a refund transaction if one was made",
    ),
    Command(
        "edit_subscription", Scope.ACCOUNT, Safety.UNSAFE,
        "changes billing; a repeat after another change (or a charge) may undo or redo it",
        params=(
            _p("subscription_id", _ID, required=True),
            _p("product_id", _ID, wire="subscription_product_id"),
            _p("price_point", _ID, wire="subscription_price_point"),
            _p("next_payment_date", _payment_date, wire="subscription_next_payment_date"),
            _p(
                "amount",
                _decimal(minimum=Decimal("1.00"), maximum=Decimal("9999.99")),
                wire="subscription_amount",
            ),
            _p("recurrence", _recurrence, wire="subscription_recurrence"),
            _p("quantity", _integer(minimum=1, maximum=9999), wire="subscription_product_quantity"),
            _p("installments_left", _installments, wire="subscription_installments_left"),
            _p(
                "tax_percent",
                _decimal(minimum=Decimal(0), maximum=Decimal(100)),
                wire="subscription_tax_percent",
            ),
        ),
        rules=(_subscription_edit,), success_code=115, single_form="wrapped",
        check="kartra.subscriptions.get(id) shows the subscription's current settings",
        error_codes=frozenset(
            {248, 260, 261, 268, 275, 276, 277, 278, 280, 281, 282, 283, 284, 285, 290}
        ),
    ),
    Command(
        "cancel_transaction", Scope.ACCOUNT, Safety.UNSAFE,
        "cancels a paying subscription; a repeat answers 252 and hides the first result",
        params=(
            _p("transaction_id", _ID),
            _p("subscription_id", _ID, wire="transaction_internal_subscription_id"),
        ),
        rules=(_either("transaction_id", "transaction_internal_subscription_id"),),
        result=CancelResult, single_form="unwrapped",
        error_codes=frozenset({248, 249, 252, 253, 267}),
        check="kartra.subscriptions.get(id).subscription_status shows Cancelled if it was",
    ),
    Command(
        "modify_subscription_status", Scope.ACCOUNT, Safety.UNSAFE,
        "pause/unpause/cancel change billing; a repeat after another change reverts it",
        params=(
            _p("subscription_id", _ID, required=True),
            _p(
                "status",
                _choice(("cancel", "unpause", "pause")),
                wire="subscription_status_modification",
                required=True,
            ),
        ),
        success_code=115, single_form="wrapped",
        error_codes=frozenset({248, 252, 267, 274, 275, 284}),
        check="kartra.subscriptions.get(id).subscription_status shows the status now",
    ),
    Command(
        "search_subscription", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
        params=(_p("subscription_id", _ID, wire="transaction_internal_subscription_id",
                   required=True),),
        error_codes=frozenset({248}),
    ),
    Command(
        "get_subscription_details", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
        params=(_p("subscription_id", _ID, required=True),),
        result_key="subscription_details", result=SubscriptionDetails, data_required=True,
        single_form="unwrapped", error_codes=frozenset({248}),
    ),
    Command(
        "get_transaction_details", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
        params=(_p("transaction_id", _ID, required=True),),
        result_key="transaction_details", result=TransactionDetails, data_required=True,
        single_form="unwrapped", error_codes=frozenset({247}),
    ),
    Command("retrieve_account_tags", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
            result_key="account_tags", result=list[str]),
    Command("retrieve_account_lists", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
            result_key="account_lists", result=list[str]),
    Command("retrieve_account_sequences", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
            result_key="account_sequences", result=list[str]),
    Command("retrieve_account_pages", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
            result_key="account_pages", result=list[str]),
    Command("retrieve_custom_fields", Scope.ACCOUNT, Safety.READ_ONLY, "only reads",
            result_key="custom_fields", result=list[CustomField]),
)
# fmt: on

COMMANDS: Mapping[str, Command] = MappingProxyType({c.name: c for c in _TABLE})
"""Every documented cmd (and get_lead) by wire name."""


# --------------------------------------------------------------------------- a call


@attrs.frozen
class Call:
    """One compiled HTTP request: the nested payload (no credentials) and its cmds in order."""

    payload: Mapping[str, Any]
    commands: tuple[Command, ...]
    lead_id: int | None = None  #: the lead's id when the call names it by id

    @property
    def safety(self) -> Safety:
        """The least safe cmd of the call decides whether it may be sent again."""
        order = (Safety.READ_ONLY, Safety.IDEMPOTENT, Safety.UNSAFE)
        return max((c.safety for c in self.commands), key=order.index, default=Safety.READ_ONLY)

    @property
    def cmds(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.commands)

    def __reduce__(self) -> tuple[Any, ...]:
        # the rows hold check functions (closures): a Call pickles as its cmd names
        return (_rebuild_call, (dict(self.payload), self.cmds, self.lead_id))


def _rebuild_call(payload: dict[str, Any], cmds: tuple[str, ...], lead_id: int | None) -> Call:
    return Call(payload, tuple(unknown_command(name) for name in cmds), lead_id)


def unknown_command(name: str) -> Command:
    """A stand-in row for a cmd the table does not know (kartra.call): treated as unsafe."""
    return COMMANDS.get(name) or Command(
        name, Scope.ACCOUNT, Safety.UNSAFE, "not in the command table: assumed unsafe"
    )


def ambiguous_error(call: Call, error: KartraError) -> AmbiguousResultError:
    """Say what may or may not have happened, and how to find out (each unsafe row's
    `why` and `check`)."""
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
