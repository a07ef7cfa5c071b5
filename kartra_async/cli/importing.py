"""One `kartra import` run: its phases (create, then `--update-existing` edits), Ctrl-C,
the call count and the command that resumes it."""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable

import anyio
import anyio.abc
import httpx

from .._bulk import CallClock, FanOut, ItemState, Outcome, Summary
from .._chain import LeadChain
from .._client import AsyncKartra
from ..errors import LeadExistsError, LeadNotFoundError
from .output import Meter, Output, ProgressBar
from .rows import Row

__all__ = ["CallCounter", "Import"]

Actions = Callable[[LeadChain], LeadChain]


class CallCounter(httpx.AsyncBaseTransport):
    """Counts every request handed to the transport (lookups, resends and retries
    included), measures their rate (see CallClock) and feeds the progress bar's meter."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.clock = CallClock()
        self.meter: Meter | None = None  #: the running phase's

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.clock.tick()
        if self.meter is not None:
            self.meter.tick()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _exists(outcome: Outcome[Row]) -> bool:
    """create_lead answered 'Lead already exists', now or in an earlier run."""
    if isinstance(outcome.error, LeadExistsError):
        return True
    earlier = outcome.skipped and outcome.previous is ItemState.FAILED
    return earlier and "LeadExistsError" in str(outcome.error)


class Import:
    """One `kartra import` run: its phases, Ctrl-C and the totals."""

    def __init__(
        self,
        kartra: AsyncKartra,
        args: argparse.Namespace,
        output: Output,
        counter: CallCounter | None,
    ) -> None:
        self.kartra, self.args, self.output, self.counter = kartra, args, output, counter
        self.job: FanOut[Row] | None = None
        self.interrupted = False  #: first Ctrl-C: no new rows, the ones in flight finish
        self.aborted = False  #: second Ctrl-C: everything cancelled
        self.abort = anyio.CancelScope()
        self.summaries: list[Summary] = []
        options = {
            "tag": args.tag, "list": args.list, "sequence": args.sequence, "step": args.step,
            "points": args.points, "update_existing": args.update_existing,
        }  # fmt: skip
        self.name = "kartra import " + json.dumps(options, sort_keys=True)

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Ctrl-C once: stop starting rows and finish those in flight; twice: abort."""
        try:
            receiver = anyio.open_signal_receiver(signal.SIGINT)
            signals = receiver.__enter__()
        except NotImplementedError:  # pragma: no cover - no signal handling here (Windows)
            task_status.started()
            return
        try:
            task_status.started()
            async for _ in signals:
                if self.interrupted or self.job is None:
                    if self.job is not None:
                        self.output.note(
                            "kartra: aborting: requests in flight are left as they are "
                            "(the resume looks them up)"
                        )
                        self.aborted = True
                    self.interrupted = True
                    self.abort.cancel()
                    return
                self.interrupted = True
                self.output.note(
                    f"kartra: stopping: no new rows; finishing the {self.job.in_flight} "
                    "request(s) in flight (Ctrl-C again to abort)"
                )
                self.job.stop()
        finally:
            receiver.__exit__(None, None, None)

    async def phase(
        self, rows: list[Row], build: Callable[[Row], LeadChain], label: str, prefix: str
    ) -> list[Outcome[Row]]:
        args = self.args
        outcomes: list[Outcome[Row]] = []
        meter = Meter()
        if self.counter is not None:
            self.counter.meter = meter
        with ProgressBar(self.output, len(rows), label, meter) as update:
            job = self.kartra.fan_out(
                rows,
                build,
                concurrency=args.concurrency,
                journal=args.journal,
                key=lambda row: prefix + row.email.lower(),
                progress=update,
                retry_failed=args.retry_failed,
                retry_ambiguous=args.retry_ambiguous,
                reconcile=self.looked_up if args.reconcile else True,
                job=self.name if args.journal else None,
                adopt_journal=args.adopt_journal,
            )
            self.job = job
            try:
                async with job:
                    async for outcome in job:
                        outcomes.append(outcome)
            finally:
                self.job = None
                self.summaries.append(job.summary)
                if self.counter is not None:
                    self.counter.meter = None
        return outcomes

    async def looked_up(self, row: Row, chain: LeadChain) -> bool | None:
        """--reconcile: the row was applied if its lead has its tags, lists and points
        (one request carries them all); not if there is no such lead; else unknown."""
        try:
            lead = await self.kartra.get_lead(row.email)
        except LeadNotFoundError:
            return False
        lists = {m.name for m in lead.lists}
        has = all(t in lead.tags for t in self.args.tag) and all(n in lists for n in self.args.list)
        if self.args.points:
            has = has and lead.score >= self.args.points
        return True if has else None

    async def run(self, rows: list[Row], actions: Actions) -> list[Outcome[Row]]:
        """Create every row's lead with the actions; with --update-existing, then edit
        the leads that already existed."""
        lead = self.kartra.lead
        outcomes: list[Outcome[Row]] = []
        with self.abort:
            outcomes = await self.phase(
                rows, lambda row: actions(lead(row.email).create(**row.fields)), "import", ""
            )
            if self.args.update_existing and not self.interrupted:
                existing = [o.item for o in outcomes if _exists(o)]
                if existing:
                    more = await self.phase(
                        existing,
                        lambda row: actions(lead(row.email).edit(**row.fields)),
                        "update",
                        "edit:",
                    )
                    outcomes = [o for o in outcomes if not _exists(o)] + more
        return outcomes

    def totals(self, rows: int, outcomes: list[Outcome[Row]]) -> Summary:
        summary = Summary()
        for outcome in outcomes:
            summary.add(outcome)
        summary.pending = rows - len(outcomes)  #: not sent: interrupted
        summary.elapsed = sum(s.elapsed for s in self.summaries)
        summary.stopped = self.interrupted
        if self.counter is not None:
            clock = self.counter.clock
            summary.calls, summary.calling, summary.rate = clock.calls, clock.span, clock.rate
            summary.peak = clock.peak
        return summary
