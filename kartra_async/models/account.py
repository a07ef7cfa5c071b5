"""What the account holds: custom fields (tags, lists, sequences, pages are plain names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._base import raw_field, wire
from .lead import CustomFieldType, FieldOption

__all__ = ["CustomField"]


@attrs.frozen
class CustomField:
    """One custom field of the account (retrieve_custom_fields)."""

    id: int = wire("field_id")
    identifier: str = wire("field_identifier")
    type: CustomFieldType = wire("field_type")
    options: list[FieldOption] = wire("field_value", factory=list)
    raw: Mapping[str, Any] = raw_field()
