"""fan_out: lazy and bounded, error isolation, summary and progress, the journal, and
resuming after the process was killed with SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kartra_async import (
    AmbiguousResultError,
    AsyncKartra,
    KartraValidationError,
    RetryPolicy,
    TagNotFoundError,
)
from kartra_async._bulk import Journal, Summary
from kartra_async.testing import FakeKartra, FakeServer

from ._bulk_worker import build_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> FakeKartra:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    return fake


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
        assert kartra.fan_out([], lambda i: None).concurrency == 40
    async with AsyncKartra("app-x", "k", "p", limiter=None) as kartra:
        assert kartra.fan_out([], lambda i: None).concurrency == 64
    with pytest.raises(ValueError, match="concurrency"):
        kartra.fan_out([], lambda i: None, concurrency=0)


async def test_the_job_must_be_entered(fake: FakeKartra) -> None:
    async with fake.client() as kartra:
        with pytest.raises(RuntimeError, match="async with"):
            async for _ in kartra.fan_out([1], lambda i: kartra.lead("a@b.co").search()):
                pass


# ---- the journal


def journal_states(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, state FROM items").fetchall())


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
        assert journal_states(path) == {
            "0": "done",
            "1": "done",
            "2": "failed",
            "3": "done",
            "4": "done",
        }
        second = await kartra.fan_out(range(5), build, journal=path).run()
        assert (second.skipped, second.calls) == (5, 0)
        fake.account.tags.append("Missing")
        fake.account.leads.pop(fake.lead("j2@example.com").id)  # type: ignore[union-attr]
        fake.account.emails.pop("j2@example.com")
        third = await kartra.fan_out(range(5), build, journal=path, retry_failed=True).run()
        assert (third.ok, third.skipped, third.calls) == (1, 4, 1)
    assert journal_states(path)["2"] == "done"


async def test_in_flight_items_after_a_crash(fake: FakeKartra, tmp_path: Path) -> None:
    """Journal rows left in state 'sent': safe chains go again, unsafe ones are ambiguous
    (or reconciled when asked)."""
    path = tmp_path / "job.db"
    journal = Journal(path)
    from kartra_async._commands import Safety

    for key, safety in (("0", Safety.UNSAFE), ("1", Safety.IDEMPOTENT), ("2", Safety.UNSAFE)):
        await journal.record(key, Journal.SENT, safety)
    journal.close()
    fake.add_lead("new2@example.com")  # the crashed run's create_lead for item 2 got through
    fake.add_lead("old1@example.com")

    async with fake.client() as kartra:
        build = build_for(kartra)
        async with kartra.fan_out(range(3), build, journal=path, key=str) as job:
            outcomes = {o.key: o async for o in job}
        assert outcomes["0"].ambiguous
        assert "was in flight when an earlier run stopped" in str(outcomes["0"].error)
        assert outcomes["1"].ok
        assert journal_states(path) == {"0": "ambiguous", "1": "done", "2": "ambiguous"}
        # ambiguous stays ambiguous: never sent again
        again = await kartra.fan_out(range(3), build, journal=path, key=str).run()
        assert (again.ambiguous, again.skipped, again.calls) == (2, 1, 0)
    assert fake.lead("new0@example.com") is None


async def test_reconcile_resolves_an_in_flight_create(fake: FakeKartra, tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    journal = Journal(path)
    from kartra_async._commands import Safety

    await journal.record("0", Journal.SENT, Safety.UNSAFE)
    await journal.record("2", Journal.SENT, Safety.UNSAFE)
    journal.close()
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


async def test_resume_after_sigkill(fake: FakeKartra, tmp_path: Path) -> None:
    """A real process killed with SIGKILL mid-job, then the same job again: no item lost,
    no unsafe chain sent twice."""
    n = 120
    for i in range(1, n, 2):
        fake.add_lead(f"old{i}@example.com")
    fake.faults.latency = (0.05, 0.15)
    path = tmp_path / "job.db"
    worker = Path(__file__).with_name("_bulk_worker.py")
    with FakeServer(fake) as url:
        async with await anyio.open_process(
            [sys.executable, str(worker), url, str(path), str(n)]
        ) as process:
            assert process.stdout is not None
            finished = 0
            with anyio.fail_after(30):
                async for chunk in process.stdout:
                    finished += chunk.count(b"\n")
                    if finished >= 40:
                        break
            process.kill()  # SIGKILL: no cleanup, no journal flush, connections cut
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        states = journal_states(path)
        assert 40 <= sum(s == "done" for s in states.values()) < n
        assert any(s == "sent" for s in states.values())  # in flight at the kill

        fake.faults.latency = None
        kartra = AsyncKartra(
            "fake-app",
            "fake-key",
            "fake-password",
            base_url=url,
            limiter=None,
            retry=RetryPolicy(max_attempts=1),
        )
        async with (
            kartra,
            kartra.fan_out(range(n), build_for(kartra), journal=path, key=str) as job,
        ):
            outcomes = {o.key: o async for o in job}

    assert len(outcomes) == n  # every item accounted for
    creates: dict[str, int] = {}
    for request in fake.requests:
        if request.cmds[:1] == ("create_lead",) and request.applied:
            creates[request.lead["email"]] = creates.get(request.lead["email"], 0) + 1
    for i in range(n):
        outcome = outcomes[str(i)]
        if i % 2 == 0:
            email = f"new{i}@example.com"
            assert creates.get(email, 0) <= 1, email  # never sent twice
            lead = fake.lead(email)
            if outcome.ambiguous:
                assert lead is None or lead.score(fake.now()) in (0, 5)
            else:
                assert outcome.ok
                assert lead is not None
                assert lead.score(fake.now()) == 5  # done before or after the kill, once
        else:
            assert outcome.ok  # idempotent: resent if it was in flight
            assert fake.lead(f"old{i}@example.com").tags == ["VIP"]  # type: ignore[union-attr]
    assert sum(o.ambiguous for o in outcomes.values()) >= 1
    assert all(isinstance(o.error, AmbiguousResultError) for o in outcomes.values() if o.error)


def test_summary_counts() -> None:
    summary = Summary(ok=3, failed={"X": 2}, ambiguous=1, skipped=4, elapsed=2.0, calls=6)
    assert (summary.total, summary.calls_per_second) == (10, 3.0)
