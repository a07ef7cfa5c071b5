"""The JSON samples printed in Kartra's docs, read from the docs text itself.

The docs' samples are sloppy JSON (trailing commas, a missing comma, `}` closing
a `[`); `sample()` repairs exactly those faults and nothing else, so every test
structures what the docs print.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# a copy of ../shared/kartra-api/kartra-api-docs.txt, so the suite runs from a bare clone
DOCS = (Path(__file__).parent / "data" / "kartra-api-docs.txt").read_text(encoding="utf-8")

_PAIRS = {"{": "}", "[": "]"}


def _balanced(text: str, start: int) -> str:
    """From the `{` at `start`, the text up to its closing brace, repairing closers
    that do not match their opener (the docs close a list with `}`)."""
    stack: list[str] = []
    out: list[str] = []
    in_string = False
    escaped = False
    for ch in text[start:]:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif ch in "}]":
            if not stack:
                break
            expected = stack.pop()
            if ch != expected:
                # a `}` meant to close a `[` (or the reverse)
                ch = expected
            if not stack:
                out.append(ch)
                break
        out.append(ch)
    while stack:
        out.append(stack.pop())
    return "".join(out)


def repair(text: str) -> str:
    text = re.sub(r'("|\d)(\s*\n\s*)(")', r"\1,\2\3", text)  # a missing comma between members
    return re.sub(r",(\s*[}\]])", r"\1", text)  # trailing commas


def sample(anchor: str, occurrence: int = 1, opener: str = "{") -> Any:
    """The first JSON object (or array, opener="[") printed after the `occurrence`-th
    `anchor` in the docs."""
    index = -1
    for _ in range(occurrence):
        index = DOCS.index(anchor, index + 1)
    start = DOCS.index(opener, index)
    return json.loads(repair(_balanced(DOCS, start)))
