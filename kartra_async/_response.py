"""Kartra's answers: JSON envelopes in, one `ChainResult` out.

`read_response` turns any of the answer shapes the docs show into one `ChainResult`,
structuring each action's data through `_convert`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._commands import Call, Command
from ._constants import BODY_EXCERPT_CHARS
from ._convert import parse_int, structure, structure_int
from .errors import KartraAPIError, KartraResponseError, error_from_code
from .models.lead import Lead, LeadRef
from .models.results import ActionResult, ChainResult

__all__ = ["excerpt", "read_response"]


# --------------------------------------------------------------------------- decoding


def excerpt(content: bytes | str, secrets: Sequence[str] = ()) -> str:
    """The first characters of a body, for error messages, with any secret blanked out."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    text = text[: BODY_EXCERPT_CHARS + 100]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = text[:BODY_EXCERPT_CHARS]
    return text


_ENVELOPE_KEYS = frozenset({"status", "message", "type"})


def _code(value: Any) -> int | None:
    return None if value is None or value == "" else structure_int(value)


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


def _to_int(value: Any) -> int | None:
    return parse_int(value)


def _lead_id_of(data: Any) -> int | None:
    if isinstance(data, (LeadRef, Lead)):
        return data.id
    if isinstance(data, Mapping):
        details = data.get("lead_details", data)
        if isinstance(details, Mapping):
            return _to_int(details.get("id"))
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
    message = raw.get("message")
    message = message if isinstance(message, str) else None
    ok = status != "Error"
    error: KartraAPIError | None = None
    data: Any = None
    if ok:
        if command.result_key is not None:
            data = raw.get(command.result_key)
        else:
            rest = {k: v for k, v in raw.items() if k not in _ENVELOPE_KEYS}
            data = rest or None
        if data is not None and command.result is not None:
            try:
                data = structure(data, command.result)
            except KartraResponseError as exc:
                reason = exc.reason.replace(
                    "Kartra's answer", f"action {index} ({command.name})", 1
                )
                raise fail(reason) from exc
    else:
        error = error_from_code(code, message, cmd=command.name, action_index=index, raw=raw)
    return ActionResult(
        index=index, cmd=command.name, ok=ok, code=code, message=message, data=data,
        error=error, raw=raw,
    )  # fmt: skip


def read_response(
    status_code: int,
    content: bytes,
    call: Call,
    *,
    secrets: Sequence[str] = (),
) -> ChainResult:
    """Read Kartra's answer to `call` into a ChainResult.

    Accepts every form the docs show: per-action results in `actions[i][cmd]`,
    results keyed by cmd without the `actions` wrapper (`{"refund_transaction": {...}}`),
    and a single action's result at the top level (`{"status": "Success",
    "account_tags": [...]}`). A top-level `status: Error`, or the failure of a call's
    only action, raises the typed KartraAPIError; anything unreadable raises
    KartraResponseError.
    """

    def fail(reason: str) -> KartraResponseError:
        return KartraResponseError(
            reason, status_code=status_code, excerpt=excerpt(content, secrets)
        )

    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise fail("Kartra's answer is not valid JSON") from None
    if not isinstance(body, dict):
        raise fail(f"Kartra's answer is a JSON {type(body).__name__}, not an object")

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
        message = body.get("message")
        raise error_from_code(
            code,
            message if isinstance(message, str) else None,
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
    for result in actions:
        if lead_id is None and result.ok and result.cmd in _LEAD_DETAILS:
            lead_id = _lead_id_of(result.data)
    if lead_id is None:
        lead_id = _lead_id_of(body.get("lead_details"))
    return ChainResult(actions=tuple(actions), lead_id=lead_id, raw=body)


_LEAD_DETAILS = frozenset({"create_lead", "edit_lead", "search_lead", "get_lead"})
