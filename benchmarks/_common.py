"""Shared helpers for the benchmark scripts: timing, tables, the docs' samples."""

from __future__ import annotations

import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.docs_samples import sample  # noqa: E402

GET_LEAD_SAMPLE: dict[str, Any] = sample(
    "Here’s an example of success message when retrieving a lead’s data:"
)
GET_LEAD_BODY = json.dumps(GET_LEAD_SAMPLE).encode()


def best_of(fn: Callable[[], object], *, number: int, repeat: int = 7) -> float:
    """Seconds per call: the best of `repeat` runs of `number` calls (GC off while timing)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - start) / number)
        finally:
            gc.enable()
    return best


def machine() -> str:
    return f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in rows
    ]
    return "\n".join([f"### {title}", "", line, sep, *body, ""])


def verdict(ok: bool, what: str) -> bool:
    print(("PASS " if ok else "MISS ") + what)
    return ok
