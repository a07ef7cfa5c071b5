"""Kartra's answers: JSON envelopes in, one `ChainResult` out.

`read_response` turns any of the answer shapes the docs show into one `ChainResult`,
structuring each action's data through `_convert`. Whatever the body, it returns that
or raises a KartraError: JSON nested deeper than MAX_JSON_DEPTH or holding an integer
of more than MAX_INT_DIGITS digits is a KartraResponseError (status + safe excerpt),
and an answer that echoes a credential is redacted before anything keeps it.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from ._commands import Call, Command
from ._constants import BODY_EXCERPT_CHARS, MAX_INT_DIGITS, MAX_JSON_DEPTH
from ._convert import structure
from ._scrub import NO_SECRETS, Redactor
from .errors import (
    KartraAPIError,
    KartraDecodeError,
    KartraError,
    KartraResponseError,
    error_from_code,
)
from .models._base import parse_int
from .models.lead import Lead, LeadRef
from .models.results import ActionResult, ChainResult

__all__ = ["excerpt", "parse_json", "read_response", "retry_after"]


# --------------------------------------------------------------------------- decoding


def _redactor(secrets: Redactor | Sequence[str]) -> Redactor:
    return secrets if isinstance(secrets, Redactor) else Redactor(secrets)


def excerpt(content: bytes | str, secrets: Redactor | Sequence[str] = ()) -> str:
    """The first characters of a body, for error messages, with every spelling of every
    secret blanked out first (so no part of one survives at the cut)."""
    return _redactor(secrets).excerpt(content, BODY_EXCERPT_CHARS)


class _TooBig(ValueError):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS and len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooBig(f"an integer of {len(digits.lstrip('-')):,} digits")
    return int(digits)


_DECODER = json.JSONDecoder(parse_int=_bounded_int)


def _too_deep(value: Any) -> bool:
    """Whether a parsed value nests containers deeper than MAX_JSON_DEPTH (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def parse_json(content: bytes) -> Any:
    """Parse a JSON body within the bounds (depth, integer size); ValueError says why."""
    if content.startswith(codecs.BOM_UTF8):
        content = content[3:]
    try:
        text = content.decode()
    except UnicodeDecodeError:
        raise ValueError("is not valid JSON (not UTF-8)") from None
    try:
        value = _DECODER.decode(text)
    except _TooBig as exc:
        raise ValueError(f"holds {exc} (at most {MAX_INT_DIGITS})") from None
    except RecursionError:
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise ValueError("is not valid JSON") from None
    # only a body with more containers than the limit can nest deeper than it
    if (
        isinstance(value, (dict, list))
        and content.count(b"[") + content.count(b"{") > MAX_JSON_DEPTH
        and _too_deep(value)
    ):
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


_ENVELOPE_KEYS = frozenset({"status", "message", "type"})


def _code(value: Any) -> int | None:
    """An envelope's `type`: absent or "" is None, anything but an integer is a ValueError."""
    if value is None or value == "":
        return None
    code = parse_int(value)
    if code is None:
        raise ValueError(value)
    return code


def _message(value: Any) -> str | None:
    """Kartra's message, if it is a string; an absurdly long one is cut."""
    if not isinstance(value, str):
        return None
    return value if len(value) <= _MESSAGE_CHARS else value[:_MESSAGE_CHARS] + "..."


_MESSAGE_CHARS = 1000


def _as_list(value: Any) -> list[Any] | None:
    """`actions` is a JSON array, or an object with keys "0", "1", ... (PHP's json_encode)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        try:
            keys = sorted(value, key=int)
        except (TypeError, ValueError):
            return None
        return [value[k] for k in keys]
    return None


def _lead_id_of(data: Any) -> int | None:
    if isinstance(data, (LeadRef, Lead)):
        return data.id
    if isinstance(data, Mapping):
        details = data.get("lead_details", data)
        if isinstance(details, Mapping):
            return parse_int(details.get("id"))
    return None


def _attribute(code: int | None, commands: Sequence[Command]) -> int | None:
    """Which action a call-level error is about: the only one, or the only one documenting it."""
    if len(commands) == 1:
        return 0
    owners = [i for i, c in enumerate(commands) if code is not None and code in c.error_codes]
    return owners[0] if len(owners) == 1 else None


def _action(index: int, command: Command, raw: Any, fail: Any) -> ActionResult:
    if not isinstance(raw, Mapping):
        raise fail(f"action {index} ({command.name}) is not an object")
    status = raw.get("status")
    if status not in (None, "Success", "Error"):
        raise fail(f"action {index} ({command.name}) has status {status!r}")
    try:
        code = _code(raw.get("type"))
    except ValueError:
        raise fail(f"action {index} ({command.name}) has type {raw.get('type')!r}") from None
    message = _message(raw.get("message"))
    ok = status != "Error"
    error: KartraAPIError | None = None
    data: Any = None
    if ok:
        if command.result_key is not None:
            data = raw.get(command.result_key)
        else:
            rest = {k: v for k, v in raw.items() if k not in _ENVELOPE_KEYS}
            data = rest or None
        if data is None and command.data_required:
            raise fail(f"action {index} ({command.name}) has no {command.result_key}")
        if data is not None and command.result is not None:
            try:
                data = structure(data, command.result, what=f"action {index} ({command.name})")
            except KartraDecodeError as exc:
                raise fail(exc.reason, model=exc.model) from exc
    else:
        error = error_from_code(code, message, cmd=command.name, action_index=index, raw=raw)
    return ActionResult(
        index=index, cmd=command.name, ok=ok, code=code, message=message, data=data,
        error=error, raw=raw,
    )  # fmt: skip


_REASON_CHARS = 500


def read_response(
    status_code: int,
    content: bytes,
    call: Call,
    *,
    secrets: Redactor | Sequence[str] = (),
) -> ChainResult:
    """Read Kartra's answer to `call` into a ChainResult.

    Accepts every form the docs show: per-action results in `actions[i][cmd]`,
    results keyed by cmd without the `actions` wrapper (`{"refund_transaction": {...}}`),
    and a single action's result at the top level (`{"status": "Success",
    "account_tags": [...]}`). A top-level `status: Error`, or the failure of a call's
    only action, raises the typed KartraAPIError; anything unreadable raises
    KartraResponseError.
    """
    redactor = _redactor(secrets) if secrets else NO_SECRETS

    def fail(reason: str, *, model: str | None = None) -> KartraResponseError:
        """The error for an unreadable answer; with `model`, for data that did not fit it."""
        reason = redactor.text(reason[: _REASON_CHARS * 2])
        if len(reason) > _REASON_CHARS:
            reason = reason[:_REASON_CHARS] + "..."
        body = excerpt(content, redactor)
        if model is not None:
            return KartraDecodeError(reason, status_code=status_code, excerpt=body, model=model)
        return KartraResponseError(reason, status_code=status_code, excerpt=body)

    try:
        body = parse_json(content)
    except ValueError as exc:
        raise fail(f"Kartra's answer {exc}") from None
    if not isinstance(body, dict):
        raise fail(f"Kartra's answer is a JSON {type(body).__name__}, not an object")
    try:
        result = _read(body, call, fail)
    except KartraError:
        if not redactor.found_in(content):
            raise
        result = None
    if result is None or (not result.ok and redactor.found_in(content)):
        # an error built from an answer that echoes a secret: build it again, outside
        # the except block (no __context__ keeps the first one), from a redacted copy
        result = _read(redactor.scrub(body), call, fail)
    return result


def _read(body: dict[str, Any], call: Call, fail: Any) -> ChainResult:
    try:
        return _read_body(body, call, fail)
    except (ValueError, TypeError, LookupError, RecursionError, OverflowError) as exc:
        raise fail(f"Kartra's answer could not be read ({type(exc).__name__})") from None


def _read_body(body: dict[str, Any], call: Call, fail: Any) -> ChainResult:
    commands = call.commands
    status = body.get("status")
    raw_actions: list[Any] | None
    if "actions" in body:
        raw_actions = _as_list(body["actions"])
        if raw_actions is None:
            raise fail("'actions' in Kartra's answer is not a list")
        if status == "Error" and not raw_actions:
            raw_actions = None
    elif (
        (commands[0].name in body) if len(commands) == 1 else any(c.name in body for c in commands)
    ):
        raw_actions = [{c.name: body.get(c.name)} for c in commands]
    else:
        raw_actions = None

    if status not in ("Success", "Error") and not (status is None and raw_actions is not None):
        if status is None:
            raise fail("Kartra's answer has no 'status'")
        raise fail(f"Kartra's answer has an unknown status {status!r}")

    if status == "Error" and raw_actions is None:
        try:
            code = _code(body.get("type"))
        except ValueError:
            raise fail(f"Kartra's error has type {body.get('type')!r}") from None
        index = _attribute(code, commands)
        raise error_from_code(
            code,
            _message(body.get("message")),
            cmd=commands[index].name if index is not None else None,
            action_index=index,
            raw=body,
        )

    if raw_actions is None:
        if len(commands) != 1:
            raise fail(f"Kartra's answer has no per-action results for {len(commands)} actions")
        actions = [_action(0, commands[0], body, fail)]
    else:
        if len(raw_actions) != len(commands):
            raise fail(
                f"Kartra answered {len(raw_actions)} action results for {len(commands)} actions"
            )
        actions = []
        for i, (command, entry) in enumerate(zip(commands, raw_actions, strict=True)):
            if not isinstance(entry, Mapping) or command.name not in entry:
                raise fail(f"action {i} of Kartra's answer is not a result of {command.name}")
            actions.append(_action(i, command, entry[command.name], fail))

    if len(actions) == 1 and actions[0].error is not None:
        # one action: its failure is the call's, whichever shape the answer has (the
        # docs print it flat, like a call-level error; clients also see it in actions[])
        raise actions[0].error

    lead_id = call.lead_id
    for command, result in zip(commands, actions, strict=True):
        if lead_id is None and result.ok and command.names_lead:
            lead_id = _lead_id_of(result.data)
    if lead_id is None:
        lead_id = _lead_id_of(body.get("lead_details"))
    return ChainResult(actions=tuple(actions), lead_id=lead_id, raw=body)
