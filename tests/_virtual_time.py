"""Virtual time for deterministic tests of rate limiting, on asyncio and on trio.

Time stands still while code runs and jumps to the next timer when every task waits, so
a limiter, the fake's arrival delays and its rate referee all read one clock
(`anyio.current_time`) that no machine load can disturb. Only for tests whose I/O is in
process (FakeTransport): a real socket would wait in real time.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _Selector(selectors.DefaultSelector):
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # nothing scheduled: only I/O can wake the loop
            return super().select(None)
        self.loop.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock jumps to the next scheduled callback when idle."""

    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def backend_options(name: str) -> tuple[str, dict[str, Any]]:
    """anyio_backend for virtual time: a fresh VirtualTimeLoop / trio MockClock."""
    if name == "trio":
        from trio.testing import MockClock

        return "trio", {"clock": MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": VirtualTimeLoop}
