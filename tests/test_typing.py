"""The public API's types: tests/typing/check_public_api.py passes `mypy --strict`, so
every public call has the result type its `assert_type` states (none is `Any`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kartra_async

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tests" / "typing" / "check_public_api.py"


def test_the_public_api_type_checks_as_stated() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(CHECK)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("Success: no issues found in 1 source file")


def test_the_check_imports_every_public_name() -> None:
    """A name added to kartra_async.__all__ gets its line in the typing check too."""
    text = CHECK.read_text(encoding="utf-8")
    errors = set(kartra_async.errors.__all__)
    missing = [n for n in kartra_async.__all__ if n not in errors and f"    {n},\n" not in text]
    assert not missing, f"use these in {CHECK.name}: {missing}"
