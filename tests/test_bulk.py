"""fan_out: lazy and bounded; failures stay in their item; job-wide errors are raised from
the `async with` with the caller's cancel scopes intact; and the journal: an item's state
follows its request, a stopped or killed job resumes by default without losing or
doubling an item, partial failures retry only what failed, one job per journal.

Every story asserts the fake's final state: every lead present once, every unsafe action
(create_lead, give_points_to_lead) applied exactly once."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import sys
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from kartra_async import (
    AmbiguousResultError,
    AsyncKartra,
    FanOut,
    ItemState,
    JournalError,
    JournalLockedError,
    JournalLostError,
    JournalMismatchError,
    KartraConnectionError,
    KartraValidationError,
    LeadChain,
    RetryPolicy,
    TagNotFoundError,
)
from kartra_async._bulk import CallClock, Journal, JournalEntry, Summary
from kartra_async._commands import Safety
from kartra_async.limits import Limiter
from kartra_async.testing import FakeKartra, FakeServer

from ._bulk_worker import build_for

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("_bulk_worker.py")
SENT, DONE, FAILED, AMBIGUOUS = (
    ItemState.SENT,
    ItemState.DONE,
    ItemState.FAILED,
    ItemState.AMBIGUOUS,
)


@pytest.fixture
def fake() -> FakeKartra:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    return fake


def created(fake: FakeKartra) -> Counter[str]:
    """Email -> how many create_lead calls Kartra applied for it."""
    counts: Counter[str] = Counter()
    for r in fake.requests:
        create = r.cmds[:1] == ("create_lead",) and r.status == 200 and r.applied
        if create and json.loads(r.body).get("status") == "Success":
            counts[r.lead["email"]] += 1
    return counts


def received(fake: FakeKartra, cmd: str) -> set[str]:
    """Emails of the leads Kartra received a `cmd` call for (whatever it answered)."""
    return {r.lead["email"] for r in fake.requests if r.cmds[:1] == (cmd,)}


async def consume(job: FanOut[Any]) -> None:
    async with job:
        async for _ in job:
            pass


async def quiet(fake: FakeKartra) -> None:
    """Wait until the fake takes no more requests (its server thread may still be reading
    what a cancelled or killed client wrote)."""
    count = -1
    with anyio.fail_after(20):
        while count != len(fake.requests):
            count = len(fake.requests)
            await anyio.sleep(0.3)


def rows(path: Path) -> dict[str, ItemState]:
    with Journal(path) as journal:
        return {entry.key: entry.state for entry in journal.entries()}


def score(fake: FakeKartra, email: str) -> int:
    lead = fake.lead(email)
    assert lead is not None, email
    return lead.score(fake.now())


def story(kartra: AsyncKartra) -> Callable[[int], LeadChain]:
    """The issue's job: create, tag, give a point."""

    def build(i: int) -> LeadChain:
        return kartra.lead(f"c{i}@example.com").create().assign_tag("VIP").give_points(1)

    return build


def score_at_least(kartra: AsyncKartra, points: int) -> Any:
    """A reconcile function: the chain was applied if the lead has the points."""

    async def reconcile(item: Any, chain: LeadChain) -> bool | None:
        lead = await kartra.get_lead(chain.payload["lead"]["email"])
        return bool(lead.score >= points)

    return reconcile


# ---- running a job


async def test_every_item_gets_an_outcome_and_one_failure_stops_nothing(fake: FakeKartra) -> None:
    progress: list[int] = []

    def build(i: int) -> Any:
        if i == 3:
            raise RuntimeError("bad row")
        if i == 4:
            return kartra.lead("not an email")
        tag = "Nope" if i == 5 else "VIP"
        return kartra.lead(f"l{i}@example.com").create().assign_tag(tag)

    async with (
        fake.client() as kartra,
        kartra.fan_out(range(20), build, progress=lambda s: progress.append(s.total)) as job,
    ):
        outcomes = {o.key: o async for o in job}
    assert sorted(outcomes, key=int) == [str(i) for i in range(20)]
    assert isinstance(outcomes["3"].error, RuntimeError)
    assert isinstance(outcomes["4"].error, KartraValidationError)
    assert outcomes["5"].result is not None
    assert not outcomes["5"].ok
    assert outcomes["5"].state is FAILED
    assert isinstance(outcomes["5"].result.errors[0], TagNotFoundError)
    assert all(outcomes[str(i)].ok for i in range(20) if i not in (3, 4, 5))
    summary = job.summary
    assert (summary.ok, summary.failed, summary.ambiguous, summary.skipped) == (
        17, {"RuntimeError": 1, "KartraValidationError": 1, "actions failed": 1}, 0, 0,
    )  # fmt: skip
    assert summary.calls == 18
    assert summary.total == 20
    assert progress == list(range(1, 21))
    assert len(fake.account.leads) == 2 + 18


async def test_async_iterables_and_run(fake: FakeKartra) -> None:
    async def emails() -> AsyncIterator[str]:
        for i in range(30):
            yield f"a{i}@example.com"

    async with fake.client() as kartra:
        summary = await kartra.fan_out(
            emails(), lambda e: kartra.lead(e).create(), key=lambda e: e
        ).run()
    assert (summary.ok, summary.total) == (30, 30)
    assert summary.calls_per_second > 0


async def test_items_are_read_lazily(fake: FakeKartra) -> None:
    pulled = 0
    most_ahead = 0
    finished = 0

    def items() -> Iterator[int]:
        nonlocal pulled, most_ahead
        for i in range(2000):
            pulled += 1
            most_ahead = max(most_ahead, pulled - finished)
            yield i

    async with (
        fake.client() as kartra,
        kartra.fan_out(
            items(), lambda i: kartra.lead("alice@example.com").assign_tag("VIP"), concurrency=8
        ) as job,
    ):
        async for _ in job:
            finished += 1
    assert finished == 2000
    # in flight + the two small buffers, never the whole input
    assert most_ahead <= 8 * 3 + 2


async def test_memory_stays_bounded_over_10000_items(fake: FakeKartra) -> None:
    """10,000 lazily generated items: at most a few concurrency's worth is ever read
    ahead, and the traced heap of a 2,000-item stretch stays small."""
    fake.record = False
    pulled = finished = most_ahead = 0

    def items() -> Iterator[int]:
        nonlocal pulled, most_ahead
        for i in range(10_000):
            pulled += 1
            most_ahead = max(most_ahead, pulled - finished)
            yield i

    async with fake.client() as kartra:
        job = kartra.fan_out(
            items(), lambda i: kartra.lead("alice@example.com").assign_tag("VIP"), concurrency=32
        )
        async with job:
            async for _ in job:
                finished += 1
                if finished == 4000:
                    tracemalloc.start()
                if finished == 6000:
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
    assert job.summary.ok == 10_000
    assert most_ahead <= 32 * 3 + 2
    assert peak < 2 * 1024 * 1024, peak


async def test_concurrency_is_sized_to_the_limiter(fake: FakeKartra) -> None:
    async with AsyncKartra("app-x", "k", "p") as kartra:  # 20/s shared limiter
        assert kartra.fan_out([], lambda i: kartra.lead("a@b.co")).concurrency == 40
    async with AsyncKartra("app-x", "k", "p", limiter=None) as kartra:
        assert kartra.fan_out([], lambda i: kartra.lead("a@b.co")).concurrency == 64
    with pytest.raises(ValueError, match="concurrency"):
        kartra.fan_out([], lambda i: kartra.lead("a@b.co"), concurrency=0)


async def test_the_job_must_be_entered_and_runs_once(fake: FakeKartra) -> None:
    async with fake.client() as kartra:
        job = kartra.fan_out([1], lambda i: kartra.lead("a@b.co").search())
        with pytest.raises(RuntimeError, match="async with"):
            async for _ in job:
                pass
        await job.run()
        with pytest.raises(RuntimeError, match="runs once"):
            await job.run()


def test_summary_counts() -> None:
    summary = Summary(ok=3, failed={"X": 2}, ambiguous=1, skipped=4, elapsed=2.0, calls=6)
    assert (summary.total, summary.calls_per_second) == (10, 3.0)
    assert Summary(calls=21, calling=1.0, rate=20.0, elapsed=9.0).calls_per_second == 20.0


def test_call_clock_measures_the_rate_while_calling() -> None:
    """At 20/s, whether paced or in bursts of 20 at each second, with idle time before
    and after: 20.0, never the 21+ that calls over (last - first) gives for bursts."""
    paced, bursts = CallClock(), CallClock()
    for i in range(300):
        paced.tick(100.0 + i / 20)
        bursts.tick(100.0 + i // 20 + (i % 20) * 1e-4)
    assert paced.rate == pytest.approx(20.0)
    assert bursts.rate == pytest.approx(20.0, abs=0.05)
    assert (bursts.calls - 1) / bursts.span > 21  # what a naive rate would say
    assert (paced.peak, bursts.peak, paced.calls) == (20, 20, 300)
    assert paced.span == pytest.approx(299 / 20)
    assert CallClock().rate == 0.0


# ---- failures stay in their item; job-wide errors end the job


class Hostile(httpx.AsyncBaseTransport):
    """The fake, except that the first answer about `email` nests 100,000 arrays deep."""

    def __init__(self, fake: FakeKartra, email: str) -> None:
        self.inner = fake.transport()
        self.marker = email.replace("@", "%40").encode()
        self.armed = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.armed and self.marker in request.content:
            self.armed = False
            return httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000, request=request)
        return response


async def test_a_poisoned_item_fails_alone_and_the_resume_finishes_the_rest(
    fake: FakeKartra, tmp_path: Path
) -> None:
    """An exception from build, from key, from encoding (a lone surrogate that passed
    validation), a validation error and a hostile answer: each is that item's outcome;
    every other item is done in the first run, and the caller is not left cancelled."""
    path = tmp_path / "job.db"
    kartra = AsyncKartra(
        "fake-app", "fake-key", "fake-password", base_url="http://127.0.0.1/api",
        transport=Hostile(fake, "deep@example.com"), limiter=None,
        retry=RetryPolicy(max_attempts=1),
    )  # fmt: skip
    emails = {3: "x", 4: "x", 5: "bad\ud800@example.com", 6: "deep@example.com", 7: "no-at"}

    def build(i: int) -> LeadChain:
        if i == 3:
            raise RuntimeError("bad row")
        return kartra.lead(emails.get(i, f"v{i}@example.com")).create().assign_tag("VIP")

    def key(i: int) -> str:
        if i == 4:
            raise LookupError("no key")
        return str(i)

    async with kartra:
        for _run in range(2):
            async with kartra.fan_out(range(30), build, journal=path, key=key) as job:
                outcomes = {o.key: o async for o in job}
            await anyio.lowlevel.checkpoint()  # the caller is not cancelled
            assert isinstance(outcomes["3"].error, RuntimeError)
            assert isinstance(outcomes["#4"].error, LookupError)
            assert isinstance(outcomes["5"].error, KartraValidationError)  # refused before sending
            assert isinstance(outcomes["7"].error, KartraValidationError)
            valid = [str(i) for i in range(30) if i not in emails]
            assert all(outcomes[k].ok for k in valid)
            if _run == 0:
                assert outcomes["6"].ambiguous  # applied, answer unreadable: not sent again
                assert job.summary.ok == 25
            else:
                assert all(outcomes[k].skipped for k in valid)
                assert (outcomes["6"].ok, outcomes["6"].reconciled) == (True, True)  # tag sent
                assert (job.summary.ok, job.summary.skipped) == (1, 25)
    assert rows(path) == {**dict.fromkeys(valid, DONE), "6": DONE}
    assert created(fake) == Counter({f"v{k}@example.com": 1 for k in valid}) + Counter(
        {"deep@example.com": 1}
    )
    assert all(fake.lead(f"v{k}@example.com").tags == ["VIP"] for k in valid)  # type: ignore[union-attr]
    assert fake.lead("deep@example.com").tags == ["VIP"]  # type: ignore[union-attr]


class FailingLimiter:
    """Grants `grants` requests, then raises `error` (a dead Redis, say)."""

    def __init__(self, grants: int, error: Exception) -> None:
        self.left = grants
        self.error = error

    async def acquire(self, priority: str = "interactive") -> float:
        await anyio.lowlevel.checkpoint()
        if self.left <= 0:
            raise self.error
        self.left -= 1
        return 0.0

    async def backoff(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize(
    "error", [OSError("Connection refused (redis)"), KartraConnectionError("limiter unavailable")]
)
async def test_an_exception_from_the_limiter_ends_the_job(
    fake: FakeKartra, tmp_path: Path, error: Exception
) -> None:
    path = tmp_path / "job.db"
    async with fake.client(limiter=FailingLimiter(10, error)) as kartra:
        job = kartra.fan_out(range(30), story(kartra), journal=path, key=str, concurrency=5)
        with anyio.CancelScope() as outer:
            with pytest.raises(type(error)) as raised:
                await consume(job)
            await anyio.lowlevel.checkpoint()  # the caller's scope is intact
        assert raised.value is error
        assert not outer.cancel_called
        assert (job.summary.ok, job.summary.stopped) == (10, True)
        first = rows(path)
        assert (len(first), set(first.values())) == (10, {DONE})  # the rest: pending, no row
    async with fake.client() as kartra:
        resumed = await kartra.fan_out(range(30), story(kartra), journal=path, key=str).run()
    assert (resumed.ok, resumed.skipped) == (20, 10)
    assert created(fake) == Counter({f"c{i}@example.com": 1 for i in range(30)})
    assert all(score(fake, f"c{i}@example.com") == 1 for i in range(30))


async def test_the_callers_own_error_and_early_exit(fake: FakeKartra) -> None:
    async with fake.client() as kartra:
        build = story(kartra)

        async def fail() -> None:
            async with kartra.fan_out(range(50), build) as job:
                async for _ in job:
                    raise ValueError("mine")

        with pytest.raises(ValueError, match="mine"):  # as it is, not in an ExceptionGroup
            await fail()
        await anyio.lowlevel.checkpoint()
        async with kartra.fan_out(range(50, 60), build) as job:
            async for _ in job:
                break  # the rest still runs
        assert job.summary.ok == 10


async def test_errors_of_progress_and_of_the_items_end_the_job(fake: FakeKartra) -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise OSError("the CSV went away")

    def progress(summary: Summary) -> None:
        if summary.total == 3:
            raise ZeroDivisionError("progress bar bug")

    async with fake.client() as kartra:
        with pytest.raises(OSError, match="CSV went away"):
            await kartra.fan_out(items(), story(kartra), concurrency=2).run()
        with pytest.raises(ZeroDivisionError):
            await kartra.fan_out(range(10, 20), story(kartra), progress=progress).run()
        await anyio.lowlevel.checkpoint()
    # the items taken before the error finish
    assert [created(fake)[f"c{i}@example.com"] for i in range(5)] == [1] * 5


# ---- the journal: state follows the request, resumes by default


@pytest.mark.parametrize("over", ["in_process", "http"])
async def test_a_cancelled_job_resumes_by_default_without_losing_or_doubling(
    tmp_path: Path, over: str
) -> None:
    """The issue's story: create + tag + point for each lead, cancelled mid-job while
    many items wait in the limiter. Only the items whose request left have a row; a
    default resume sends the rest, reconciles the ones in flight, and reports what it
    cannot settle (the point may be applied) with what to check; a reconcile function
    settles those. Every lead once, every point once."""
    n = 40
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    fake.faults.latency = (0.2, 0.4)
    path = tmp_path / "job.db"
    limiter = Limiter(20, 1.0)
    with ExitStack() as stack:
        if over == "http":
            url = stack.enter_context(FakeServer(fake))

            def client() -> AsyncKartra:
                return AsyncKartra(
                    "fake-app", "fake-key", "fake-password", base_url=url, limiter=limiter
                )
        else:

            def client() -> AsyncKartra:
                return fake.client(limiter=limiter)

        async with client() as kartra:
            with anyio.CancelScope() as scope:
                async with kartra.fan_out(
                    range(n), story(kartra), journal=path, key=str, concurrency=20
                ) as job:
                    async for _ in job:
                        if job.summary.total >= 10:
                            scope.cancel()
        assert scope.cancelled_caught
        await quiet(fake)
        first = rows(path)
        got = {k for k in first if f"c{k}@example.com" in received(fake, "create_lead")}
        in_flight = {k for k, state in first.items() if state is SENT}
        assert len(first) <= limiter.stats.grants < n  # rows only for granted requests
        assert len(got) == len(created(fake))  # each request the fake got has its row
        assert set(first) - got <= in_flight  # a row for a request not received: in flight
        assert in_flight
        assert len(first) - len(in_flight) >= 10
        if over == "in_process":
            assert set(first) == got

        fake.faults.latency = None
        async with client() as kartra:
            async with kartra.fan_out(range(n), story(kartra), journal=path, key=str) as job:
                outcomes = {o.key: o async for o in job}
            assert len(outcomes) == n
            assert {k for k, o in outcomes.items() if o.skipped} == set(first) - in_flight
            ambiguous = {k for k, o in outcomes.items() if o.ambiguous}
            assert ambiguous == in_flight & got  # applied: the point may have been given
            for k in ambiguous:
                text = str(outcomes[k].error)
                assert "give_points_to_lead" in text
                assert "kartra.get_lead(email).score" in text
                assert "retry_ambiguous=True" in text
            assert all(o.ok for k, o in outcomes.items() if k not in ambiguous)
            assert created(fake) == Counter({f"c{i}@example.com": 1 for i in range(n)})

            settle = score_at_least(kartra, 1)
            last = await kartra.fan_out(
                range(n), story(kartra), journal=path, key=str, reconcile=settle
            ).run()
            assert (last.ok, last.reconciled, last.skipped) == (
                len(ambiguous),
                len(ambiguous),
                n - len(ambiguous),
            )
    assert rows(path) == {str(i): DONE for i in range(n)}
    assert created(fake) == Counter({f"c{i}@example.com": 1 for i in range(n)})
    for i in range(n):
        assert score(fake, f"c{i}@example.com") == 1
        assert fake.lead(f"c{i}@example.com").tags == ["VIP"]  # type: ignore[union-attr]


async def test_stop_finishes_what_is_in_flight_and_leaves_the_rest_pending(
    tmp_path: Path,
) -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    fake.faults.latency = (0.1, 0.2)
    path = tmp_path / "job.db"
    async with fake.client(limiter=Limiter(20, 1.0)) as kartra:
        async with kartra.fan_out(
            range(40), story(kartra), journal=path, key=str, concurrency=20
        ) as job:
            async for _ in job:
                if job.summary.total >= 5:
                    job.stop()
        summary = job.summary
        assert summary.stopped
        assert summary.pending > 0
        assert (summary.ambiguous, summary.failed) == (0, {})
        first = rows(path)
        assert set(first.values()) == {DONE}  # nothing left in flight
        assert {f"c{k}@example.com" for k in first} == received(fake, "create_lead")
        assert summary.ok == len(first)
        fake.faults.latency = None
        resumed = await kartra.fan_out(range(40), story(kartra), journal=path, key=str).run()
    assert (resumed.ok, resumed.skipped, resumed.ambiguous) == (40 - len(first), len(first), 0)
    assert created(fake) == Counter({f"c{i}@example.com": 1 for i in range(40)})
    assert all(score(fake, f"c{i}@example.com") == 1 for i in range(40))


async def test_journal_skips_done_and_retries_failed_when_asked(
    fake: FakeKartra, tmp_path: Path
) -> None:
    path = tmp_path / "job.db"

    def build(i: int) -> Any:
        tag = "Missing" if i == 2 else "VIP"
        return kartra.lead(f"j{i}@example.com").create().assign_tag(tag)

    async with fake.client() as kartra:
        first = await kartra.fan_out(range(5), build, journal=path).run()
        assert (first.ok, first.failed) == (4, {"actions failed": 1})
        assert rows(path) == {"0": DONE, "1": DONE, "2": FAILED, "3": DONE, "4": DONE}
        second = await kartra.fan_out(range(5), build, journal=path).run()
        assert (second.skipped, second.calls) == (5, 0)
        fake.account.tags.append("Missing")
        third = await kartra.fan_out(range(5), build, journal=path, retry_failed=True).run()
        assert (third.ok, third.skipped, third.calls) == (1, 4, 1)
    assert rows(path)["2"] is DONE
    assert fake.requests[-1].cmds == ("assign_tag",)  # create_lead went through: not again
    assert fake.lead("j2@example.com").tags == ["Missing"]  # type: ignore[union-attr]


async def test_retry_failed_sends_only_the_failed_actions(fake: FakeKartra, tmp_path: Path) -> None:
    """give_points(5).assign_tag("NoSuchTag"): the points went through, the tag did not.
    retry_failed sends the tag alone (by lead id once the chain created the lead): every
    score stays 5."""
    path = tmp_path / "job.db"
    for i in range(10):
        fake.add_lead(f"p{i}@example.com")

    def build(i: int) -> LeadChain:
        if i < 10:
            return kartra.lead(f"p{i}@example.com").give_points(5).assign_tag("NoSuchTag")
        return kartra.lead(f"q{i}@example.com").create().give_points(5).assign_tag("NoSuchTag")

    async with fake.client() as kartra:
        first = await kartra.fan_out(range(20), build, journal=path, key=str).run()
        assert first.failed == {"actions failed": 20}
        with Journal(path) as journal:
            entries = {e.key: e for e in journal.entries()}
        assert {e.state for e in entries.values()} == {FAILED}
        assert entries["0"].applied == (0,)
        assert entries["10"].applied == (0, 1)
        assert entries["10"].lead_id == fake.lead("q10@example.com").id  # type: ignore[union-attr]
        again = await kartra.fan_out(range(20), build, journal=path, key=str).run()
        assert (again.skipped, again.calls) == (20, 0)

        fake.account.tags.append("NoSuchTag")
        before = len(fake.requests)
        third = await kartra.fan_out(
            range(20), build, journal=path, key=str, retry_failed=True
        ).run()
    assert (third.ok, third.calls) == (20, 20)
    resent = fake.requests[before:]
    assert {r.cmds for r in resent} == {("assign_tag",)}
    ids = {str(fake.lead(f"q{i}@example.com").id) for i in range(10, 20)}  # type: ignore[union-attr]
    assert sorted(str(r.lead) for r in resent) == sorted(
        [str({"email": f"p{i}@example.com"}) for i in range(10)]
        + [str({"id": lead_id}) for lead_id in ids]
    )
    for email in [f"p{i}@example.com" for i in range(10)] + [
        f"q{i}@example.com" for i in range(10, 20)
    ]:
        assert score(fake, email) == 5
        assert fake.lead(email).tags == ["NoSuchTag"]  # type: ignore[union-attr]
    assert created(fake) == Counter({f"q{i}@example.com": 1 for i in range(10, 20)})
    assert rows(path) == {str(i): DONE for i in range(20)}


async def test_in_flight_items_after_a_crash(fake: FakeKartra, tmp_path: Path) -> None:
    """Rows left "sent" by a crash: a safe chain is sent again; a chain that creates its
    lead is reconciled by default (not found: sent; found with an unsafe rest:
    ambiguous, with what to check); that one moves on with a reconcile function or
    retry_ambiguous, never creating the lead twice."""
    path = tmp_path / "job.db"
    with Journal(path) as journal:
        for key in ("0", "1", "2", "4"):
            journal.record(JournalEntry(key, SENT, Safety.UNSAFE), durable=True)
    fake.add_lead("new2@example.com")  # the crashed run's create_lead for item 2 got through
    fake.add_lead("old1@example.com")
    fake.add_lead("old3@example.com")
    fake.add_lead("new4@example.com")

    async with fake.client() as kartra:
        build = build_for(kartra)
        async with kartra.fan_out(range(5), build, journal=path, key=str) as job:
            outcomes = {o.key: o async for o in job}
        assert (outcomes["0"].ok, outcomes["0"].reconciled) == (True, True)
        assert (outcomes["1"].ok, outcomes["3"].ok) == (True, True)
        for k in ("2", "4"):
            assert (outcomes[k].ambiguous, outcomes[k].previous) == (True, SENT)
            text = str(outcomes[k].error)
            assert "create_lead was applied" in text
            assert "kartra.get_lead(email).score" in text
            assert "retry_ambiguous=True" in text
        assert rows(path) == {"0": DONE, "1": DONE, "2": AMBIGUOUS, "3": DONE, "4": AMBIGUOUS}

        # ambiguous stays ambiguous by default: looked up again, nothing sent
        before = len(fake.requests)
        again = await kartra.fan_out(range(5), build, journal=path, key=str).run()
        assert (again.ambiguous, again.skipped, again.calls) == (2, 3, 2)
        assert {r.cmds for r in fake.requests[before:]} == {
            ("get_lead",)
        }  # reconcile reads date_joined

        # your function says item 2's points were not given: sent by lead id; item 4 stays
        async def checked(i: int, chain: LeadChain) -> bool | None:
            return False if i == 2 else None

        settled = await kartra.fan_out(
            range(5), build, journal=path, key=str, reconcile=checked
        ).run()
        assert (settled.ok, settled.ambiguous) == (1, 1)
        given = [r for r in fake.requests[before:] if r.cmds == ("give_points_to_lead",)]
        assert [r.lead for r in given] == [{"id": str(fake.lead("new2@example.com").id)}]  # type: ignore[union-attr]

        # retry_ambiguous: item 4 looked up, then its points sent by id
        forced = await kartra.fan_out(
            range(5), build, journal=path, key=str, retry_ambiguous=True
        ).run()
        assert (forced.ok, forced.skipped) == (1, 4)
    assert rows(path) == {str(i): DONE for i in range(5)}
    assert created(fake) == Counter({"new0@example.com": 1})
    assert [score(fake, f"new{i}@example.com") for i in (0, 2, 4)] == [5, 5, 5]
    assert fake.lead("old1@example.com").tags == ["VIP"]  # type: ignore[union-attr]


async def test_an_ambiguous_unsafe_chain_is_settled_by_your_function(
    fake: FakeKartra, tmp_path: Path
) -> None:
    path = tmp_path / "job.db"
    with Journal(path) as journal:
        journal.record(JournalEntry("bob", SENT, Safety.UNSAFE))
    fake.lead("bob@example.com").points.clear()  # type: ignore[union-attr]
    async with fake.client() as kartra:

        def build(name: str) -> LeadChain:
            return kartra.lead(f"{name}@example.com").give_points(3)

        ambiguous = await kartra.fan_out(["bob"], build, journal=path, key=str).run()
        assert (ambiguous.ambiguous, ambiguous.calls) == (1, 0)
        await kartra.lead("bob@example.com").give_points(3)  # what the crashed run did
        settled = await kartra.fan_out(
            ["bob"], build, journal=path, key=str, reconcile=score_at_least(kartra, 3)
        ).run()
        assert (settled.ok, settled.reconciled, settled.calls) == (1, 1, 0)
    assert score(fake, "bob@example.com") == 3
    assert rows(path) == {"bob": DONE}


async def test_a_failed_resend_of_an_item_in_flight_stays_ambiguous(
    fake: FakeKartra, tmp_path: Path
) -> None:
    """The earlier run's request may have been applied: a resend that fails (here the
    connection is refused every time) does not make the item "failed", which
    retry_failed would send again."""
    path = tmp_path / "job.db"
    with Journal(path) as journal:
        journal.record(JournalEntry("bob", SENT, Safety.UNSAFE))
    fake.faults.inject("refuse", times=3)
    async with fake.client(retry=RetryPolicy(max_attempts=3, backoff_base=0)) as kartra:

        def build(name: str) -> LeadChain:
            return kartra.lead(f"{name}@example.com").give_points(3)

        forced = await kartra.fan_out(
            ["bob"], build, journal=path, key=str, retry_ambiguous=True
        ).run()
        assert (forced.ambiguous, forced.calls, forced.failed) == (1, 3, {})
        assert rows(path) == {"bob": AMBIGUOUS}
        again = await kartra.fan_out(["bob"], build, journal=path, key=str, retry_failed=True).run()
        assert (again.ambiguous, again.calls) == (1, 0)
    assert score(fake, "bob@example.com") == 0


async def test_reconcile_resolves_an_in_flight_create(fake: FakeKartra, tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    with Journal(path) as journal:
        journal.record(JournalEntry("0", SENT, Safety.UNSAFE))
        journal.record(JournalEntry("2", SENT, Safety.UNSAFE))
    fake.add_lead("new2@example.com")  # item 2 was created before the crash; item 0 was not

    async with fake.client() as kartra:

        def build(i: int) -> Any:
            return kartra.lead(f"new{i}@example.com").create().assign_tag("VIP")

        async with kartra.fan_out([0, 2], build, journal=path, key=str, reconcile=True) as job:
            outcomes = {o.key: o async for o in job}
    assert outcomes["0"].ok
    assert outcomes["2"].ok
    assert (
        outcomes["2"].result.actions[0].message
        == "reconciled: the lead exists after an ambiguous create_lead"
    )  # type: ignore[union-attr]
    assert fake.lead("new0@example.com").tags == ["VIP"]  # type: ignore[union-attr]
    assert fake.lead("new2@example.com").tags == ["VIP"]  # type: ignore[union-attr]
    creates = [r for r in fake.requests if r.cmds[:1] == ("create_lead",)]
    assert [r.lead["email"] for r in creates] == ["new0@example.com"]
    assert job.summary.calls == 4  # two lookups, one create chain, one assign_tag by id


# ---- one job per journal, and the journal is the journal


async def test_one_job_per_journal_in_process(fake: FakeKartra, tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    async with fake.client() as kartra:
        async with kartra.fan_out(range(5), story(kartra), journal=path, key=str) as job:
            with pytest.raises(JournalLockedError, match="another job is using it"):
                async with kartra.fan_out(range(5), story(kartra), journal=path, key=str):
                    pass
            with pytest.raises(JournalLockedError) as raised:
                Journal(path)
            again = pickle.loads(pickle.dumps(raised.value))
            assert (type(again), str(again), again.path) == (
                JournalLockedError, str(raised.value), str(path),
            )  # fmt: skip
            outcomes = [o async for o in job]
        assert len(outcomes) == 5
        with Journal(path) as journal:  # one open Journal, two jobs at once
            async with kartra.fan_out(range(5), story(kartra), journal=journal, key=str) as job:
                with pytest.raises(JournalLockedError):
                    await kartra.fan_out(range(5), story(kartra), journal=journal).run()
                outcomes = [o async for o in job]
            again = await kartra.fan_out(range(5), story(kartra), journal=journal, key=str).run()
    assert {o.skipped for o in outcomes} == {True}
    assert again.skipped == 5
    assert created(fake) == Counter({f"c{i}@example.com": 1 for i in range(5)})


async def test_two_processes_on_one_journal(fake: FakeKartra, tmp_path: Path) -> None:
    """A second process on a journal in use fails at once with JournalLockedError and
    sends nothing; the first finishes: every lead once, every point once."""
    n = 40
    for i in range(1, n, 2):
        fake.add_lead(f"old{i}@example.com")
    fake.faults.latency = (0.05, 0.1)
    path = tmp_path / "job.db"
    gate = tmp_path / "go"
    with FakeServer(fake) as url:
        command = [sys.executable, str(WORKER), url, str(path), str(n)]
        async with await anyio.open_process([*command, str(gate)]) as first:
            assert first.stdout is not None
            with anyio.fail_after(60):
                await first.stdout.receive()  # the first job is under way, held at the gate
                second = await anyio.run_process(command, check=False)
                gate.touch()
                async for _ in first.stdout:
                    pass
                await first.wait()
    assert first.returncode == 0
    assert second.returncode == 3
    assert second.stdout == b""
    assert b"ERROR JournalLockedError" in second.stderr
    assert b"another job is using it" in second.stderr
    assert rows(path) == {str(i): DONE for i in range(n)}
    assert created(fake) == Counter({f"new{i}@example.com": 1 for i in range(0, n, 2)})
    assert all(score(fake, f"new{i}@example.com") == 5 for i in range(0, n, 2))


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_journal_lost_mid_run_stops_the_job(
    fake: FakeKartra, tmp_path: Path, how: str
) -> None:
    path = tmp_path / "job.db"
    Journal(tmp_path / "other.db").close()

    def lose(summary: Summary) -> None:
        if summary.total == 10:
            if how == "deleted":
                for file in tmp_path.glob("job.db*"):
                    file.unlink()
            else:
                os.replace(tmp_path / "other.db", path)

    async with fake.client() as kartra:
        job = kartra.fan_out(
            range(60), story(kartra), journal=path, key=str, concurrency=4, progress=lose
        )
        with anyio.CancelScope() as outer:
            with pytest.raises(JournalLostError, match=f"was {how}"):
                await consume(job)
            await anyio.lowlevel.checkpoint()
        assert not outer.cancel_called
    creates = created(fake)
    assert set(creates.values()) == {1}
    assert 10 <= len(creates) <= 10 + 4  # at most the requests already in flight
    assert all(score(fake, email) == 1 for email in creates)


async def test_a_journal_deleted_after_the_last_write_is_reported(
    fake: FakeKartra, tmp_path: Path
) -> None:
    path = tmp_path / "job.db"

    def delete() -> None:
        for file in tmp_path.glob("job.db*"):
            file.unlink()

    async with fake.client() as kartra:
        job = kartra.fan_out(range(3), story(kartra), journal=path, key=str, progress=None)

        async def run_and_delete() -> None:
            async with job:
                async for _ in job:
                    pass
                delete()  # after the last write, before the job ends

        with pytest.raises(JournalLostError, match="was deleted"):
            await run_and_delete()


@pytest.mark.parametrize("kind", ["empty", "text", "sqlite", "older"])
async def test_an_empty_or_foreign_file_is_not_a_journal(
    fake: FakeKartra, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "job.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("email,first_name\nann@example.com,Ann\n")
    else:
        with closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE items (key TEXT PRIMARY KEY, state TEXT)")
            if kind == "older":
                db.execute("INSERT INTO items VALUES ('0', 'done')")
            db.commit()
    original = path.read_bytes()
    message = "the file is empty" if kind == "empty" else "is not a kartra_async journal"
    async with fake.client() as kartra:
        with pytest.raises(JournalError, match=message) as raised:
            async with kartra.fan_out(range(3), story(kartra), journal=path):
                pass
    assert type(raised.value) is JournalError
    assert raised.value.path == str(path)
    assert fake.requests == []
    assert path.read_bytes() == original


async def test_a_journal_from_another_job_is_refused(fake: FakeKartra, tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    async with fake.client() as kartra:

        def tag(i: int) -> LeadChain:
            return kartra.lead(f"a{i}@example.com").create(first_name=f"A{i}").assign_tag("VIP")

        def points(i: int) -> LeadChain:
            return kartra.lead(f"a{i}@example.com").create(first_name=f"A{i}").give_points(5)

        await kartra.fan_out(range(3), tag, journal=path).run()
        before = len(fake.requests)
        with pytest.raises(JournalMismatchError, match="written by a different job") as raised:
            await kartra.fan_out(range(5), points, journal=path).run()
        assert "adopt_journal=True" in str(raised.value)
        assert len(fake.requests) == before

        # the same job with one item changed since the journal recorded it
        def renamed(i: int) -> LeadChain:
            return tag(i) if i != 1 else kartra.lead("a1@example.com").create().assign_tag("VIP")

        async with kartra.fan_out(range(4), renamed, journal=path) as job:
            outcomes = {o.key: o async for o in job}
        assert isinstance(outcomes["1"].error, JournalMismatchError)
        assert "differs from the one the journal recorded" in str(outcomes["1"].error)
        assert (outcomes["0"].skipped, outcomes["2"].skipped, outcomes["3"].ok) == (True,) * 3

        adopted = await kartra.fan_out(range(5), points, journal=path, adopt_journal=True).run()
        assert (adopted.skipped, adopted.ok) == (4, 1)
    assert created(fake) == Counter({f"a{i}@example.com": 1 for i in range(5)})


# ---- kill -9 over real HTTP


async def test_resume_after_sigkill(fake: FakeKartra, tmp_path: Path) -> None:
    """A real process killed with SIGKILL mid-job, then the same job again: only the items
    truly in flight have a "sent" row; the default resume sends the pending ones and
    reconciles the rest; a reconcile function settles what stays ambiguous. Every lead
    once, every point once."""
    n = 120
    for i in range(1, n, 2):
        fake.add_lead(f"old{i}@example.com")
    fake.faults.latency = (0.05, 0.15)
    path = tmp_path / "job.db"
    with FakeServer(fake) as url:
        async with await anyio.open_process(
            [sys.executable, str(WORKER), url, str(path), str(n)]
        ) as process:
            assert process.stdout is not None
            finished = 0
            with anyio.fail_after(60):
                async for chunk in process.stdout:
                    finished += chunk.count(b"\n")
                    if finished >= 40:
                        break
            process.kill()  # SIGKILL: no cleanup, no journal flush, connections cut
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        await quiet(fake)
        states = rows(path)
        in_flight = {k for k, s in states.items() if s is SENT}
        got = {
            k
            for k in states
            if f"new{k}@example.com" in received(fake, "create_lead")
            or f"old{k}@example.com" in received(fake, "assign_tag")
        }
        assert 40 <= sum(s is DONE for s in states.values()) < n
        assert 1 <= len(in_flight) <= 10  # concurrency 10: only what was truly in flight
        assert set(states) - in_flight <= got  # every other row: the fake got its request
        assert len(created(fake)) == sum(int(k) % 2 == 0 for k in got)

        fake.faults.latency = None
        kartra = AsyncKartra(
            "fake-app", "fake-key", "fake-password", base_url=url, limiter=None,
            retry=RetryPolicy(max_attempts=1),
        )  # fmt: skip
        async with kartra:
            async with kartra.fan_out(range(n), build_for(kartra), journal=path, key=str) as job:
                outcomes = {o.key: o async for o in job}
            assert len(outcomes) == n  # every item accounted for
            ambiguous = {k for k, o in outcomes.items() if o.ambiguous}
            # applied creates with points in flight at the kill: may have been applied
            assert ambiguous == {k for k in in_flight & got if int(k) % 2 == 0}
            assert all(isinstance(outcomes[k].error, AmbiguousResultError) for k in ambiguous)
            assert all(o.ok for k, o in outcomes.items() if k not in ambiguous)
            settle = score_at_least(kartra, 5)
            last = await kartra.fan_out(
                range(n), build_for(kartra), journal=path, key=str, reconcile=settle
            ).run()
            assert (last.ok, last.skipped) == (len(ambiguous), n - len(ambiguous))

    assert rows(path) == {str(i): DONE for i in range(n)}
    assert created(fake) == Counter({f"new{i}@example.com": 1 for i in range(0, n, 2)})
    for i in range(n):
        if i % 2 == 0:
            assert score(fake, f"new{i}@example.com") == 5
        else:
            assert fake.lead(f"old{i}@example.com").tags == ["VIP"]  # type: ignore[union-attr]
