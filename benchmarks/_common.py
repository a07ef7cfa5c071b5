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


def interleaved(
    fns: dict[str, Callable[[], object]], *, number: int, rounds: int = 15
) -> dict[str, float]:
    """Seconds per call of each function, measured in alternating rounds (so drifting
    machine load hits every contestant alike); the best round of each counts."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        for _ in range(number // 10 + 1):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                best[name] = min(best[name], (time.perf_counter() - start) / number)
            finally:
                gc.enable()
    return best


async def interleaved_async(
    fns: dict[str, Callable[[], Awaitable[object]]], *, number: int, rounds: int = 15
) -> dict[str, float]:
    """interleaved() for coroutine functions."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        for _ in range(number // 10 + 1):
            await fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                await fn()
            best[name] = min(best[name], (time.perf_counter() - start) / number)
    return best
