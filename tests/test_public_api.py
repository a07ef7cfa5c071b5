"""The curated public surface of `kartra_async`."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kartra_async
from kartra_async import errors


def test_every_exception_class_is_public() -> None:
    classes = [
        n for n in errors.__all__ if isinstance(getattr(errors, n), type) and n.endswith("Error")
    ]
    assert "KartraWebhookError" in classes
    assert set(classes) <= set(kartra_async.__all__)
    for name in classes:
        assert getattr(kartra_async, name) is getattr(errors, name)


def test_table_internals_stay_in_their_modules() -> None:
    internals = {"COMMANDS", "Command", "Safety", "Scope", "Journal", "AccountCalls", "Call"}
    assert not internals & set(kartra_async.__all__)
    from kartra_async import _bulk, _chain, _commands

    modules = {"Journal": _bulk, "AccountCalls": _chain}
    for name in internals:
        assert hasattr(modules.get(name, _commands), name), name
        assert not hasattr(kartra_async, name), name


def test_every_public_name_resolves_and_is_listed_once() -> None:
    assert len(set(kartra_async.__all__)) == len(kartra_async.__all__)
    assert kartra_async.__all__ == sorted(kartra_async.__all__, key=lambda n: (not n.isupper(), n))
    for name in kartra_async.__all__:
        assert getattr(kartra_async, name) is not None, name
        assert name in dir(kartra_async)


def test_redis_limiter_is_imported_only_when_asked_for() -> None:
    code = (
        "import sys, kartra_async\n"
        "assert 'kartra_async.limits.redis' not in sys.modules\n"
        "from kartra_async import RedisLimiter\n"
        "from kartra_async.limits.redis import RedisLimiter as Same\n"
        "assert RedisLimiter is Same\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchName"):
        kartra_async.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
