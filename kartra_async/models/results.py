"""What a sent chain gives back: one ChainResult holding one ActionResult per action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import ChainError, KartraAPIError

__all__ = ["ActionResult", "ChainResult"]


@attrs.frozen
class ActionResult:
    """The result of one action of a chain, in the order the actions were chained."""

    index: int
    cmd: str
    ok: bool
    code: int | None  #: Kartra's message type (101 ... 290), None when Kartra sent none
    message: str | None
    data: Any = None  #: the action's payload (e.g. lead details, a transaction list)
    error: KartraAPIError | None = attrs.field(default=None, eq=False)
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class ChainResult:
    """Kartra's answer to one request."""

    actions: tuple[ActionResult, ...]
    lead_id: int | None = None  #: the lead's id when the answer (or the chain) names it
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def ok(self) -> bool:
        """True when every action succeeded."""
        return all(a.ok for a in self.actions)

    @property
    def errors(self) -> tuple[KartraAPIError, ...]:
        """One KartraAPIError per failed action, in order."""
        return tuple(a.error for a in self.actions if a.error is not None)

    def raise_for_errors(self) -> ChainResult:
        """Raise ChainError listing each failed action (index and code); return self if none."""
        errors = self.errors
        if errors:
            raise ChainError(errors, self)
        return self

    def __getitem__(self, index: int) -> ActionResult:
        return self.actions[index]

    def __len__(self) -> int:
        return len(self.actions)
