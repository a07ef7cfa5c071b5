"""Bulk per-lead work: `fan_out` runs one chain per item at the limiter's pace, with a
resumable SQLite journal.

    async with kartra.fan_out(rows, build, journal="import.db", key=lambda r: r["email"]) as job:
        async for outcome in job:          # one Outcome per item, as each finishes
            ...
    print(job.summary)

or `summary = await kartra.fan_out(rows, build).run()`. A context manager (rather than a
bare async generator) owns the worker tasks, so leaving early cancels them cleanly on
asyncio and trio alike. Items are read lazily and at most `concurrency` chains are in
flight, so memory stays bounded however many items there are.

Failures stay in their item: whatever `key`, `build`, validation or one call raises
becomes that item's failed Outcome. Only what concerns the whole job (the limiter
failing, the journal lost, the items iterable raising, `progress` raising) ends it: the
items whose request has left are finished, then the exception is raised from the
`async with` block.

The journal follows each request, not the queue: an item gets the row "sent" (written
durably) only once its request is about to leave, after the limiter's grant; an item
stopped before that has no row and is simply pending. When the answer is read the row
becomes "done", "failed" (with the actions that went through) or "ambiguous". Run the
same job with the same journal and:

- pending items are sent; done items are skipped;
- failed items are skipped, or with `retry_failed=True` only their failed actions are
  sent again (by lead id once the lead exists), never an action that went through;
- items that were in flight ("sent") or ambiguous are sent again when a repeat cannot
  do harm; a chain that creates its lead is reconciled by looking the lead up
  (`reconcile=True`, the default); what stays ambiguous is reported with what to check,
  and moves on with `retry_ambiguous=True` (send again) or a `reconcile=` function of
  yours that says whether it was applied.

One job per journal: the file is locked while a job runs (a second one gets
JournalLockedError at once), it remembers which job wrote it (JournalMismatchError for
another one unless `adopt_journal=True`), and a journal deleted or replaced under a
running job stops it with JournalLostError.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import math
import os
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._commands import Call, Safety
from ._retry import ambiguous_error
from .errors import (
    AmbiguousResultError,
    JournalError,
    JournalLockedError,
    JournalLostError,
    JournalMismatchError,
    KartraAPIError,
    KartraConnectionError,
    KartraError,
    LeadNotFoundError,
    RateLimitError,
)
from .limits import Priority, RateLimiter
from .models.results import ChainResult

if TYPE_CHECKING:
    from ._chain import LeadChain
    from ._client import AsyncKartra

__all__ = [
    "CallClock",
    "FanOut",
    "ItemState",
    "Journal",
    "JournalEntry",
    "Outcome",
    "Reconciler",
    "Summary",
]

T = TypeVar("T")

Reconciler = Callable[[Any, "LeadChain"], Awaitable["bool | None"]]
"""`async def reconcile(item, chain) -> bool | None`: for an item that may or may not have
been applied, True if it was (recorded done), False if it was not (sent again), None if
you cannot tell (stays ambiguous)."""


# --------------------------------------------------------------------------- journal


class ItemState(enum.Enum):
    """An item's row in the journal (no row: pending, never sent)."""

    SENT = "sent"  #: its request left; no answer recorded yet
    DONE = "done"  #: every action went through
    FAILED = "failed"  #: Kartra refused it or some actions; `applied` says which went through
    AMBIGUOUS = "ambiguous"  #: may or may not have been applied, and a repeat could do harm


@attrs.frozen
class JournalEntry:
    """One item's row."""

    key: str
    state: ItemState
    safety: Safety  #: of the item's whole chain
    digest: str = ""  #: of the item's compiled chain (a changed item is not mistaken for it)
    lead_id: int | None = None
    applied: tuple[int, ...] = ()  #: indexes of the chain's actions known to have gone through
    error: str | None = None
    #: when the row was written (time.time()); a "sent" row: when its request first left
    updated: float = 0.0


_FORMAT = "kartra_async bulk journal"
_VERSION = "2"
_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE items (key TEXT PRIMARY KEY, state TEXT NOT NULL, safety TEXT NOT NULL,"
    " digest TEXT NOT NULL, lead_id INTEGER, applied TEXT NOT NULL, error TEXT,"
    " updated REAL NOT NULL)",
)
_COLUMNS = "key, state, safety, digest, lead_id, applied, error, updated"
_CHECKPOINT_EVERY = 100  #: writes between WAL checkpoints (SQLite's own would hit sends)


class Journal:
    """An SQLite file of item states, held exclusively by one job while it is open.

    Opening an existing file checks that it is a journal (an empty or foreign file raises
    JournalError) and locks it (JournalLockedError when another job holds it). Writes are
    synchronous and short, and every write first checks that the file is still the one
    opened (JournalLostError if it was deleted or replaced).

    A "sent" row is committed before its request leaves, so it survives the process
    being killed (kill -9) at any point. `fsync=True` also flushes it to the disk before
    the request leaves, so it survives a power loss; that puts the disk's flush time
    between the limiter's grant and the request, which a busy disk turns into HTTP 429s
    at the full rate. Checkpoints run with the other writes, never on the sent path.
    """

    SENT, DONE, FAILED, AMBIGUOUS = (
        ItemState.SENT,
        ItemState.DONE,
        ItemState.FAILED,
        ItemState.AMBIGUOUS,
    )

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lost: JournalLostError | None = None
        self._synchronous = ""
        self._writes = 0
        self._busy = False  #: a job is running on it
        if not self.path.exists():
            self._create()
        self._db, self._identity = self._open()

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r}>"

    def _error(self, cls: type[JournalError], text: str) -> JournalError:
        return cls(f"journal {str(self.path)!r}: {text}", path=str(self.path))

    def _create(self) -> None:
        """A complete new journal appears at `path` at once (built aside, then linked),
        so a file found there is a journal or not one, never half of one."""
        fd, temp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent
        )
        os.close(fd)
        try:
            db = sqlite3.connect(temp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                for statement in _SCHEMA:
                    db.execute(statement)
                db.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("format", _FORMAT), ("version", _VERSION), ("created", repr(time.time()))],
                )
            finally:
                db.close()
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another job created it first: opening it meets that job's lock
            except OSError:  # no hard links on this file system
                if not self.path.exists():
                    os.replace(temp, self.path)
        finally:
            for leftover in (temp, f"{temp}-wal", f"{temp}-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)

    def _open(self) -> tuple[sqlite3.Connection, tuple[int, int]]:
        try:
            size = os.stat(self.path).st_size
        except OSError as exc:
            raise self._error(JournalError, f"cannot be opened ({exc.strerror})") from None
        if size == 0:
            raise self._error(
                JournalError,
                "the file is empty, not a journal; remove it to start a new job there",
            )
        foreign = (
            "is not a kartra_async journal ({}); give the path of a journal, or a new path "
            "to start a new job"
        )
        db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("BEGIN EXCLUSIVE")  # held until close: one job per journal
            db.execute("COMMIT")
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            db.close()
            busy = getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY"
            if busy or "database is locked" in str(exc):
                raise self._error(
                    JournalLockedError,
                    "another job is using it (one job per journal); wait for that job to "
                    "end, or give this job another journal",
                ) from None
            raise self._error(JournalError, foreign.format(exc)) from None
        if meta.get("format") != _FORMAT:
            db.close()
            raise self._error(JournalError, foreign.format("no journal header"))
        if meta.get("version") != _VERSION:
            db.close()
            raise self._error(
                JournalError,
                f"written by another version of kartra_async (format {meta.get('version')})",
            )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA wal_autocheckpoint=0")  # see record()
        stat = os.stat(self.path)
        return db, (stat.st_dev, stat.st_ino)

    # ---- reading

    def get(self, key: str) -> JournalEntry | None:
        """The row of one item, or None (pending)."""
        try:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(JournalError, f"reading failed ({exc})") from None
        return _entry(row) if row is not None else None

    def entries(self) -> Iterator[JournalEntry]:
        """Every row, in the order the items were first written."""
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM items ORDER BY rowid").fetchall():
            yield _entry(row)

    def counts(self) -> dict[ItemState, int]:
        rows = self._db.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall()
        return {ItemState(state): count for state, count in rows}

    @property
    def job(self) -> dict[str, Any] | None:
        """What identifies the job that wrote this journal (None: no job yet)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'job'").fetchone()
        return json.loads(row[0]) if row is not None else None

    # ---- writing

    def claim(self, job: Mapping[str, Any], *, adopt: bool = False) -> None:
        """Make this journal `job`'s; JournalMismatchError if another job wrote it
        (unless `adopt`). A part that is None on either side is not compared."""
        stored = self.job
        if stored is not None and not adopt:
            differences = [
                f"{name} {stored.get(name)!r} (journal) != {job.get(name)!r} (this job)"
                for name in sorted(set(stored) | set(job))
                if stored.get(name) is not None
                and job.get(name) is not None
                and stored.get(name) != job.get(name)
            ]
            if differences:
                raise self._error(
                    JournalMismatchError,
                    "written by a different job: "
                    + "; ".join(differences)
                    + ". Give this job another journal, or adopt_journal=True "
                    "(kartra import --adopt-journal) to continue this one anyway",
                )
        merged = {**(stored or {}), **{k: v for k, v in job.items() if v is not None}}
        if merged != stored:
            self.check()
            self._execute(
                "INSERT INTO meta (name, value) VALUES ('job', ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (json.dumps(merged, sort_keys=True),),
            )

    def record(self, entry: JournalEntry, *, durable: bool = False) -> None:
        """Write one item's row. `durable`: the row of a request about to leave (flushed
        to the disk first when the journal fsyncs; never delayed by a checkpoint)."""
        self.check()
        mode = "FULL" if durable and self.fsync else "NORMAL"
        if mode != self._synchronous:
            self._execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode
        self._execute(
            f"INSERT INTO items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET state=excluded.state, safety=excluded.safety,"
            " digest=excluded.digest, lead_id=excluded.lead_id, applied=excluded.applied,"
            " error=excluded.error, updated=excluded.updated",
            (
                entry.key,
                entry.state.value,
                entry.safety.value,
                entry.digest,
                entry.lead_id,
                json.dumps(list(entry.applied)),
                entry.error,
                entry.updated or time.time(),
            ),
        )
        self._writes += 1
        if not durable and self._writes >= _CHECKPOINT_EVERY:
            self._writes = 0
            self._execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> None:
        try:
            self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self._error(JournalError, f"writing failed ({exc})") from None

    def check(self) -> None:
        """JournalLostError if the file was deleted or replaced since it was opened."""
        if self._lost is not None:
            raise self._lost
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            what = "was deleted"
        else:
            if (stat.st_dev, stat.st_ino) == self._identity:
                return
            what = "was replaced by another file"
        error = self._error(
            JournalLostError,
            f"{what} while the job was running; the job stopped, since what it sends could "
            "no longer be recorded (a new journal would send the items done so far again)",
        )
        assert isinstance(error, JournalLostError)
        self._lost = error
        raise error

    def close(self) -> None:
        """Release the file (and its lock). Safe to call twice."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    key, state, safety, digest, lead_id, applied, error, updated = row
    return JournalEntry(
        key, ItemState(state), Safety(safety), digest, lead_id, tuple(json.loads(applied)),
        error, updated,
    )  # fmt: skip


# --------------------------------------------------------------------------- outcomes


class CallClock:
    """Counts calls as they leave and measures their rate: the slope of calls over time
    (least squares), which idle time before, between phases and after does not dilute
    and a burst at the start does not inflate; and the most calls in any `period`."""

    __slots__ = ("_st", "_sti", "_stt", "_window", "calls", "first", "last", "peak", "period")

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self.calls = 0
        self.first: float | None = None
        self.last = 0.0
        self.peak = 0  #: the most calls in any window of `period` seconds
        self._st = self._sti = self._stt = 0.0
        self._window: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        if self.first is None:
            self.first = now
        t = now - self.first
        self._st += t
        self._sti += t * self.calls
        self._stt += t * t
        self.calls += 1
        self.last = now
        window = self._window
        window.append(now)
        while window[0] <= now - self.period:
            window.popleft()
        self.peak = max(self.peak, len(window))

    @property
    def span(self) -> float:
        """Seconds from the first call to the last."""
        return self.last - self.first if self.first is not None else 0.0

    @property
    def rate(self) -> float:
        """Calls per second while calls were being made (0.0 with fewer than two)."""
        n = self.calls
        spread = n * self._stt - self._st * self._st
        if n < 2 or spread <= 1e-12:
            return 0.0
        sum_i = n * (n - 1) / 2
        return (n * self._sti - self._st * sum_i) / spread


def _state_of(outcome: Outcome[Any]) -> ItemState:
    if isinstance(outcome.error, AmbiguousResultError):
        return ItemState.AMBIGUOUS
    if outcome.error is not None:
        return ItemState.FAILED
    if outcome.skipped or (outcome.result is not None and outcome.result.ok):
        return ItemState.DONE
    return ItemState.FAILED


@attrs.frozen
class Outcome(Generic[T]):
    """What happened to one item."""

    item: T = attrs.field(repr=False)
    key: str
    #: Kartra's answer to what this run sent for the item (for a resumed partial failure:
    #: its failed actions only, in their order)
    result: ChainResult | None = None
    error: BaseException | None = None
    skipped: bool = False  #: not sent now: done (or failed) in an earlier run
    #: DONE, FAILED or AMBIGUOUS after this run
    state: ItemState = attrs.field(default=attrs.Factory(_state_of, takes_self=True))
    previous: ItemState | None = None  #: the journal's state before this run
    reconciled: bool = False  #: settled by looking it up, not by sending it

    @property
    def ok(self) -> bool:
        return self.state is ItemState.DONE

    @property
    def ambiguous(self) -> bool:
        return self.state is ItemState.AMBIGUOUS


@attrs.define
class Summary:
    """Counts for a whole job (`job.summary`)."""

    ok: int = 0
    #: error class (or "actions failed") -> count
    failed: dict[str, int] = attrs.field(factory=dict)
    ambiguous: int = 0
    skipped: int = 0  #: done (or failed) in an earlier run, not sent now
    pending: int = 0  #: stopped (job.stop()) before their request left: sent on resume
    reconciled: int = 0  #: of the ok ones, settled by a lookup rather than a send
    elapsed: float = 0.0
    calls: int = 0  #: HTTP requests this run made (resends and lookups included)
    calling: float = 0.0  #: seconds from the first request of the run to the last
    rate: float = 0.0  #: calls per second while calls were being made (CallClock.rate)
    peak: int = 0  #: the most calls in any one second
    stopped: bool = False  #: job.stop() was called (or a job-wide error stopped it)

    @property
    def total(self) -> int:
        return self.ok + sum(self.failed.values()) + self.ambiguous + self.skipped

    @property
    def calls_per_second(self) -> float:
        """The rate calls were made at while they were being made (without a measured
        rate: calls over the elapsed time)."""
        if self.rate:
            return self.rate
        return self.calls / self.elapsed if self.elapsed else 0.0

    def add(self, outcome: Outcome[Any]) -> None:
        if outcome.skipped:
            self.skipped += 1
        elif outcome.state is ItemState.AMBIGUOUS:
            self.ambiguous += 1
        elif outcome.state is ItemState.DONE:
            self.ok += 1
            self.reconciled += outcome.reconciled
        else:
            reason = type(outcome.error).__name__ if outcome.error is not None else "actions failed"
            self.failed[reason] = self.failed.get(reason, 0) + 1


# --------------------------------------------------------------------------- helpers


def default_concurrency(client: AsyncKartra) -> int:
    """Enough chains in flight that the limiter, not latency, is the bottleneck:
    two seconds' worth of the limit (40 at 20/s), at least 8; 64 without a limiter."""
    limit, period = getattr(client.limiter, "limit", None), getattr(client.limiter, "period", None)
    if isinstance(limit, int) and isinstance(period, float | int) and period > 0:
        return max(8, math.ceil(limit / period * 2))
    return 64


def _digest(call: Call) -> str:
    text = json.dumps(call.payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _shape(call: Call) -> Any:
    """The chain's actions as JSON values (the lead's own fields aside)."""
    return json.loads(json.dumps(call.payload.get("actions", []), default=str))


def _creates_lead(call: Call) -> bool:
    """The chain's first action creates its lead (it names the lead and is unsafe to
    repeat): sending it again must look the lead up first."""
    first = call.commands[0]
    return first.starts_chain and first.safety is Safety.UNSAFE


def _reconcilable(call: Call) -> bool:
    """The command table has a strategy that settles an ambiguous call starting with
    this chain's first cmd (a chain that creates its lead looks it up):
    AsyncKartra.reconcile_ambiguous applies it."""
    return bool(call.commands) and call.commands[0].reconcile is not None


def _sent_at(entry: JournalEntry) -> datetime | None:
    """When an item's request left, if its row says so: a "sent" row is written right
    before the request leaves (and keeps that time while the item is reconciled)."""
    if entry.state is ItemState.SENT and entry.updated > 0:
        return datetime.fromtimestamp(entry.updated, timezone.utc)
    return None


def _remaining(
    call: Call, applied: Collection[int], lead_id: int | None
) -> tuple[Call, tuple[int, ...]]:
    """The part of `call` not known to have gone through, and the original index of each
    of its actions. Once the action naming the lead went through, the rest names the
    lead by id."""
    keep = tuple(i for i in range(len(call.commands)) if i not in applied)
    if len(keep) == len(call.commands):
        return call, keep
    payload = dict(call.payload)
    payload["actions"] = [call.payload["actions"][i] for i in keep]
    lead = call.payload.get("lead")
    if call.commands[0].starts_chain and 0 in applied and isinstance(lead, Mapping):
        payload["lead"] = (
            {"id": lead_id}
            if lead_id is not None
            else {k: lead[k] for k in ("id", "email") if k in lead}
        )
    commands = tuple(call.commands[i] for i in keep)
    return Call(payload, commands, lead_id if lead_id is not None else call.lead_id), keep


class _Stopped(Exception):
    """job.stop() reached the item before its request left."""


class _LimiterFailed(Exception):
    """The rate limiter raised: the whole job stops."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        super().__init__(str(error))


class _GuardedLimiter:
    """The client's limiter, with its failures marked as the job's, not an item's."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner

    async def acquire(self, priority: Priority = "interactive") -> float:
        try:
            return await self.inner.acquire(priority)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            raise _LimiterFailed(exc) from exc

    async def backoff(self, seconds: float) -> None:
        try:
            await self.inner.backoff(seconds)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            raise _LimiterFailed(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_JOB_WIDE = (_Stopped, _LimiterFailed, JournalError)
_NOTHING: Any = object()


class _Item(Generic[T]):
    """One item being worked on: what the journal says, and the sent moment."""

    def __init__(
        self,
        job: FanOut[T],
        index: int,
        item: T,
        key: str,
        call: Call,
        entry: JournalEntry | None,
        scope: anyio.CancelScope,
    ) -> None:
        self.job, self.index, self.item, self.key = job, index, item, key
        self.call, self.entry, self.scope = call, entry, scope
        self.digest = _digest(call)
        self.sends = 0

    def on_send(self) -> None:
        """Called right before each request for this item leaves."""
        job = self.job
        if self.sends == 0:
            if self.scope.cancel_called:
                raise _Stopped
            job._unsent.pop(self.index, None)
            job._in_flight.add(self.index)
            if job.journal is not None:
                self._write(ItemState.SENT, durable=True)
        self.sends += 1
        job._count_call()

    def _write(
        self,
        state: ItemState,
        *,
        applied: Collection[int] | None = None,
        lead_id: int | None = None,
        error: str | None = None,
        durable: bool = False,
    ) -> None:
        journal = self.job.journal
        if journal is None:
            return
        old = self.entry
        # a request still in flight keeps the time it first left (what reconcile compares
        # the lead's date_joined with), however often the item is resumed
        kept = old.updated if old is not None and old.state is state is ItemState.SENT else 0.0
        self.entry = JournalEntry(
            self.key,
            state,
            self.call.safety,
            self.digest,
            lead_id if lead_id is not None else (old.lead_id if old else None),
            tuple(sorted(applied if applied is not None else (old.applied if old else ()))),
            error,
            kept,
        )
        journal.record(self.entry, durable=durable)

    async def send(self, call: Call, keep: tuple[int, ...]) -> Outcome[T]:
        previous = self.entry.state if self.entry is not None else None
        before = self.sends
        try:
            result = await self.job._sender.send(
                call, priority=self.job.priority, on_send=self.on_send
            )
        except _JOB_WIDE:
            raise
        except Exception as exc:
            return self.failed(exc, call, sent=self.sends > before, previous=previous)
        return self.finish(result, keep, previous=previous)

    def finish(
        self,
        result: ChainResult,
        keep: tuple[int, ...],
        *,
        previous: ItemState | None,
        reconciled: bool = False,
    ) -> Outcome[T]:
        applied = set(self.entry.applied if self.entry is not None else ())
        applied.update(keep[a.index] for a in result.actions if a.ok and a.index < len(keep))
        state = ItemState.DONE if result.ok else ItemState.FAILED
        error = None if result.ok else "; ".join(str(e) for e in result.errors)[:500]
        self._write(state, applied=applied, lead_id=result.lead_id, error=error)
        return Outcome(
            self.item, self.key, result=result, state=state, previous=previous,
            reconciled=reconciled,
        )  # fmt: skip

    def failed(
        self, error: BaseException, call: Call, *, sent: bool, previous: ItemState | None
    ) -> Outcome[T]:
        """A call that raised: ambiguous if it may have been applied and a repeat could
        do harm, failed otherwise."""
        unsafe = call.safety is Safety.UNSAFE
        if not isinstance(error, AmbiguousResultError) and unsafe:
            answered = isinstance(error, KartraAPIError | RateLimitError)
            never_opened = isinstance(error, KartraConnectionError) and not error.request_sent
            cause = error if isinstance(error, KartraError) else KartraError(repr(error))
            if sent and not (answered or never_opened):
                error = ambiguous_error(call, cause)
            elif previous in (ItemState.SENT, ItemState.AMBIGUOUS):
                # what failed now says nothing of the earlier request: still unsure
                error = AmbiguousResultError(
                    f"item {self.key}: an earlier run's request may have been applied, and "
                    f"sending it again failed ({type(error).__name__}: {error})",
                    call=call,
                    cause=error,
                )
        state = ItemState.AMBIGUOUS if isinstance(error, AmbiguousResultError) else ItemState.FAILED
        if self.entry is not None or self.sends:
            self._write(state, error=f"{type(error).__name__}: {error}"[:500])
        return Outcome(self.item, self.key, error=error, state=state, previous=previous)


# --------------------------------------------------------------------------- the job


class FanOut(Generic[T]):
    """One bulk job; see the module docs. Made by `AsyncKartra.fan_out`."""

    def __init__(
        self,
        client: AsyncKartra,
        items: Iterable[T] | AsyncIterable[T],
        build: Callable[[T], LeadChain],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        key: Callable[[T], object] | None = None,
        priority: Priority = "bulk",
        progress: Callable[[Summary], None] | None = None,
        retry_failed: bool = False,
        retry_ambiguous: bool = False,
        reconcile: bool | Reconciler = True,
        job: str | None = None,
        adopt_journal: bool = False,
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
        self.retry_ambiguous = retry_ambiguous
        self.reconcile = reconcile
        self.job = job
        self.adopt_journal = adopt_journal
        self.summary = Summary()
        limiter = client.limiter
        self._sender = (
            client.with_options(limiter=_GuardedLimiter(limiter)) if limiter is not None else client
        )
        self._task_group: anyio.abc.TaskGroup | None = None
        self._outcomes: MemoryObjectReceiveStream[Outcome[T]] | None = None
        self._feeding = anyio.CancelScope()
        self._unsent: dict[int, anyio.CancelScope] = {}
        self._in_flight: set[int] = set()
        self._active: set[str] = set()
        self._stopping = False
        self._error: BaseException | None = None
        self._entered = False
        self._first: Any = _NOTHING
        self._first_chain: LeadChain | None = None
        self._iterator: Iterator[T] | AsyncIterator[T] | None = None
        self._started = 0.0
        self._clock = CallClock()

    # ---- control

    def stop(self) -> None:
        """Start no more items and stop those whose request has not left (they stay
        pending, with no journal row); the requests in flight finish and are recorded,
        then the outcomes end. Call it from the job's event loop (e.g. on Ctrl-C)."""
        if self._stopping:
            return
        self._stopping = True
        self.summary.stopped = True
        self._feeding.cancel()
        for scope in list(self._unsent.values()):
            scope.cancel()

    @property
    def in_flight(self) -> int:
        """Items being worked on whose request has left."""
        return len(self._in_flight)

    def _fail(self, error: BaseException, *, how: str = "stop") -> None:
        """An error of the whole job, raised from the `async with` block once the job has
        ended. how="feed": start no more items (those taken finish); "stop": as
        `stop()`; "now": cancel everything."""
        if self._error is None:
            self._error = error
        if how == "feed":
            self.summary.stopped = True
            self._feeding.cancel()
        else:
            self.stop()
        if how == "now" and self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _count_call(self) -> None:
        clock = self._clock
        clock.tick()
        summary = self.summary
        summary.calls, summary.calling, summary.peak = clock.calls, clock.span, clock.peak
        summary.rate = clock.rate

    # ---- running

    async def __aenter__(self) -> FanOut[T]:
        if self._entered:
            raise RuntimeError("a FanOut runs once: call kartra.fan_out(...) again")
        self._entered = True
        self._started = time.perf_counter()
        if isinstance(self.items, AsyncIterable):
            self._iterator = self.items.__aiter__()
        else:
            self._iterator = iter(self.items)
        if isinstance(self._journal_arg, Journal):
            self.journal = self._journal_arg
            if self.journal._busy:
                raise self.journal._error(
                    JournalLockedError, "another job is using it (one job per journal)"
                )
        elif self._journal_arg is not None:
            self.journal = Journal(self._journal_arg)
        try:
            if self.journal is not None:
                self.journal.claim(await self._identify(), adopt=self.adopt_journal)
                self.journal._busy = True
        except BaseException:
            self._close_journal()
            raise
        send, receive = anyio.create_memory_object_stream[Outcome[T]](self.concurrency)
        self._outcomes = receive
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._feed, send)
        return self

    async def _identify(self) -> dict[str, Any]:
        """What the journal remembers of this job: the App, `job` if given, else the
        first item's actions (read ahead here, sent first)."""
        identity: dict[str, Any] = {"app_id": self.client.app_id, "job": self.job, "shape": None}
        if self.job is not None:
            return identity
        iterator = self._iterator
        if isinstance(iterator, AsyncIterator):
            try:
                self._first = await iterator.__anext__()
            except StopAsyncIteration:
                return identity
        else:
            assert iterator is not None
            self._first = next(iterator, _NOTHING)
            if self._first is _NOTHING:
                return identity
        try:
            self._first_chain = self.build(self._first)
            identity["shape"] = _shape(self._first_chain.compile())
        except Exception:
            self._first_chain = None  # the item fails in its turn
        return identity

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._outcomes is not None
        cancelled = anyio.get_cancelled_exc_class()
        drained: BaseException | None = None
        suppressed: bool | None = False
        try:
            if exc is None:
                try:  # what the caller did not read, so the workers can finish
                    async for _ in self._outcomes:
                        pass
                except BaseException as error:  # cancelled: by a job-wide error, or the caller
                    drained = exc = error
            if exc is not None and not isinstance(exc, cancelled):
                # the caller's own error: stop the job, and let the error through as it is
                self._task_group.cancel_scope.cancel()
                await self._task_group.__aexit__(None, None, None)
            elif exc is not None:
                suppressed = await self._task_group.__aexit__(type(exc), exc, exc.__traceback__)
            else:
                await self._task_group.__aexit__(None, None, None)
        finally:
            self._outcomes.close()
            self.summary.elapsed = time.perf_counter() - self._started
            if self.journal is not None and self._error is None and exc is None:
                try:
                    self.journal.check()
                except JournalLostError as error:
                    self._error = error
            self._close_journal()
        if self._error is not None and (exc is None or suppressed):
            raise self._error
        if drained is not None and not suppressed:
            raise drained
        return suppressed and drained is None

    def _close_journal(self) -> None:
        if self.journal is not None:
            self.journal._busy = False
            if not isinstance(self._journal_arg, Journal):
                self.journal.close()

    def __aiter__(self) -> AsyncIterator[Outcome[T]]:
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

    async def _feed(self, out: MemoryObjectSendStream[Outcome[T]]) -> None:
        work_send, work_receive = anyio.create_memory_object_stream[tuple[int, T]](self.concurrency)
        iterator = self._iterator
        async with out, anyio.create_task_group() as workers:
            for _ in range(self.concurrency):
                workers.start_soon(self._worker, work_receive.clone(), out.clone())
            work_receive.close()
            async with work_send:
                with self._feeding:
                    try:
                        index = 0
                        if self._first is not _NOTHING:
                            await work_send.send((index, self._first))
                            index += 1
                        if isinstance(iterator, AsyncIterator):
                            async for item in iterator:
                                await work_send.send((index, item))
                                index += 1
                        else:
                            assert iterator is not None
                            for item in iterator:
                                await work_send.send((index, item))
                                index += 1
                    except Exception as exc:  # the items themselves failed
                        self._fail(exc, how="feed")
                    finally:
                        close = getattr(iterator, "aclose", None)
                        if close is not None:
                            with anyio.CancelScope(shield=True):
                                await close()

    async def _worker(
        self,
        work: MemoryObjectReceiveStream[tuple[int, T]],
        out: MemoryObjectSendStream[Outcome[T]],
    ) -> None:
        async with work, out:
            async for index, item in work:
                try:
                    outcome = await self._one(index, item)
                except _LimiterFailed as exc:
                    self._fail(exc.error)
                    self.summary.pending += 1
                    continue
                except Exception as exc:  # the journal failed or was lost
                    self._fail(exc, how="now")
                    return
                if outcome is None:
                    continue
                self.summary.add(outcome)
                self.summary.elapsed = time.perf_counter() - self._started
                if self.progress is not None:
                    try:
                        self.progress(self.summary)
                    except Exception as exc:
                        self._fail(exc, how="feed")
                await out.send(outcome)

    async def _one(self, index: int, item: T) -> Outcome[T] | None:
        """The item's outcome, or None when it was stopped before its request left."""
        if self._stopping:
            self.summary.pending += 1
            return None
        with anyio.CancelScope() as scope:
            self._unsent[index] = scope
            try:
                return await self._process(index, item, scope)
            except _Stopped:
                pass
            finally:
                self._unsent.pop(index, None)
                self._in_flight.discard(index)
        self.summary.pending += 1
        return None

    async def _process(self, index: int, item: T, scope: anyio.CancelScope) -> Outcome[T]:
        try:
            key = str(self.key(item)) if self.key is not None else str(index)
        except Exception as exc:
            return Outcome(item, f"#{index}", error=exc)
        try:
            chain = (
                self._first_chain
                if index == 0 and self._first_chain is not None
                else self.build(item)
            )
            call = chain.compile()
        except Exception as exc:  # nothing was sent: the item stays pending
            return Outcome(item, key, error=exc)
        if key in self._active:
            message = f"item {key}: another item with the same key is in progress"
            return Outcome(item, key, error=KartraError(message))
        self._active.add(key)
        try:
            return await self._settle(item, key, chain, call, index, scope)
        except _JOB_WIDE:
            raise
        except Exception as exc:  # whatever else goes wrong stays in the item
            return Outcome(item, key, error=exc)
        finally:
            self._active.discard(key)

    async def _settle(
        self,
        item: T,
        key: str,
        chain: LeadChain,
        call: Call,
        index: int,
        scope: anyio.CancelScope,
    ) -> Outcome[T]:
        entry = self.journal.get(key) if self.journal is not None else None
        run = _Item(self, index, item, key, call, entry, scope)
        if entry is None:
            return await run.send(call, tuple(range(len(call.commands))))
        previous = entry.state
        if entry.digest and entry.digest != run.digest and not self.adopt_journal:
            error = JournalMismatchError(
                f"item {key}: its chain differs from the one the journal recorded "
                f"({previous.value}); not sent. adopt_journal=True trusts the journal",
                path=str(self.journal.path if self.journal else ""),
            )
            return Outcome(item, key, error=error, previous=previous)
        if previous is ItemState.DONE:
            return Outcome(item, key, skipped=True, previous=previous)
        remaining, keep = _remaining(call, entry.applied, entry.lead_id)
        if not keep:  # every action went through
            run._write(ItemState.DONE)
            return Outcome(item, key, state=ItemState.DONE, skipped=True, previous=previous)
        if previous is ItemState.FAILED:
            if not self.retry_failed:
                earlier = KartraError(
                    f"item {key} failed in an earlier run ({entry.error}); not sent again "
                    "without retry_failed=True"
                )
                return Outcome(item, key, error=earlier, skipped=True, previous=previous)
            return await run.send(remaining, keep)
        return await self._resolve(run, chain, remaining, keep)

    async def _resolve(
        self, run: _Item[T], chain: LeadChain, remaining: Call, keep: tuple[int, ...]
    ) -> Outcome[T]:
        """An item in flight when an earlier run stopped, or ambiguous: it may or may
        not have been applied."""
        entry = run.entry
        assert entry is not None
        previous = entry.state
        if remaining.safety is not Safety.UNSAFE:
            return await run.send(remaining, keep)  # a repeat cannot do harm
        if self.retry_ambiguous:
            return await self._send_again(run, remaining, keep)
        cause: AmbiguousResultError | None = None
        if self.reconcile is not False and _reconcilable(remaining):
            try:
                result = await self._sender.reconcile_ambiguous(
                    remaining,
                    priority=self.priority,
                    on_send=run.on_send,
                    sent_at=_sent_at(entry),
                )
            except AmbiguousResultError as exc:
                cause = exc
            except _JOB_WIDE:
                raise
            except Exception as exc:
                return run.failed(exc, remaining, sent=True, previous=previous)
            else:
                return run.finish(result, keep, previous=previous, reconciled=True)
        if callable(self.reconcile):
            try:
                decision = await self.reconcile(run.item, chain)
            except Exception as exc:
                decision = None
                cause = AmbiguousResultError(
                    f"item {run.key}: the reconcile function raised {type(exc).__name__}: {exc}",
                    call=remaining,
                    cause=exc,
                )
            if decision is True:
                run._write(ItemState.DONE, applied=range(len(run.call.commands)))
                return Outcome(
                    run.item, run.key, state=ItemState.DONE, previous=previous, reconciled=True
                )
            if decision is False:
                return await self._send_again(run, remaining, keep)
        if cause is None:
            what = (
                "its request was in flight when an earlier run stopped"
                if previous is ItemState.SENT
                else f"ambiguous in an earlier run ({entry.error})"
            )
            cause = ambiguous_error(remaining, KartraError(what))
        error = AmbiguousResultError(
            f"item {run.key}: {cause} Once you know, run the job again with "
            "retry_ambiguous=True to send what may be missing, or give reconcile=<async "
            "function (item, chain) returning True if it was applied, False if not>",
            call=remaining,
            cause=cause.cause or cause,
        )
        run._write(ItemState.AMBIGUOUS, error=str(cause)[:500])
        return Outcome(run.item, run.key, error=error, previous=previous)

    async def _send_again(
        self, run: _Item[T], remaining: Call, keep: tuple[int, ...]
    ) -> Outcome[T]:
        """Send again what may not have been applied; a chain that creates its lead is
        looked up first, so the lead is never created twice."""
        entry = run.entry
        assert entry is not None
        if not _creates_lead(remaining):
            return await run.send(remaining, keep)
        try:
            lead_id = await self._lookup(run, remaining)
        except _JOB_WIDE:
            raise
        except Exception as exc:
            error = AmbiguousResultError(
                f"item {run.key}: looking the lead up failed ({type(exc).__name__}: {exc}); "
                "nothing was sent again",
                call=remaining,
                cause=exc,
            )
            run._write(ItemState.AMBIGUOUS, error=entry.error)
            return Outcome(run.item, run.key, error=error, previous=entry.state)
        if lead_id is None:
            return await run.send(remaining, keep)
        applied = {*entry.applied, keep[0]}
        rest, rest_keep = _remaining(run.call, applied, lead_id)
        run._write(entry.state, applied=applied, lead_id=lead_id, error=entry.error)
        if not rest_keep:
            run._write(ItemState.DONE)
            return Outcome(run.item, run.key, state=ItemState.DONE, previous=entry.state)
        return await run.send(rest, rest_keep)

    async def _lookup(self, run: _Item[T], call: Call) -> int | None:
        """The id of the lead `call` creates, if it exists."""
        email = call.payload["lead"]["email"]
        search = self._sender.lead(email).search().compile()
        try:
            found = await self._sender.send(search, priority=self.priority, on_send=run.on_send)
        except LeadNotFoundError:
            return None
        return found.lead_id
