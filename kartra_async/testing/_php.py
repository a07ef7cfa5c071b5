"""PHP's `parse_str`, written from PHP's rules (not from the SDK's encoder), and
PHP's `json_encode` output style, so the fake reads and answers like Kartra's PHP."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["PhpArray", "json_encode", "parse_str", "values"]

PhpArray = dict[str, Any]
"""A PHP array: an ordered map. Integer keys are kept as their decimal strings."""


#: PHP's default max_input_nesting_level: a variable nested deeper is dropped
MAX_NESTING = 64
_INT_KEY = re.compile(r"0|-?[1-9][0-9]{0,18}")


def _int_key(key: str) -> int | None:
    """The integer PHP makes of an array key ("5", "-3"; not "05", "²" or beyond 64 bits)."""
    if _INT_KEY.fullmatch(key):
        number = int(key)
        if -(2**63) <= number < 2**63:
            return number
    return None


def _base_name(raw: str) -> tuple[str, str]:
    """Split `a[b][c]` into the variable name and the bracketed rest, as PHP's
    php_register_variable_ex does: leading spaces are dropped; in the name ' ' and '.'
    become '_'; a '[' with no ']' after it is no index, and then every ' ', '.' and '['
    of the key becomes '_'; a key that starts with '[' has no name and is dropped."""
    raw = raw.lstrip(" ")
    open_at = raw.find("[")
    if open_at == 0:
        return "", ""
    if open_at < 0:
        return raw.replace(" ", "_").replace(".", "_"), ""
    if "]" not in raw[open_at:]:
        return raw.replace(" ", "_").replace(".", "_").replace("[", "_"), ""
    return raw[:open_at].replace(" ", "_").replace(".", "_"), raw[open_at:]


def _segments(rest: str) -> list[str]:
    """'[b][][c]' -> ['b', '', 'c']; PHP ignores anything after a ']' not followed by '['."""
    out = []
    while rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            break
        out.append(rest[1:close])
        rest = rest[close + 1 :]
    return out


def parse_str(body: str) -> PhpArray:
    """Parse a query string into nested PHP arrays, as PHP's `parse_str` does (a variable
    nested more than MAX_NESTING levels deep is dropped, as PHP drops it)."""
    result: PhpArray = {}
    #: id(array) -> (array, its largest integer key): PHP's next free index, less one
    largest: dict[int, tuple[PhpArray, int]] = {}
    for pair in body.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        name, rest = _base_name(unquote_plus(raw_key))
        if not name:
            continue
        segments = _segments(rest)
        if len(segments) > MAX_NESTING:
            continue
        value = unquote_plus(raw_value)
        keys = [name, *segments]
        target = result
        for i, key in enumerate(keys):
            if key in ("", " ") and i > 0:  # 'a[]' and 'a[ ]' append
                number: int | None = largest.get(id(target), (target, -1))[1] + 1
                key = str(number)
            else:
                number = _int_key(key)
                if number is not None:
                    key = str(number)
            if number is not None and number > largest.get(id(target), (target, -(2**63)))[1]:
                largest[id(target)] = (target, number)
            if i == len(keys) - 1:
                target[key] = value
            else:
                child = target.get(key)
                if not isinstance(child, dict):
                    child = target[key] = {}
                target = child
    return result


def values(array: Any) -> list[Any] | None:
    """A PHP array's values in order (what `foreach` sees), or None if it is not an array."""
    if isinstance(array, dict):
        return list(array.values())
    return None


def json_encode(value: Any) -> bytes:
    """Like PHP's json_encode: compact, non-ASCII as \\u escapes, '/' escaped as '\\/'."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()
