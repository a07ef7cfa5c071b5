"""CSV rows -> lead fields, for `kartra import`: pure functions over a reader.

The file is read once (`read_sheet`): its header is checked, then each record becomes a
`Row` of lead fields or a `Rejected` with its line number and reason (`to_rows`). Custom
field values may name their options; with the account's custom fields at hand they
become the option ids Kartra takes.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .._commands import LEAD_FIELDS, TIME_ZONES
from ..models import CustomField, CustomFieldType

__all__ = ["Rejected", "Row", "Sheet", "UsageError", "read_sheet", "to_rows"]

LEAD_COLUMNS = ("email", *(p.name for p in LEAD_FIELDS if p.name != "custom_fields"))
_TEXT_TYPES = (CustomFieldType.INPUT_FIELD, CustomFieldType.TEXT_AREA)


class UsageError(Exception):
    """Bad input on the command line or in a file's header: exit status 2, a one-line
    message, no traceback."""


@attrs.frozen
class Row:
    """A record that reads as a lead."""

    number: int  #: line number in the file (the header is line 1)
    email: str
    fields: dict[str, Any]


@attrs.frozen
class Rejected:
    """A record that does not, and why."""

    number: int
    reason: str


@attrs.frozen
class Sheet:
    """A CSV file's checked header and its records, read once."""

    name: str  #: the file, for messages
    header: tuple[str, ...]
    records: tuple[tuple[int, dict[str, str]], ...]  #: (line number, column -> value)

    @property
    def custom_columns(self) -> tuple[str, ...]:
        """The custom field identifiers the header names (`cf:<identifier>` columns)."""
        return tuple(h[3:] for h in self.header if h.startswith("cf:"))


def read_sheet(lines: Iterable[str], name: str) -> Sheet:
    """Read a CSV (an `email` column, lead field columns, `cf:<identifier>` columns);
    column names are case-insensitive. Raises UsageError for a header that will not do."""
    reader = csv.reader(lines)
    given = [h.strip() for h in next(reader, [])]
    header = tuple(h.lower() for h in given)
    if "email" not in header:
        raise UsageError(f"{name}: no 'email' column (columns: {', '.join(given) or 'none'})")
    unknown = [
        g
        for g, h in zip(given, header, strict=True)
        if h not in LEAD_COLUMNS and not h.startswith("cf:")
    ]
    if unknown:
        raise UsageError(
            f"{name}: unknown column(s) {', '.join(repr(u) for u in unknown)}; columns are lead "
            f"fields ({', '.join(LEAD_COLUMNS)}) or cf:<custom field identifier>"
        )
    records = []
    number = 1
    for values in reader:
        if not values:
            continue  # a blank line (as csv.DictReader skips them)
        number += 1
        cells = {
            column: value.strip() for column, value in zip(header, values, strict=False) if column
        }
        records.append((number, cells))
    return Sheet(name, header, tuple(records))


def to_rows(
    sheet: Sheet, custom_fields: Mapping[str, CustomField] | None
) -> tuple[list[Row], list[Rejected]]:
    """The sheet's records as lead fields, and the ones rejected with their reason.

    `custom_fields` are the account's (identifier -> definition): with them an unknown
    identifier is rejected and option names become ids; None sends values as written.
    """
    rows: list[Row] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for number, record in sheet.records:
        values = dict(record)
        email = values.pop("email", "")
        try:
            if not email:
                raise ValueError("email is empty")
            if email.lower() in seen:
                raise ValueError(f"{email} appears twice in the file")
            fields = lead_fields(values, custom_fields)
        except ValueError as exc:
            rejected.append(Rejected(number, str(exc)))
            continue
        seen.add(email.lower())
        rows.append(Row(number, email, fields))
    return rows, rejected


def lead_fields(
    values: Mapping[str, str], custom_fields: Mapping[str, CustomField] | None
) -> dict[str, Any]:
    """One record's non-empty cells as create_lead's keywords; ValueError for a value
    that cannot be one."""
    fields: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for column, raw in values.items():
        if not raw:
            continue
        if not column.startswith("cf:"):
            if column == "lead_preferred_time_zone":
                _check_time_zone(raw)
            fields[column] = raw
            continue
        identifier = column[3:]
        definition = (custom_fields or {}).get(identifier)
        if custom_fields is not None and definition is None:
            raise ValueError(f"cf:{identifier}: no such custom field in the account")
        if definition is None or definition.type in _TEXT_TYPES:
            custom[identifier] = raw
        else:
            custom[identifier] = option_ids(definition, raw)
    if custom:
        fields["custom_fields"] = custom
    return fields


def option_ids(definition: CustomField, raw: str) -> int | list[int]:
    """`raw` ("Sales", "620", "Marketing|Sales": names or ids, `|` between several) as
    the option id(s) of a drop-down, radio button or checkbox field."""
    by_name = {o.value.casefold(): o.id for o in definition.options}
    known = {o.id for o in definition.options}
    ids = []
    for part in [p.strip() for p in raw.split("|") if p.strip()]:
        if part.isdigit() and int(part) in known:
            ids.append(int(part))
        elif part.casefold() in by_name:
            ids.append(by_name[part.casefold()])
        else:
            names = ", ".join(o.value for o in definition.options)
            raise ValueError(f"cf:{definition.identifier}: {part!r} is not an option ({names})")
    if definition.type is CustomFieldType.CHECKBOX:
        return ids
    if len(ids) > 1:
        raise ValueError(f"cf:{definition.identifier}: only one option allowed")
    return ids[0] if ids else []


def _check_time_zone(value: str) -> None:
    """Kartra takes one of its own list of time zones; a reason that names the closest
    ones rather than the start of a list of 140."""
    if value in TIME_ZONES:
        return
    close = difflib.get_close_matches(value, TIME_ZONES, n=1, cutoff=0.8)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = (
            f"one of Kartra's {len(TIME_ZONES)} time zones, such as 'America/New_York' or "
            "'Europe/London'"
        )
    raise ValueError(f"lead_preferred_time_zone: {value!r} is not a Kartra time zone; {hint}")
