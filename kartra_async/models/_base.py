"""What every model shares: open enums, wire-name metadata, the `raw` slot, sentinels."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from functools import cache
from typing import Any

import attrs

__all__ = ["KartraIntEnum", "KartraStrEnum", "UntilCancelled", "raw_field", "spellings", "wire"]


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
        member = spellings(cls).get(value.casefold())
        if member is not None:
            return member
        unknown = str.__new__(cls, value)
        unknown._name_ = "UNKNOWN"
        unknown._value_ = value
        return unknown

    @property
    def is_known(self) -> bool:
        """False for a value this SDK version does not know."""
        return self._name_ != "UNKNOWN"


class KartraIntEnum(int, enum.Enum):
    """An int enum that reads "2" or 2 and keeps unknown numbers (name UNKNOWN)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return cls(int(value))
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        unknown = int.__new__(cls, value)
        unknown._name_ = "UNKNOWN"
        unknown._value_ = value
        return unknown

    @property
    def is_known(self) -> bool:
        """False for a value this SDK version does not know."""
        return self._name_ != "UNKNOWN"


class UntilCancelled(enum.Enum):
    """Kartra's "Until cancelled" where a count of installments would be."""

    UNTIL_CANCELLED = "Until cancelled"

    def __repr__(self) -> str:
        return "UNTIL_CANCELLED"


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
