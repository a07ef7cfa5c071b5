"""Bulk per-lead work: `fan_out` runs one chain per item at the limiter's pace, with a
resumable SQLite journal.

    async with kartra.fan_out(rows, lambda row: kartra.lead(row["email"]).create(...)) as job:
        async for outcome in job:          # one Outcome per item, as each finishes
            ...
    print(job.summary)

or `summary = await kartra.fan_out(rows, build).run()`. A context manager (rather than a
bare async generator) owns the worker tasks, so leaving early cancels them cleanly on
asyncio and trio alike.

Items are read lazily and at most `concurrency` chains are in flight, so memory stays
bounded however many items there are. One failing item never stops the job.

The journal records each item's key and state (sent, done, failed, ambiguous) before
and after its request. Run the same job again with the same journal and done items are
skipped, failed ones are retried only with `retry_failed=True`, and an item that was in
flight when the last run stopped is sent again only if its chain is safe to repeat;
an unsafe one is reported as ambiguous (or, with `reconcile=True` and a chain that
starts with create_lead, reconciled by searching the lead).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._commands import Safety
from .errors import AmbiguousResultError, KartraError
from .limits import Priority
from .models.results import ChainResult

if TYPE_CHECKING:
    from ._chain import LeadChain
    from ._client import AsyncKartra

__all__ = ["FanOut", "Journal", "Outcome", "Summary"]


@attrs.frozen
class Outcome:
    """What happened to one item."""

    item: Any = attrs.field(repr=False)
    key: str
    result: ChainResult | None = None
    error: BaseException | None = None
    skipped: bool = False  #: done in an earlier run (journal), not sent now

    @property
    def ok(self) -> bool:
        return self.error is None and (self.skipped or (self.result is not None and self.result.ok))

    @property
    def ambiguous(self) -> bool:
        return isinstance(self.error, AmbiguousResultError)


@attrs.define
class Summary:
    """Counts for a whole job (`job.summary`)."""

    ok: int = 0
    failed: dict[str, int] = attrs.field(
        factory=dict
    )  #: error class (or "actions failed") -> count
    ambiguous: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    calls: int = 0  #: requests sent by this run

    @property
    def total(self) -> int:
        return self.ok + sum(self.failed.values()) + self.ambiguous + self.skipped

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.elapsed if self.elapsed else 0.0

    def add(self, outcome: Outcome) -> None:
        if outcome.skipped:
            self.skipped += 1
        elif outcome.ambiguous:
            self.ambiguous += 1
        elif outcome.ok:
            self.ok += 1
        else:
            reason = type(outcome.error).__name__ if outcome.error is not None else "actions failed"
            self.failed[reason] = self.failed.get(reason, 0) + 1


class Journal:
    """An SQLite file of item states; every write happens off the event loop."""

    SENT, DONE, FAILED, AMBIGUOUS = "sent", "done", "failed", "ambiguous"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, state TEXT NOT NULL,"
            " safety TEXT NOT NULL, summary TEXT, updated REAL NOT NULL)"
        )

    def states(self) -> dict[str, tuple[str, str]]:
        """key -> (state, safety) of every item seen by earlier runs."""
        with self._lock:
            rows = self._db.execute("SELECT key, state, safety FROM items").fetchall()
        return {key: (state, safety) for key, state, safety in rows}

    def _write(self, key: str, state: str, safety: str, summary: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO items (key, state, safety, summary, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET state=excluded.state, safety=excluded.safety,"
                " summary=excluded.summary, updated=excluded.updated",
                (key, state, safety, summary, time.time()),
            )

    async def record(
        self, key: str, state: str, safety: Safety, summary: dict[str, Any] | None = None
    ) -> None:
        text = json.dumps(summary) if summary is not None else None
        await anyio.to_thread.run_sync(self._write, key, state, safety.value, text)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _summary_of(outcome: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if outcome.result is not None:
        out["lead_id"] = outcome.result.lead_id
        out["codes"] = [a.code for a in outcome.result.actions]
        out["ok"] = outcome.result.ok
    if outcome.error is not None:
        out["error"] = f"{type(outcome.error).__name__}: {outcome.error}"[:500]
    return out


def default_concurrency(client: AsyncKartra) -> int:
    """Enough chains in flight that the limiter, not latency, is the bottleneck:
    two seconds' worth of the limit (40 at 20/s), at least 8; 64 without a limiter."""
    limit, period = getattr(client.limiter, "limit", None), getattr(client.limiter, "period", None)
    if isinstance(limit, int) and isinstance(period, float | int) and period > 0:
        return max(8, math.ceil(limit / period * 2))
    return 64


class FanOut:
    """One bulk job; see the module docs. Made by `AsyncKartra.fan_out`."""

    def __init__(
        self,
        client: AsyncKartra,
        items: Iterable[Any] | AsyncIterable[Any],
        build: Callable[[Any], LeadChain],
        *,
        concurrency: int | None = None,
        journal: str | Path | Journal | None = None,
        key: Callable[[Any], str] | None = None,
        priority: Priority = "bulk",
        progress: Callable[[Summary], None] | None = None,
        retry_failed: bool = False,
        reconcile: bool = False,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.items = items
        self.build = build
        self.concurrency = concurrency or default_concurrency(client)
        self._journal_arg = journal
        self.journal: Journal | None = None
        self.key = key
        self.priority = priority
        self.progress = progress
        self.retry_failed = retry_failed
        self.reconcile = reconcile
        self.summary = Summary()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._outcomes: MemoryObjectReceiveStream[Outcome] | None = None

    # ---- running

    async def __aenter__(self) -> FanOut:
        if isinstance(self._journal_arg, Journal):
            self.journal = self._journal_arg
        elif self._journal_arg is not None:
            self.journal = await anyio.to_thread.run_sync(Journal, self._journal_arg)
        done: dict[str, tuple[str, str]] = (
            await anyio.to_thread.run_sync(self.journal.states) if self.journal else {}
        )
        send, receive = anyio.create_memory_object_stream[Outcome](self.concurrency)
        self._outcomes = receive
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._started = time.perf_counter()
        self._task_group.start_soon(self._feed, send, done)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._outcomes is not None
        if exc_type is not None:
            self._task_group.cancel_scope.cancel()
        else:
            # drain what the caller did not read, so the workers can finish
            async for outcome in self._outcomes:
                del outcome
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._outcomes.close()
            if self.journal is not None and not isinstance(self._journal_arg, Journal):
                self.journal.close()

    def __aiter__(self) -> AsyncIterator[Outcome]:
        if self._outcomes is None:
            raise RuntimeError(
                "use 'async with kartra.fan_out(...) as job: async for outcome in job'"
            )
        return self._outcomes.__aiter__()

    async def run(self) -> Summary:
        """Run the whole job, returning the summary (outcomes go to `progress` counts only)."""
        async with self as job:
            async for _ in job:
                pass
        return self.summary

    async def _feed(
        self, out: MemoryObjectSendStream[Outcome], done: dict[str, tuple[str, str]]
    ) -> None:
        work_send, work_receive = anyio.create_memory_object_stream[tuple[int, Any]](
            self.concurrency
        )
        async with out, anyio.create_task_group() as workers:
            for _ in range(self.concurrency):
                workers.start_soon(self._worker, work_receive.clone(), out.clone(), done)
            work_receive.close()
            async with work_send:
                index = 0
                if isinstance(self.items, AsyncIterable):
                    async for item in self.items:
                        await work_send.send((index, item))
                        index += 1
                else:
                    for item in self.items:
                        await work_send.send((index, item))
                        index += 1

    async def _worker(
        self,
        work: MemoryObjectReceiveStream[tuple[int, Any]],
        out: MemoryObjectSendStream[Outcome],
        done: dict[str, tuple[str, str]],
    ) -> None:
        async with work, out:
            async for index, item in work:
                outcome = await self._one(index, item, done)
                self.summary.add(outcome)
                self.summary.elapsed = time.perf_counter() - self._started
                if self.progress is not None:
                    self.progress(self.summary)
                await out.send(outcome)

    async def _one(self, index: int, item: Any, done: dict[str, tuple[str, str]]) -> Outcome:
        key = str(self.key(item)) if self.key is not None else str(index)
        try:
            chain = self.build(item)
            call = chain.compile()
        except Exception as exc:  # a bad item never stops the job
            return Outcome(item, key, error=exc)
        previous, _ = done.get(key, (None, None))
        journal = self.journal
        if previous == Journal.DONE:
            return Outcome(item, key, skipped=True)
        if previous == Journal.FAILED and not self.retry_failed:
            return Outcome(item, key, skipped=True)
        if previous == Journal.AMBIGUOUS:
            message = f"item {key}: ambiguous in an earlier run; not sent again"
            return Outcome(item, key, error=AmbiguousResultError(message, call=call))
        resumed_unsafe = previous == Journal.SENT and call.safety is Safety.UNSAFE
        if resumed_unsafe and not (self.reconcile and call.cmds[0] == "create_lead"):
            message = (
                f"item {key} ({', '.join(call.cmds)}) was in flight when an earlier run stopped "
                "and may have been applied; it is not sent again since a repeat could do harm"
            )
            outcome = Outcome(item, key, error=AmbiguousResultError(message, call=call))
            if journal is not None:
                await journal.record(key, Journal.AMBIGUOUS, call.safety, _summary_of(outcome))
            return outcome
        if journal is not None:
            await journal.record(key, Journal.SENT, call.safety)
        self.summary.calls += 1
        try:
            if resumed_unsafe:
                result = await self.client.reconcile_create(call, priority=self.priority)
            else:
                result = await self.client.send(call, priority=self.priority)
            outcome = Outcome(item, key, result=result)
        except KartraError as exc:
            outcome = Outcome(item, key, error=exc)
        if journal is not None:
            state = (
                Journal.DONE
                if outcome.ok
                else Journal.AMBIGUOUS
                if outcome.ambiguous
                else Journal.FAILED
            )
            with anyio.CancelScope(shield=True):
                await journal.record(key, state, call.safety, _summary_of(outcome))
        return outcome
