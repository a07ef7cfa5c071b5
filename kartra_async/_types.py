"""Typing helpers shared by the public signatures."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["NOT_GIVEN", "NotGiven"]


class NotGiven:
    """The type of `NOT_GIVEN`: "this argument was not given", where None means
    something (e.g. `limiter=None`: no limiting). Falsy, with a readable repr.

    Examples:
        >>> assert not NOT_GIVEN and repr(NOT_GIVEN) == "NOT_GIVEN"
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
"""The default of arguments whose absence differs from None."""
