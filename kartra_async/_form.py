"""PHP `http_build_query`-compatible form encoding (no package imports).

`encode_form` writes a nested structure the way PHP's `http_build_query` does, so
PHP's `parse_str` on Kartra's side reads it back into the same arrays as the docs'
samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus

__all__ = ["encode_form"]


@lru_cache(maxsize=8192)
def _quote(text: str) -> str:
    # PHP's urlencode: RFC 1738, space as '+', and unlike Python it escapes '~'.
    # Cached: keys, cmd names, tags and lists repeat from call to call.
    quoted = quote_plus(text, safe="")
    return quoted.replace("~", "%7E") if "~" in quoted else quoted


def _float(value: float) -> str:
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _walk(parts: list[str], prefix: str, value: Any) -> None:
    kind = type(value)
    if kind is str:
        parts.append(f"{prefix}={_quote(value)}")
    elif kind is int:
        parts.append(f"{prefix}={value}")
    elif value is None:
        return
    elif kind is bool:
        parts.append(f"{prefix}={'1' if value else '0'}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _walk(parts, f"{prefix}%5B{_quote(str(key))}%5D", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(parts, f"{prefix}%5B{index}%5D", item)
    elif isinstance(value, str):
        parts.append(f"{prefix}={_quote(str(value))}")
    elif isinstance(value, bool):
        parts.append(f"{prefix}={'1' if value else '0'}")
    elif isinstance(value, int):
        parts.append(f"{prefix}={int(value)}")
    elif isinstance(value, Decimal):
        parts.append(f"{prefix}={_quote(format(value, 'f'))}")
    elif isinstance(value, float):
        parts.append(f"{prefix}={_quote(_float(value))}")
    elif isinstance(value, bytes):
        parts.append(f"{prefix}={_quote(value.decode())}")
    else:
        raise TypeError(f"cannot form-encode {type(value).__name__} at {prefix!r}")


def encode_form(data: Mapping[str, Any]) -> str:
    """Encode like PHP's `http_build_query($data)`.

    Nested mappings become `a[b]`, sequences `a[0]`; None and empty arrays are
    dropped; True/False become 1/0; Decimal and float never use exponent notation;
    keys keep their order; brackets are percent-encoded, spaces become '+'.
    """
    parts: list[str] = []
    for key, value in data.items():
        _walk(parts, _quote(str(key)), value)
    return "&".join(parts)
