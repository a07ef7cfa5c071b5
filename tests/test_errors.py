"""The exception classes are the one list: `errors.__all__`, the package's exports and
the module docstring's tree agree with them; messages follow the attributes."""

from __future__ import annotations

import copy
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import kartra_async
from kartra_async import errors
from kartra_async._commands import COMMANDS, Call
from kartra_async.errors import (
    AmbiguousResultError,
    ChainError,
    KartraAPIError,
    KartraDecodeError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraValidationError,
    TagNotFoundError,
)

#: The names of errors.__all__ that are not exception classes.
NOT_CLASSES = {"ERROR_CODES", "SUCCESS_CODES", "ErrorCode", "error_from_code"}


def exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in kartra_async.errors: THE list."""
    return {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }


def test_errors_all_lists_every_class_and_nothing_else() -> None:
    assert sorted(errors.__all__) == sorted({*exception_classes(), *NOT_CLASSES})


def test_the_package_exports_every_kartra_error() -> None:
    """Every KartraError subclass is importable from kartra_async (TransportFailure, a
    `__cause__` and not a KartraError, stays in kartra_async.errors); no other name
    there looks like an error."""
    raised = {n for n, c in exception_classes().items() if issubclass(c, KartraError)}
    exported = {n for n in kartra_async.__all__ if n.endswith("Error")}
    assert exported == raised
    for name in raised:
        assert getattr(kartra_async, name) is getattr(errors, name)


# --------------------------------------------------------------------------- the docstring tree

_NODE = re.compile(r"^(?P<indent>(?:[│ ]   )*)(?:[├└]── )?(?P<name>[A-Z]\w+)\b(?P<rest>.*)$")


def docstring_tree() -> dict[str, tuple[str | None, tuple[int, ...]]]:
    """The module docstring's tree: class name -> (parent name, Kartra codes in brackets)."""
    doc = errors.__doc__ or ""
    block = doc.split("Hierarchy (Kartra codes in brackets)::\n\n", 1)[1].split("\n\n", 1)[0]
    nodes: dict[str, tuple[str | None, str]] = {}
    stack: list[str] = []
    last = ""
    for line in block.splitlines():
        line = line[4:]  # the literal block's indent
        found = _NODE.match(line)
        if found and (not stack or "── " in line):
            depth = len(found["indent"]) // 4 + (1 if "── " in line else 0)
            del stack[depth:]
            parent = stack[-1] if stack else None
            last = found["name"]
            nodes[last] = (parent, found["rest"])
            stack.append(last)
        else:  # the description or the codes of the class above, continued
            parent, rest = nodes[last]
            nodes[last] = (parent, rest + " " + line.lstrip("│ "))
    tree = {}
    for name, (parent, rest) in nodes.items():
        codes = re.search(r"\[([\d\s]+)\]", rest)
        numbers = tuple(sorted(int(c) for c in codes[1].split())) if codes else ()
        tree[name] = (parent, numbers)
    return tree


def class_tree() -> dict[str, tuple[str | None, tuple[int, ...]]]:
    """The same, from the classes and ERROR_CODES."""
    tree = {}
    for name, cls in exception_classes().items():
        if not issubclass(cls, KartraError):
            continue
        parent = None if cls is KartraError else cls.__bases__[0].__name__
        codes = tuple(sorted(c for c, entry in errors.ERROR_CODES.items() if entry.cls is cls))
        tree[name] = (parent, codes)
    return tree


def test_the_docstring_tree_matches_the_classes() -> None:
    documented, actual = docstring_tree(), class_tree()
    assert set(documented) == set(actual), (
        f"kartra_async/errors.py's tree: add {sorted(set(actual) - set(documented))}, "
        f"remove {sorted(set(documented) - set(actual))}"
    )
    for name in actual:
        assert documented[name] == actual[name], name


def test_the_tree_reader_sees_a_wrong_tree() -> None:
    moved = errors.__doc__
    assert moved is not None
    try:
        errors.__doc__ = moved.replace("[247]", "[247 248]").replace(
            "    │   └── KartraTimeoutError", "    ├── KartraTimeoutError"
        )
        wrong = docstring_tree()
    finally:
        errors.__doc__ = moved
    assert wrong["TransactionNotFoundError"] == ("NotFoundError", (247, 248))
    assert wrong["KartraTimeoutError"] == ("KartraError", ())
    assert wrong != class_tree()


# --------------------------------------------------------------------------- messages


def test_an_api_error_renumbered_says_its_new_index() -> None:
    error = errors.error_from_code(212, None, cmd="assign_tag", action_index=0, raw={"a": 1})
    assert str(error) == "assign_tag (action 0): Tag does not exist (Kartra 212)"
    shifted = error.with_index(2)
    assert type(shifted) is TagNotFoundError
    assert str(shifted) == "assign_tag (action 2): Tag does not exist (Kartra 212)"
    assert (shifted.code, shifted.cmd, shifted.raw, shifted.message) == (
        212, "assign_tag", {"a": 1}, "Tag does not exist",
    )  # fmt: skip
    assert error.action_index == 0  # the original is unchanged
    again = pickle.loads(pickle.dumps(shifted))
    assert (str(again), again.args) == (str(shifted), shifted.args)
    assert str(error.with_index(None)) == "assign_tag: Tag does not exist (Kartra 212)"


def test_replace_changes_attributes_and_the_message_follows() -> None:
    invalid = KartraValidationError("email", "is required")
    assert str(invalid) == "email: is required"
    assert str(invalid.__replace__(cmd="create_lead")) == "create_lead: email: is required"
    server = KartraServerError("down", status_code=503, excerpt="x", retry_after=3.0)
    moved = server.__replace__(status_code=502, retry_after=None)
    assert type(moved) is KartraServerError
    assert str(moved) == "down (HTTP 502); body starts: 'x'"
    assert moved.retry_after is None
    with pytest.raises(TypeError, match="KartraServerError has no attribute 'code'"):
        server.__replace__(code=1)
    if sys.version_info >= (3, 13):
        replace: Any = getattr(copy, "replace")  # noqa: B009 (absent before 3.13)
        assert str(replace(server, reason="up")) == "up (HTTP 503); body starts: 'x'"


def test_chain_error_counts_its_failures() -> None:
    one = errors.error_from_code(212, None, cmd="assign_tag", action_index=1)
    two = errors.error_from_code(227, None, cmd="give_points_to_lead", action_index=2)
    assert str(ChainError([one])) == (
        "1 action failed: assign_tag (action 1): Tag does not exist (Kartra 212)"
    )
    assert str(ChainError([one, two])).startswith("2 actions failed: assign_tag (action 1)")
    assert ChainError([one]).args == (str(one),)


def test_the_readme_shows_the_chain_error_text() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    shown = re.search(r'# ChainError: "([^"]+)"', readme)
    assert shown, "README.md: the raise_for_errors() line is gone"
    failed = errors.error_from_code(212, None, cmd="assign_tag", action_index=1)
    assert shown[1] == str(ChainError([failed]))


# --------------------------------------------------------------------------- typed attributes


def test_ambiguous_result_error_is_typed() -> None:
    create, points = COMMANDS["create_lead"], COMMANDS["give_points_to_lead"]
    call = Call({"lead": {"email": "a@b.co"}, "actions": []}, (create, points))
    cause = KartraError("dropped")
    error = AmbiguousResultError("may have", call=call, cause=cause)
    assert error.call is call
    assert error.cmds == ("create_lead", "give_points_to_lead")
    assert error.cause is cause
    assert AmbiguousResultError("unknown").cmds == ()
    again = pickle.loads(pickle.dumps(error))
    assert (again.cmds, str(again), type(again.cause)) == (error.cmds, "may have", KartraError)


def test_decode_error_is_a_response_error_naming_the_model() -> None:
    error = KartraDecodeError(
        "get_lead does not fit Lead: expected an integer, got 'x' @ $.id",
        status_code=200,
        excerpt="{",
        model="Lead",
    )
    assert isinstance(error, KartraResponseError)
    assert not isinstance(error, KartraAPIError)
    assert error.model == "Lead"
    assert str(error) == (
        "get_lead does not fit Lead: expected an integer, got 'x' @ $.id (HTTP 200); "
        "body starts: '{'"
    )
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.model, str(again)) == (KartraDecodeError, "Lead", str(error))
