"""Blanking secrets out of anything the SDK shows: excerpts, messages, `.raw` mappings.

A server that echoes the request can hand a secret back in many spellings: as sent
(form-encoded, `quote_plus` with PHP's `~` -> `%7E`), percent-encoded with `quote`,
JSON-escaped (with or without `\\uXXXX` escapes, PHP's `\\/`), HTML-escaped, or raw.
`Redactor` knows every one of them, matches them case-insensitively (percent escapes
come in either case), and blanks them BEFORE a text is cut, so no prefix of a secret
survives at the edge of an excerpt.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["BLANK", "Redactor"]

BLANK = "***"
_PERCENT = re.compile(rb"%[0-9A-F]{2}")


def _spellings(secret: str) -> set[str]:
    form = quote_plus(secret, safe="")
    escaped = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        form,
        form.replace("~", "%7E"),
        quote_plus(secret),
        html.escape(secret),
        *escaped,
        *(e.replace("/", "\\/") for e in escaped),
    }


class Redactor:
    """Finds and blanks every known spelling of a set of secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        spellings: set[str] = set()
        for secret in secrets:
            if secret:
                spellings |= _spellings(secret)
        ordered = sorted(spellings, key=len, reverse=True)  # the longest spelling wins
        #: the longest spelling, in characters
        self.longest = len(ordered[0]) if ordered else 0
        self._text = (
            re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None
        )
        # plain substring tests (memmem) are ~100x faster than an IGNORECASE regex: the
        # case only varies in percent escapes, so both cases of those are listed
        needles = {s.encode("utf-8", "surrogatepass") for s in ordered}
        needles |= {_PERCENT.sub(lambda m: m.group().lower(), n) for n in needles}
        self._needles = tuple(needles)

    def __repr__(self) -> str:
        return "<Redactor>"

    def text(self, text: str) -> str:
        """`text` with every spelling of every secret replaced by `***`."""
        if self._text is None:
            return text
        return self._text.sub(BLANK, text)

    def found_in(self, content: bytes) -> bool:
        """Whether `content` may hold a secret: a spelling, or a JSON `\\u` escape that
        could spell one in a way no fixed pattern sees."""
        if b"\\u" in content:
            return bool(self._needles)
        return any(map(content.__contains__, self._needles))

    def scrub(self, value: Any) -> Any:
        """A copy of a parsed JSON value with every string (keys included) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                (self.text(k) if isinstance(k, str) else k): self.scrub(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value

    def excerpt(self, content: bytes | str, chars: int) -> str:
        """The first `chars` characters of `content` after redaction.

        Only a prefix is redacted, long enough that the first `chars` characters of the
        result are those of the whole text redacted: each output character comes from
        at most `longest` input characters, and a match may run `longest` further.
        """
        span = (chars + 2) * max(self.longest, 1) + self.longest
        if isinstance(content, bytes):
            text = content[: 4 * span].decode("utf-8", "replace")
        else:
            text = content
        return self.text(text[:span])[:chars]


NO_SECRETS = Redactor(())
