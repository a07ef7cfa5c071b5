"""What every model shares: open enums, wire-name metadata, the `raw` slot, sentinels."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

import attrs

E = TypeVar("E", bound=enum.Enum)

__all__ = [
    "KartraIntEnum",
    "KartraStrEnum",
    "UntilCancelled",
    "member_of",
    "parse_int",
    "raw_field",
    "spellings",
    "wire",
]


def wire(*names: str, **kwargs: Any) -> Any:
    """An attrs field read from the first of `names` present in Kartra's answer."""
    metadata = {"wire": names}
    return attrs.field(metadata=metadata, **kwargs)


def raw_field() -> Any:
    """The answer's mapping as Kartra sent it (unknown keys included); not compared."""
    return attrs.field(factory=dict, eq=False, repr=False, hash=False, kw_only=True)


class KartraStrEnum(str, enum.Enum):
    """A string enum that keeps values Kartra adds without notice.

    Matching ignores case ("Sale" and "sale" are one member). An unknown value
    gives a pseudo-member named UNKNOWN whose `.value` is the raw string.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        return member_of(cls, value) or _unknown(cls, str.__new__(cls, value), value)

    @property
    def is_known(self) -> bool:
        """False for a value this SDK version does not know."""
        return self._name_ != "UNKNOWN"


class KartraIntEnum(int, enum.Enum):
    """An int enum that reads "2" or 2 and keeps unknown numbers (name UNKNOWN)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        number = parse_int(value) if isinstance(value, (str, int)) else None
        if number is None:
            return None
        return member_of(cls, number) or _unknown(cls, int.__new__(cls, number), number)

    @property
    def is_known(self) -> bool:
        """False for a value this SDK version does not know."""
        return self._name_ != "UNKNOWN"


class UntilCancelled(enum.Enum):
    """Kartra's "Until cancelled" where a count of installments would be."""

    UNTIL_CANCELLED = "Until cancelled"

    @classmethod
    def _missing_(cls, value: object) -> Any:
        return member_of(cls, value)  # "until cancelled", " UNTIL CANCELLED ", ...

    def __repr__(self) -> str:
        return "UNTIL_CANCELLED"


def _unknown(cls: type[enum.Enum], pseudo: Any, value: object) -> Any:
    """A pseudo-member named UNKNOWN for a value Kartra added after this SDK version."""
    pseudo._name_ = "UNKNOWN"
    pseudo._value_ = value
    return pseudo


def parse_int(value: object) -> int | None:
    """THE integer reader, for models, enums and envelopes alike: an int (never a bool),
    a float without a fraction, or a string of ASCII digits with an optional sign and
    surrounding spaces; None for anything else, a string of more digits than Python
    converts (`sys.get_int_max_str_digits()`) included."""
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not (digits.isascii() and digits.isdigit()):
            return None
        try:
            return int(text)
        except ValueError:  # over the int() digit limit
            return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@cache
def spellings(cls: type[enum.Enum]) -> Mapping[Any, Any]:
    """THE case-insensitive lookup of an enum's members: each member under its value,
    its text, and the text casefolded, upper-cased, capitalized and title-cased (the
    spellings Kartra sends, found without folding the value first)."""
    lookup: dict[Any, Any] = {}
    for member in cls:
        text = str(member.value)
        lookup[member.value] = member
        for spelling in (text, text.casefold(), text.upper(), text.capitalize(), text.title()):
            lookup.setdefault(spelling, member)
    return lookup


def member_of(cls: type[E], value: object) -> E | None:
    """THE case-insensitive member lookup: `value` as Kartra spells it, or any other case
    and surrounding spaces; None if it names no member of `cls`."""
    lookup = spellings(cls)
    try:
        member = lookup.get(value)
    except TypeError:  # unhashable
        return None
    if member is None and isinstance(value, str):
        member = lookup.get(value.strip().casefold())
    return member
