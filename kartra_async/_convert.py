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


_OPTION_VALUE = str | list[FieldOption]  # CustomFieldValue.value


class _Generator:
    """Writes the Python source of one model's structuring function (see _fast_attrs_hook)."""

    def __init__(self, conv: cattrs.Converter) -> None:
        self.conv = conv
        self.count = 0
        self.ns: dict[str, Any] = {
            "Mapping": Mapping,
            "_M": _MISSING,
            "_set": object.__setattr__,
            "_new": object.__new__,
            "_iso": datetime.fromisoformat,
            "_comb": datetime.combine,
            "_tz": KARTRA_TZ,
            "_bools": {"0": False, "1": True},
            "_dec": Decimal,
            "_money": _MONEY.fullmatch,
        }

    def bind(self, prefix: str, value: Any) -> str:
        """A fresh global name for `value` in the generated code."""
        self.count += 1
        name = f"{prefix}{self.count}"
        self.ns[name] = value
        return name

    def local(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def scalar(self, tp: Any, v: str, call: str) -> str | None:
        """An inline expression for a value `v` of type `tp`, or None if there is none."""
        inner = tp
        if _is_optional(tp):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            inner = rest[0] if len(rest) == 1 else None
        if inner is str:
            text_ok = f"{v}.__class__ is str" + (f" and {v} != 'N/A'" if inner is not tp else "")
            return f"{v} if {text_ok} else {call}"
        if inner is int:
            return f"{v} if {v}.__class__ is int else int({v}) if {v}.__class__ is str and {v}.isdigit() else {call}"
        if inner is datetime:
            # an unreal date makes fromisoformat raise: `structure` then redoes the whole
            # answer with the explaining converter, which says what is wrong
            d = self.local("d")
            return (
                f"_comb({d}, {d}.time(), _tz) if {v}.__class__ is str and (len({v}) == 19 or len({v}) == 16) "
                f"and {v}[10] == ' ' and {v}[0] != '0' and ({d} := _iso({v})) else {call}"
            )
        if inner is bool:
            r = self.local("r")
            return (
                f"{r} if {v}.__class__ is str and ({r} := _bools.get({v})) is not None else {call}"
            )
        if inner is Decimal:
            return f"_dec({v}) if {v}.__class__ is str and _money({v}) else {call}"
        if isinstance(inner, type) and issubclass(inner, (KartraStrEnum, KartraIntEnum)):
            m, r = self.bind("m", _enum_lookup(inner)), self.local("r")
            return (
                f"{r} if ({v}.__class__ is int and ({r} := {m}.get({v})) is not None) or ({v}.__class__ is str "
                f"and (({r} := {m}.get({v})) is not None or ({r} := {m}.get({v}.casefold())) is not None)) "
                f"else {call}"
            )
        return None

    def inlinable(self, cls: Any, depth: int = 0) -> bool:
        """A dict-based model (no `raw`) of scalars, option lists and lists of such models:
        built in place, in its parent's loop, with no function call per object."""
        if depth > 3 or not (attrs.has(cls) and _plain(cls)) or (cls, "") in _FIELD_HOOKS:
            return False
        attrs.resolve_types(cls)
        for f in attrs.fields(cls):
            if f.name == "raw" or (cls, f.name) in _FIELD_HOOKS:
                return False
            element = typing.get_args(f.type)[0] if typing.get_origin(f.type) is list else None
            simple = self.scalar(f.type, "x", "c") is not None or f.type == _OPTION_VALUE
            if not simple and not (element is not None and self.inlinable(element, depth + 1)):
                return False
        return True

    def model(self, cls: Any, src: str, dst: str, ind: str) -> list[str]:
        """Statements that build `cls` from the mapping in `src` into the variable `dst`."""
        attrs.resolve_types(cls)
        get, c = self.local("get"), self.bind("cls", cls)
        lines = [
            f"{ind}if {src}.__class__ is not dict and not isinstance({src}, Mapping):",
            f"{ind}    raise ValueError('expected an object for {cls.__name__}, got ' + type({src}).__name__)",
            f"{ind}{get} = {src}.get",
        ]
        values, args, has_raw = [], [], False
        for field in attrs.fields(cls):
            if field.name == "raw":
                has_raw = True
                continue
            tp = field.type
            names = field.metadata.get("wire") or (field.name,)
            hook = _FIELD_HOOKS.get((cls, field.name)) or self.conv.get_structure_hook(tp)
            v, a = self.local("v"), self.local("a")
            call = f"{self.bind('h', hook)}({v}, {self.bind('t', tp)})"
            lines.append(f"{ind}{v} = {get}({names[0]!r}, _M)")
            for alternative in names[1:]:
                lines.append(f"{ind}if {v} is _M: {v} = {get}({alternative!r}, _M)")
            if field.default is attrs.NOTHING:
                missing = f"raise ValueError('required field {names[0]} missing')"
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                missing = f"{a} = {self.bind('f', field.default.factory)}()"
            else:
                missing = f"{a} = {self.bind('d', field.default)}"
            element = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
            if (
                element is not None
                and (cls, field.name) not in _FIELD_HOOKS
                and self.inlinable(element)
            ):
                x, y = self.local("x"), self.local("y")
                lines += [
                    f"{ind}if {v} is _M: {missing}",
                    f"{ind}elif {v}.__class__ is list:",
                    f"{ind}    {a} = []",
                    f"{ind}    for {x} in {v}:",
                    *self.model(element, x, y, ind + "        "),
                    f"{ind}        {a}.append({y})",
                    f"{ind}else: {a} = {call}",
                ]
            else:
                expr = self.scalar(tp, v, call)
                if expr is None and tp == _OPTION_VALUE:  # text, or the chosen options
                    fo, fot = (
                        self.bind("e", self.conv.get_structure_hook(FieldOption)),
                        self.bind("et", repeat(FieldOption)),
                    )
                    expr = f"{v} if {v}.__class__ is str else list(map({fo}, {v}, {fot})) if {v}.__class__ is list else {call}"
                if expr is None and element is not None and (cls, field.name) not in _FIELD_HOOKS:
                    e, et = (
                        self.bind("e", self.conv.get_structure_hook(element)),
                        self.bind("et", repeat(element)),
                    )
                    expr = f"list(map({e}, {v}, {et})) if {v}.__class__ is list else {call}"
                lines += [f"{ind}if {v} is _M: {missing}", f"{ind}else: {a} = {expr or call}"]
            values.append(f"{field.name!r}: {a}")
            args.append(f"{field.name}={a}" if field.kw_only else a)
        if _plain(cls):
            # a frozen dict-based model: fill its __dict__ in one step instead of one
            # frozen setattr per field in __init__ (the fields are all known here)
            if has_raw:
                values.append(f"'raw': {src}")
            lines += [
                f"{ind}{dst} = _new({c})",
                f"{ind}_set({dst}, '__dict__', {{{', '.join(values)}}})",
            ]
        else:
            lines.append(f"{ind}{dst} = {c}({', '.join(args)})")
            if has_raw:
                lines.append(f"{ind}_set({dst}, 'raw', {src})")
        return lines


def _plain(cls: Any) -> bool:
    """A dict-based attrs class with nothing to run at init (no validators, converters,
    post-init): its __dict__ can be filled directly."""
    return (
        "__slots__" not in cls.__dict__
        and not getattr(cls, "__attrs_post_init__", None)
        and all(f.validator is None and f.converter is None for f in attrs.fields(cls))
    )


def _fast_attrs_hook(cls: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Generate a structuring function for one model with the common cases inline (a
    value already of the right type, numeric strings, dates, enum lookups, lists of
    small models built in place); anything else goes to the converter's hook for the
    field. It gives the same results as `_attrs_hook`, which explains failures."""
    gen = _Generator(conv)
    lines = ["def structure(o, _):", *gen.model(cls, "o", "obj", "    "), "    return obj"]
    code = compile("\n".join(lines), f"<kartra_async structure {cls.__qualname__}>", "exec")
    exec(code, gen.ns)
    structure: Callable[[Any, Any], Any] = gen.ns["structure"]
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
