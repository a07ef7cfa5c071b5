"""Shared helpers for the benchmark scripts: timing, tables, the docs' samples."""

from __future__ import annotations

import gc
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
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


#: Kartra's answer to create_lead + assign_tag + subscribe_lead_to_list (fake and overhead)
CHAIN_ANSWER = json.dumps(
    {
        "status": "Success",
        "lead": {"Status": "Created"},
        "actions": [
            {"create_lead": {"status": "Success", "lead_details": {"id": "1234"}}},
            {"assign_tag": {"status": "Success", "message": "Tag added to lead", "type": "103"}},
            {
                "subscribe_lead_to_list": {
                    "status": "Success",
                    "message": "Lead subscribed to list",
                    "type": "101",
                }
            },
        ],
    }
).encode()


def compare(
    title: str, unit: str, baseline: tuple[str, float], *others: tuple[str, float]
) -> list[float]:
    """Print a table of seconds per call in `unit` (us) with ratios to the baseline row."""
    rows = [(f"{baseline[0]} (baseline)", f"{baseline[1] * 1e6:.1f}", "1.00")]
    ratios = [seconds / baseline[1] for _, seconds in others]
    rows += [
        (name, f"{seconds * 1e6:.1f}", f"{r:.2f}")
        for (name, seconds), r in zip(others, ratios, strict=True)
    ]
    print(table(f"{title} ({machine()})", rows, ("what", unit, "ratio")))
    return ratios


async def best_async(
    fn: Callable[[], Awaitable[object]], *, number: int = 3000, repeat: int = 7, warmup: int = 300
) -> float:
    """Seconds per await of `fn`: the best of `repeat` runs of `number` awaits."""
    for _ in range(warmup):
        await fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            await fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best
