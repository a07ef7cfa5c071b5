"""The cattrs converter: the ONE place that knows Kartra's quirks.

Models are structured by cattrs' own generated functions (`make_dict_structure_fn`),
with these hooks, one per rule:

- numbers come as strings ("1234") or ints: `int` reads both, never a bool;
- money is `Decimal`, never float ("300.00", 4, 19.95);
- booleans are "0"/"1"/0/1 and nothing else (cattrs would turn "0" into True);
- dates are US Eastern 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD HH:MM', read as aware
  datetimes in America/New_York;
- "N/A", and for non-text fields "" and "0000-00-00 00:00:00", mean None (Optional fields);
- "Until cancelled" where a count would be is `UntilCancelled.UNTIL_CANCELLED`;
- enums keep values they do not know (see models._base);
- a lead's tags come as [{"tag_name": ...}] or as names;
- get_transaction_details gives one class per transaction_type;
- field names follow the `wire` metadata, including the docs' alternative spellings;
  unknown keys are ignored, and the mapping as sent stays on `.raw`;
- a body that cannot be structured raises KartraDecodeError with cattrs' path-style
  detail: the answer is structured again with detailed validation, only to explain.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.v import format_exception

from ._constants import KARTRA_TZ
from .errors import KartraDecodeError
from .models._base import (
    KartraIntEnum,
    KartraStrEnum,
    UntilCancelled,
    member_of,
    parse_int,
    spellings,
)
from .models.lead import FieldOption, Lead, TransactionType
from .models.payments import (
    CancellationTransaction,
    FailedTransaction,
    RebillTransaction,
    RefundTransaction,
    SaleTransaction,
    Transaction,
    TransactionDetails,
)

__all__ = ["converter", "make_converter", "structure", "structure_int"]

Hook = Callable[[Any, Any], Any]

NONE_SENTINELS = frozenset({"N/A", "", "0000-00-00 00:00:00", "0000-00-00 00:00", "0000-00-00"})


# --------------------------------------------------------------------------- scalars


def structure_int(value: Any, _: Any = int) -> int:
    if value.__class__ is str:
        if value.isascii() and value.isdigit():  # parse_int's common case, inline
            return int(value)
    elif value.__class__ is int:
        return value
    number = parse_int(value)  # a bool, a fraction, a sign, spaces, too many digits
    if number is None:
        raise ValueError(f"expected an integer, got {value!r}")
    return number


def structure_str(value: Any, _: Any = str) -> str:
    if value.__class__ is str:
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def structure_decimal(value: Any, _: Any = Decimal) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"expected an amount, got {value!r}")
    try:
        if isinstance(value, str):
            number = Decimal(value.strip().replace(",", ""))
        elif isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, (int, Decimal)):
            number = Decimal(value)
        else:
            raise ValueError(f"expected an amount, got {value!r}")
    except InvalidOperation:
        raise ValueError(f"expected an amount, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite amount, got {value!r}")
    return number


def structure_bool(value: Any, _: Any = bool) -> bool:
    if value is True or value is False:
        return value
    if (type(value) is int and value in (0, 1)) or value in ("0", "1"):
        return value in (1, "1")
    raise ValueError(f"expected 0 or 1, got {value!r}")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?")


def structure_datetime(value: Any, _: Any = datetime) -> datetime:
    if isinstance(value, str) and _DATE.fullmatch(value):
        naive = datetime.fromisoformat(value)
        return datetime.combine(naive, naive.time(), KARTRA_TZ)  # much faster than replace()
    raise ValueError(f"expected a date 'YYYY-MM-DD HH:MM[:SS]' (US Eastern), got {value!r}")


def structure_installments(value: Any, _: Any = None) -> int | UntilCancelled:
    return member_of(UntilCancelled, value) or structure_int(value)


def structure_tag_names(value: Any, _: Any = None) -> list[str]:
    """Lead.tags: [{"tag_name": "x"}] (get_lead) or ["x"]."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of tags, got {type(value).__name__}")
    names = []
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("tag_name")
        names.append(item if item.__class__ is str else structure_str(item))
    return names


def structure_enum(value: Any, cls: type[enum.Enum]) -> Any:
    """Kartra's open enums (models._base) turn unknown values into UNKNOWN pseudo-members."""
    if value.__class__ is str or value.__class__ is int:
        member = spellings(cls).get(value)  # any other case: the enum's own _missing_
        return cls(value) if member is None else member
    raise ValueError(f"expected a {cls.__name__} value, got {value!r}")


# --------------------------------------------------------------------------- composites


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _optional_hook(tp: Any, conv: cattrs.Converter) -> Hook:
    """`X | None`: None, and Kartra's "nothing here" spellings, are None."""
    rest = tuple(a for a in typing.get_args(tp) if a is not type(None))
    inner: Any = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
    handler = conv.get_structure_hook(inner)
    if inner is str:  # an empty text is a text

        def optional_text(value: Any, _: Any) -> Any:
            if value.__class__ is str:
                return None if value == "N/A" else value
            return None if value is None else handler(value, inner)

        return optional_text
    # the most frequent two, without a second call in the common cases
    if inner is int:

        def optional_int(value: Any, _: Any) -> Any:
            if value.__class__ is str:
                if value.isascii() and value.isdigit():
                    return int(value)
                if value in NONE_SENTINELS:
                    return None
            elif value.__class__ is int or value is None:
                return value
            return structure_int(value)

        return optional_int
    if isinstance(inner, type) and issubclass(inner, (KartraStrEnum, KartraIntEnum)):
        members = spellings(inner)

        def optional_enum(value: Any, _: Any) -> Any:
            if value.__class__ is str or value.__class__ is int:
                member = members.get(value)
                if member is not None:
                    return member
            if value is None or (value.__class__ is str and value in NONE_SENTINELS):
                return None
            return handler(value, inner)

        return optional_enum

    def optional(value: Any, _: Any) -> Any:
        if value is None or (value.__class__ is str and value in NONE_SENTINELS):
            return None
        return handler(value, inner)

    return optional


#: fields read by a hook of their own, not by their type's
_FIELD_HOOKS: Mapping[tuple[type, str], Hook] = {(Lead, "tags"): structure_tag_names}


def _model_hook(cls: Any, conv: cattrs.Converter) -> Hook:
    """cattrs' generated function for an attrs model, with the `wire` names, the field
    hooks and `raw`, refusing anything but a mapping.

    The fast converter calls the generated function alone where nothing is left to do:
    a model with a required field fails on a non-mapping anyway (and the detailed
    converter then says why); a model of optional fields only would take "abc" for {}.
    """
    overrides: dict[str, Any] = {}
    aliases: list[tuple[str, tuple[str, ...]]] = []
    keeps_raw = False
    required = False
    for field in attrs.fields(cls):
        if field.name == "raw":
            overrides["raw"] = override(omit=True)
            keeps_raw = True
            continue
        required = required or field.default is attrs.NOTHING
        names: tuple[str, ...] = field.metadata.get("wire", ())
        hook = _FIELD_HOOKS.get((cls, field.name))
        if names or hook:
            overrides[field.name] = override(rename=names[0] if names else None, struct_hook=hook)
        if len(names) > 1:
            aliases.append((names[0], names[1:]))
    generated: Hook = make_dict_structure_fn(cls, conv, **overrides)
    if required and not aliases and not keeps_raw and not conv.detailed_validation:
        return generated
    name = cls.__name__

    def structure_model(data: Any, _: Any) -> Any:
        if data.__class__ is not dict and not isinstance(data, Mapping):
            raise ValueError(f"expected an object for {name}, got {type(data).__name__}")
        source = data
        for wanted, alternatives in aliases:
            if wanted not in source:
                for alternative in alternatives:
                    if alternative in source:
                        source = {**source, wanted: source[alternative]}
                        break
        model = generated(source, cls)
        if keeps_raw:
            object.__setattr__(model, "raw", data)
        return model

    return structure_model


#: get_transaction_details: transaction_type -> class
TRANSACTION_CLASSES: Mapping[TransactionType, type[Transaction]] = {
    TransactionType.SALE: SaleTransaction,
    TransactionType.REFUND: RefundTransaction,
    TransactionType.PARTIAL_REFUND: RefundTransaction,
    TransactionType.CHARGEBACK: RefundTransaction,
    TransactionType.REBILL: RebillTransaction,
    TransactionType.FAILED: FailedTransaction,
    TransactionType.CANCELLATION: CancellationTransaction,
}


def _transaction_details_hook(conv: cattrs.Converter) -> Hook:
    def structure_transaction(data: Any, _: Any) -> Transaction:
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object for a transaction, got {type(data).__name__}")
        kind = member_of(TransactionType, data.get("transaction_type"))
        cls = TRANSACTION_CLASSES.get(kind, Transaction) if kind else Transaction
        result: Transaction = conv.get_structure_hook(cls)(data, cls)
        return result

    return structure_transaction


def _field_value_hook(conv: cattrs.Converter) -> Hook:
    """CustomFieldValue.value: the text of a text field, or the chosen options."""
    options = conv.get_structure_hook(list[FieldOption])

    def structure_field_value(value: Any, _: Any) -> Any:
        if value.__class__ is str:
            return value
        if value is None:
            return ""
        if isinstance(value, list):
            return options(value, list[FieldOption])
        return structure_str(value)

    return structure_field_value


# --------------------------------------------------------------------------- the converter


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """A converter with every Kartra hook registered (here, and only here).

    Unknown keys are ignored (`forbid_extra_keys=False`): Kartra adds fields without
    notice. `detailed_validation=True` collects every error with its path; `structure`
    uses such a converter only to explain a failure.
    """
    conv = cattrs.Converter(
        detailed_validation=detailed_validation,
        forbid_extra_keys=False,
        prefer_attrib_converters=False,
    )
    conv.register_structure_hook(int, structure_int)
    conv.register_structure_hook(str, structure_str)
    conv.register_structure_hook(Decimal, structure_decimal)
    conv.register_structure_hook(bool, structure_bool)
    conv.register_structure_hook(datetime, structure_datetime)
    # classes dispatch by MRO: the enum bases come before str and int in their members'
    conv.register_structure_hook(KartraStrEnum, structure_enum)
    conv.register_structure_hook(KartraIntEnum, structure_enum)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _model_hook(cls, conv))
    conv.register_structure_hook_factory(_is_optional, lambda tp: _optional_hook(tp, conv))
    conv.register_structure_hook_func(lambda t: t == int | UntilCancelled, structure_installments)
    conv.register_structure_hook_func(
        lambda t: t == str | list[FieldOption], _field_value_hook(conv)
    )
    conv.register_structure_hook_func(
        lambda t: t is TransactionDetails, _transaction_details_hook(conv)
    )
    return conv


converter = make_converter()
"""The converter the SDK uses (stops at the first error)."""


@cache
def _explaining_converter() -> cattrs.Converter:
    return make_converter(detailed_validation=True)


def structure(data: Any, tp: Any, *, what: str = "Kartra's answer") -> Any:
    """Structure `data` into `tp`, or raise KartraDecodeError saying where and why."""
    try:
        return converter.structure(data, tp)
    except Exception as error:
        model = _name(tp)
        reason = f"{what} does not fit {model}: {_explain(data, tp, error)}"
        raise KartraDecodeError(reason, model=model) from error


def _explain(data: Any, tp: Any, error: Exception) -> str:
    """Every problem with its path (at most five), from cattrs' detailed validation."""
    try:
        _explaining_converter().structure(data, tp)
    except Exception as exc:
        return "; ".join(cattrs.transform_error(exc, path="$", format_exception=_describe)[:5])
    return _describe(error, tp)  # the same hooks: not reached unless a hook is not pure


def _describe(exc: BaseException, tp: Any) -> str:
    """Our hooks' ValueErrors say what was expected and what came; keep their words."""
    if type(exc) is ValueError and str(exc):
        return str(exc)
    return format_exception(exc, tp)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("kartra_async.models.", "")
