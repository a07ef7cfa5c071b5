"""Keep a callback secret out of every log line.

The secret of KartraWebhookRouter travels in the URL Kartra posts to, so any access
log (uvicorn's, gunicorn's, a middleware's) would write it down. `redact_in_logs`
registers a secret for the whole process and

- wraps the logging record factory, so every record made by any logger has the secret
  replaced in its message, its arguments, its formatted exception and stack;
- adds a `RedactSecrets` filter to the access and error loggers of uvicorn, gunicorn and
  hypercorn, which also covers `extra=` fields (they are set after the factory ran).

For a handler whose records come from elsewhere, add the filter yourself:
`handler.addFilter(RedactSecrets())` (every registered secret) or
`RedactSecrets("the-secret")` (only that one). A proxy in front of the app (nginx,
a load balancer) keeps its own access log: leave the callback path out of it.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REDACTED", "RedactSecrets", "mask", "redact_in_logs"]

REDACTED = "[REDACTED]"


def mask(value: str) -> str:
    """An App id (or any identifier near a secret) as shown in reprs, logs and limiter
    names: its first three characters, and only when it is longer than six."""
    return f"{value[:3]}***" if len(value) > 6 else "***"


#: loggers whose records carry request paths (the servers' access and error logs)
SERVER_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "gunicorn.access",
    "gunicorn.error",
    "hypercorn.access",
    "hypercorn.error",
)

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _char_pattern(char: str) -> str:
    """The char as written, or percent-encoded in either case, or '+' for a space."""
    if char in _UNRESERVED:
        return re.escape(char)
    encoded = "".join(
        "%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in f"{b:02X}")
        for b in char.encode()
    )
    forms = [re.escape(char), encoded] + (["\\+"] if char == " " else [])
    return "(?:" + "|".join(forms) + ")"


def _compile(secrets: set[str]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    longest_first = sorted(secrets, key=len, reverse=True)
    return re.compile("|".join("".join(map(_char_pattern, s)) for s in longest_first))


def _redact_value(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        decoded = bytes(value).decode("utf-8", "replace")
        return pattern.sub(REDACTED, decoded) if pattern.search(decoded) else value
    try:
        text, shown = str(value), repr(value)
    except Exception:
        return value
    if pattern.search(text) or pattern.search(shown):
        return pattern.sub(REDACTED, text)
    return value


def _redact_record(record: logging.LogRecord, pattern: re.Pattern[str] | None) -> None:
    if pattern is None:
        return
    record.msg = _redact_value(record.msg, pattern)
    args = record.args
    if isinstance(args, Mapping):
        record.args = {k: _redact_value(v, pattern) for k, v in args.items()}
    elif isinstance(args, tuple):
        record.args = tuple(_redact_value(v, pattern) for v in args)
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if pattern.search(text):
            record.exc_text = pattern.sub(REDACTED, text)
    if record.exc_text:
        record.exc_text = pattern.sub(REDACTED, record.exc_text)
    if record.stack_info:
        record.stack_info = pattern.sub(REDACTED, record.stack_info)
    standard = _STANDARD_ATTRIBUTES
    for name, value in list(vars(record).items()):
        if name not in standard and isinstance(value, str):
            setattr(record, name, pattern.sub(REDACTED, value))


_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_factory_installed = False


class RedactSecrets(logging.Filter):
    """A logging filter that replaces secrets in a record with `[REDACTED]` (it never
    drops a record). Without arguments it redacts every secret given to
    `redact_in_logs` (every KartraWebhookRouter's); with arguments, only those."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self._own = _compile(set(secrets)) if secrets else None

    def __repr__(self) -> str:
        return "RedactSecrets()"

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record, self._own if self._own is not None else _pattern)
        return True


_SHARED_FILTER = RedactSecrets()


def redact_in_logs(secret: str) -> None:
    """Keep `secret` out of every log record of this process from now on (see the
    module docs for how). KartraWebhookRouter calls it with its secret; idempotent."""
    global _pattern, _factory_installed
    with _lock:
        if secret not in _secrets:
            _secrets.add(secret)
            _pattern = _compile(_secrets)
        if not _factory_installed:
            previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                _redact_record(record, _pattern)
                return record

            logging.setLogRecordFactory(factory)
            _factory_installed = True
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if _SHARED_FILTER not in logger.filters:
            logger.addFilter(_SHARED_FILTER)
