"""The `kartra` command line as a shell takes it: what a stopped import prints to
resume, with the secrets left to the environment."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = ["RESUME_FLAGS", "command_line", "secrets_note"]

_SECRET_FLAGS = {"--api-key": "KARTRA_API_KEY", "--api-password": "KARTRA_API_PASSWORD"}
RESUME_FLAGS = ("--reconcile", "--retry-ambiguous", "--retry-failed")


def command_line(argv: Sequence[str], *, add: Sequence[str] = ()) -> str:
    """`kartra ARGV` for a shell, secrets as environment variables, with the resume
    flags of `add` instead of the ones given."""
    parts = ["kartra"]
    tokens = iter(argv)
    for token in tokens:
        flag, equals, _ = token.partition("=")
        if flag in _SECRET_FLAGS:
            if not equals:
                next(tokens, None)
            parts += [flag, f'"${_SECRET_FLAGS[flag]}"']
        elif not (add and token in RESUME_FLAGS):
            parts.append(shlex.quote(token))
    return " ".join([*parts, *add])


def secrets_note(argv: Sequence[str]) -> str:
    """What to set before running `command_line(argv)`: the variables that stand for
    the secrets given as flags (empty if none was)."""
    names = [
        name
        for flag, name in _SECRET_FLAGS.items()
        if any(token.partition("=")[0] == flag for token in argv)
    ]
    if not names:
        return ""
    return (
        f"  (secrets are never printed: set {' and '.join(names)} in the environment "
        "before running it)"
    )
