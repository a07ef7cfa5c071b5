"""The cattrs converter: the ONE place that knows Kartra's quirks.

Hooks, one per rule:

- numbers come as strings ("1234") or ints: `int` reads both, never a bool;
- money is `Decimal`, never float ("300.00", 4, 19.95);
- booleans are "0"/"1"/0/1 and nothing else (cattrs would turn "0" into True);
- dates are US Eastern 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD HH:MM', read as aware
  datetimes in America/New_York;
- "N/A", and for non-text fields "" and "0000-00-00 00:00:00", mean None (Optional fields);
- "Until cancelled" where a count would be is `UntilCancelled.UNTIL_CANCELLED`;
- enums keep values they do not know (see models._base);
- field names follow the `wire` metadata, including the docs' alternative spellings;
  unknown keys are ignored, and the mapping as sent stays on `.raw`;
- a body that cannot be structured raises KartraResponseError with cattrs' path-style detail.
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
from itertools import repeat
from typing import Any, TypeVar, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.v import format_exception

from ._constants import KARTRA_TZ
from .errors import KartraResponseError
from .models._base import KartraIntEnum, KartraStrEnum, UntilCancelled
from .models.lead import FieldOption, Lead
from .models.payments import (
    CancellationTransaction,
    FailedTransaction,
    RebillTransaction,
    RefundTransaction,
    SaleTransaction,
    Transaction,
    TransactionDetails,
)

__all__ = ["converter", "make_converter", "structure"]

T = TypeVar("T")

NONE_SENTINELS = frozenset({"N/A", "", "0000-00-00 00:00:00", "0000-00-00 00:00", "0000-00-00"})
TEXT_NONE_SENTINELS = frozenset({"N/A"})


# --------------------------------------------------------------------------- scalars


def structure_int(value: Any, _: Any = int) -> int:
    if value.__class__ is int:
        return int(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        text = value.strip()
        if text.isdigit() or (text[:1] in "+-" and text[1:].isdigit()):
            return int(text)
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


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
        return datetime.fromisoformat(value).replace(tzinfo=KARTRA_TZ)
    raise ValueError(f"expected a date 'YYYY-MM-DD HH:MM[:SS]' (US Eastern), got {value!r}")


def structure_installments(value: Any, _: Any = None) -> int | UntilCancelled:
    if isinstance(value, str) and value.strip().casefold() == "until cancelled":
        return UntilCancelled.UNTIL_CANCELLED
    return structure_int(value)


def structure_tag_names(value: Any, _: Any = None) -> list[str]:
    """Lead.tags: [{"tag_name": "x"}] (get_lead) or ["x"]."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of tags, got {type(value).__name__}")
    names = []
    for item in value:
        if item.__class__ is dict or isinstance(item, Mapping):
            item = item.get("tag_name")
        names.append(item if item.__class__ is str else structure_str(item))
    return names


def structure_enum(value: Any, cls: type[enum.Enum]) -> Any:
    """Kartra's open enums (models._base) turn unknown values into UNKNOWN pseudo-members."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        member = _enum_lookup(cls).get(value)
        if member is not None:
            return member
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return cls(value)
    raise ValueError(f"expected a {cls.__name__} value, got {value!r}")


_SCALARS: Mapping[type, Callable[[Any, Any], Any]] = {
    int: structure_int,
    str: structure_str,
    Decimal: structure_decimal,
    bool: structure_bool,
    datetime: structure_datetime,
}


# --------------------------------------------------------------------------- factories


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _is_optional(tp: Any) -> bool:
    args = _union_args(tp)
    return args is not None and type(None) in args


def _optional_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    rest = tuple(a for a in typing.get_args(tp) if a is not type(None))
    inner: Any = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
    handler = conv.get_structure_hook(inner)
    if inner is str:

        def optional_text(value: Any, _: Any) -> Any:
            if value.__class__ is str:
                return None if value == "N/A" else value
            return None if value is None else handler(value, inner)

        return optional_text
    exact = inner if isinstance(inner, type) and not issubclass(inner, enum.Enum) else None

    def optional(value: Any, _: Any) -> Any:
        if value.__class__ is exact:
            return value
        if value is None or (value.__class__ is str and value in NONE_SENTINELS):
            return None
        return handler(value, inner)

    return optional


def _attrs_hook(cls: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    overrides: dict[str, Any] = {}
    aliases: list[tuple[str, ...]] = []
    has_raw = False
    for field in attrs.fields(cls):
        if field.name == "raw":
            overrides["raw"] = override(omit=True)
            has_raw = True
            continue
        names = field.metadata.get("wire")
        hook = _FIELD_HOOKS.get((cls, field.name))
        if names or hook:
            overrides[field.name] = override(rename=names[0] if names else None, struct_hook=hook)
        if names and len(names) > 1:
            aliases.append(names)
    generated = make_dict_structure_fn(cls, conv, **overrides)

    def structure_model(data: Any, _: Any) -> Any:
        if data.__class__ is not dict and not isinstance(data, Mapping):
            raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
        source = data
        for names in aliases:
            if names[0] not in source:
                for alternative in names[1:]:
                    if alternative in source:
                        source = {**source, names[0]: source[alternative]}
                        break
        model = generated(source, cls)
        if has_raw:
            object.__setattr__(model, "raw", data)
        return model

    return structure_model


_MISSING = object()


_MONEY = re.compile(r"-?\d+(?:\.\d+)?")


@cache
def _enum_lookup(cls: type[enum.Enum]) -> dict[Any, Any]:
    """Every spelling of each member Kartra uses: the value, its str() and casefold()."""
    lookup: dict[Any, Any] = {}
    for member in cls:
        value = member.value
        lookup[str(value)] = lookup[str(value).casefold()] = lookup[value] = member
    return lookup


def _fast_attrs_hook(cls: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Generate a structuring function for one model with the common cases inline (a
    value already of the right type, numeric strings, dates, enum lookups, lists of
    models); anything else goes to the converter's hook for the field. It gives the
    same results as `_attrs_hook`, which explains failures (detailed validation)."""
    attrs.resolve_types(cls)
    ns: dict[str, Any] = {
        "Mapping": Mapping,
        "_M": _MISSING,
        "cls": cls,
        "_set": object.__setattr__,
        "_new": object.__new__,
        "_iso": datetime.fromisoformat,
        "_comb": datetime.combine,
        "_tz": KARTRA_TZ,
        "_bools": {"0": False, "1": True},
        "_dec": Decimal,
        "_money": _MONEY.fullmatch,
    }
    lines = [
        "def structure(o, _):",
        "    if o.__class__ is not dict and not isinstance(o, Mapping):",
        f"        raise ValueError('expected an object for {cls.__name__}, got ' + type(o).__name__)",
        "    get = o.get",
    ]
    args = []
    has_raw = False
    for i, field in enumerate(attrs.fields(cls)):
        if field.name == "raw":
            has_raw = True
            continue
        tp = field.type
        names = field.metadata.get("wire") or (field.name,)
        hook = _FIELD_HOOKS.get((cls, field.name)) or conv.get_structure_hook(tp)
        ns[f"h{i}"], ns[f"t{i}"] = hook, tp
        call = f"h{i}(v, t{i})"
        inner = tp
        if _is_optional(tp):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            inner = rest[0] if len(rest) == 1 else None
        if inner is str:
            text_ok = "v.__class__ is str" + (" and v != 'N/A'" if inner is not tp else "")
            expr = f"v if {text_ok} else {call}"
        elif inner is int:
            expr = f"v if v.__class__ is int else int(v) if v.__class__ is str and v.isdigit() else {call}"
        elif inner is datetime:
            # an unreal date makes fromisoformat raise: `structure` then redoes the whole
            # answer with the explaining converter, which says what is wrong
            expr = (
                f"_comb(d, d.time(), _tz) if v.__class__ is str and (len(v) == 19 or len(v) == 16) "
                f"and v[10] == ' ' and v[0] != '0' and (d := _iso(v)) else {call}"
            )
        elif inner is bool:
            expr = f"r if v.__class__ is str and (r := _bools.get(v)) is not None else {call}"
        elif inner is Decimal:
            expr = f"_dec(v) if v.__class__ is str and _money(v) else {call}"
        elif isinstance(inner, type) and issubclass(inner, (KartraStrEnum, KartraIntEnum)):
            ns[f"m{i}"] = _enum_lookup(inner)
            expr = (
                f"r if (v.__class__ is int and (r := m{i}.get(v)) is not None) or (v.__class__ is str "
                f"and ((r := m{i}.get(v)) is not None or (r := m{i}.get(v.casefold())) is not None)) "
                f"else {call}"
            )
        elif typing.get_origin(tp) is list and (cls, field.name) not in _FIELD_HOOKS:
            (element,) = typing.get_args(tp)
            ns[f"e{i}"], ns[f"et{i}"] = conv.get_structure_hook(element), repeat(element)
            expr = f"list(map(e{i}, v, et{i})) if v.__class__ is list else {call}"
        else:
            expr = call
        lines.append(f"    v = get({names[0]!r}, _M)")
        for alternative in names[1:]:
            lines.append(f"    if v is _M: v = get({alternative!r}, _M)")
        if field.default is attrs.NOTHING:
            lines.append(f"    if v is _M: raise ValueError('required field {names[0]} missing')")
            lines.append(f"    a{i} = {expr}")
        else:
            if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                ns[f"f{i}"] = field.default.factory
                default = f"f{i}()"
            else:
                ns[f"d{i}"] = field.default
                default = f"d{i}"
            lines.append(f"    a{i} = {default} if v is _M else {expr}")
        args.append(f"{field.name}=a{i}" if field.kw_only else f"a{i}")
    plain = "__slots__" not in cls.__dict__ and not getattr(cls, "__attrs_post_init__", None)
    plain = plain and all(f.validator is None and f.converter is None for f in attrs.fields(cls))
    if plain:
        # a frozen dict-based model: fill its __dict__ in one step instead of one
        # frozen setattr per field in __init__ (the fields are all known here)
        values = [f"{f.name!r}: a{i}" for i, f in enumerate(attrs.fields(cls)) if f.name != "raw"]
        if has_raw:
            values.append("'raw': o")
        lines.append("    obj = _new(cls)")
        lines.append(f"    _set(obj, '__dict__', {{{', '.join(values)}}})")
    else:
        lines.append(f"    obj = cls({', '.join(args)})")
        if has_raw:
            lines.append("    _set(obj, 'raw', o)")
    lines.append("    return obj")
    code = compile("\n".join(lines), f"<kartra_async structure {cls.__qualname__}>", "exec")
    exec(code, ns)
    structure: Callable[[Any, Any], Any] = ns["structure"]
    return structure


_FIELD_HOOKS: dict[tuple[type, str], Callable[[Any, Any], Any]] = {
    (Lead, "tags"): structure_tag_names,
}

#: get_transaction_details: transaction_type -> class
TRANSACTION_CLASSES: Mapping[str, type[Transaction]] = {
    "sale": SaleTransaction,
    "refund": RefundTransaction,
    "partial_refund": RefundTransaction,
    "chargeback": RefundTransaction,
    "rebill": RebillTransaction,
    "failed": FailedTransaction,
    "cancellation": CancellationTransaction,
}


def _transaction_details_hook(conv: cattrs.Converter) -> Callable[[Any, Any], Transaction]:
    def hook(data: Any, _: Any) -> Transaction:
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object for a transaction, got {type(data).__name__}")
        kind = data.get("transaction_type")
        cls = TRANSACTION_CLASSES.get(kind.casefold() if isinstance(kind, str) else "", Transaction)
        result: Transaction = conv.structure(data, cls)
        return result

    return hook


def _field_value_hook(conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """CustomFieldValue.value: the text of a text field, or the chosen options."""
    options: list[Callable[[Any, Any], Any]] = []  # FieldOption's hook, found on first use

    def hook(value: Any, _: Any) -> Any:
        if value.__class__ is str:
            return value
        if value is None:
            return ""
        if isinstance(value, list):
            if not options:
                options.append(conv.get_structure_hook(FieldOption))
            structure_option = options[0]
            return [structure_option(item, FieldOption) for item in value]
        return structure_str(value)

    return hook


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """Build the converter with every Kartra hook registered.

    `detailed_validation=True` collects every error with its path (slower; used to
    explain a failure).
    """
    conv = cattrs.Converter(detailed_validation=detailed_validation)
    # cattrs dispatches classes by MRO: the enum bases come before str and int in
    # their members' MRO, so the enums get structure_enum, not the str/int hooks
    for tp, hook in _SCALARS.items():
        conv.register_structure_hook(tp, hook)
    conv.register_structure_hook(KartraStrEnum, structure_enum)
    conv.register_structure_hook(KartraIntEnum, structure_enum)
    models = _attrs_hook if detailed_validation else _fast_attrs_hook
    conv.register_structure_hook_factory(attrs.has, lambda cls: models(cls, conv))
    conv.register_structure_hook_factory(_is_optional, lambda t: _optional_hook(t, conv))
    conv.register_structure_hook_func(lambda t: t == (int | UntilCancelled), structure_installments)
    conv.register_structure_hook_func(
        lambda t: t == (str | list[FieldOption]), _field_value_hook(conv)
    )
    conv.register_structure_hook_func(
        lambda t: t is TransactionDetails, _transaction_details_hook(conv)
    )
    return conv


converter = make_converter()
"""The converter the SDK uses (fast: stops at the first error)."""


@cache
def _explaining_converter() -> cattrs.Converter:
    return make_converter(detailed_validation=True)


def structure(data: Any, tp: Any, *, what: str = "Kartra's answer") -> Any:
    """Structure `data` into `tp`, or raise KartraResponseError saying where and why."""
    try:
        return converter.structure(data, tp)
    except Exception as fast_error:
        try:
            return _explaining_converter().structure(data, tp)
        except Exception as exc:
            details = cattrs.transform_error(exc, path="$", format_exception=_describe)
            raise KartraResponseError(
                f"{what} does not fit {_name(tp)}: " + "; ".join(details[:5])
            ) from fast_error


def _describe(exc: BaseException, tp: Any) -> str:
    """Our hooks' ValueErrors say what was expected and what came; keep their words."""
    if type(exc) is ValueError and str(exc):
        return str(exc)
    return format_exception(exc, tp)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("kartra_async.models.", "")
