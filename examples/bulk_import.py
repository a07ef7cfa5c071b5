"""A bulk import with a journal, killed mid-run and resumed (guide: "Bulk jobs and
resume").

    python examples/bulk_import.py [--rows 60]

It needs no Kartra account. It serves a fake Kartra (the demo account) over HTTP on
127.0.0.1 from this process, then:

1. starts a second process (this script with --child) that imports the rows with
   `fan_out(..., journal=...)`: each new lead is created, tagged "Customer", put on the
   "Newsletter" list and given 10 points, in ONE request per lead;
2. kills that process with SIGKILL (as `kill -9`, an out-of-memory kill or a pulled plug
   would) once a third of the rows have reached Kartra, some of them still waiting for
   their answer;
3. shows what the journal recorded, and runs the same job again: what was done is
   skipped, what never left is sent, and what was in flight is looked up, never sent
   blindly (giving points twice would double them);
4. checks the fake: every lead exists once, with its tag, its list and 10 points.

The import itself is `import_leads()`; pointed at a real account (KARTRA_APP_ID,
KARTRA_API_KEY, KARTRA_API_PASSWORD), `python examples/bulk_import.py --child
JOURNAL` imports the same rows there, and run again resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kartra_async import AsyncKartra, LeadChain, LeadNotFoundError, Outcome, Summary

POINTS = 10


def rows(count: int) -> list[dict[str, str]]:
    """The file to import (in a real job: a CSV reader, read lazily)."""
    return [{"email": f"reader{i:04}@example.com", "name": f"Reader {i}"} for i in range(count)]


async def import_leads(
    kartra: AsyncKartra, items: Sequence[dict[str, str]], journal: str
) -> Summary:
    """One chain per row, resumable from `journal`. Run it again after any interruption."""

    def build(row: dict[str, str]) -> LeadChain:
        return (
            kartra.lead(row["email"])
            .create(first_name=row["name"])
            .assign_tag("Customer")
            .subscribe_list("Newsletter")
            .give_points(POINTS)
        )

    async def applied(row: dict[str, str], chain: LeadChain) -> bool | None:
        """For a row that may or may not have been applied: the lead has the tag and
        the points (it was), or not (it was not); a lead with the tag but fewer points
        cannot be told apart from one that had them before: stay unsure."""
        try:
            lead = await kartra.get_lead(row["email"])
        except LeadNotFoundError:
            return False
        if "Customer" not in lead.tags:
            return False
        return True if lead.score >= POINTS else None

    async with kartra.fan_out(
        items, build, journal=journal, key=lambda row: row["email"], reconcile=applied
    ) as job:
        async for outcome in job:
            report(outcome)
    return job.summary


def report(outcome: Outcome[dict[str, str]]) -> None:
    if outcome.ambiguous or not outcome.ok:
        print(f"  {outcome.key}: {outcome.state.name}: {outcome.error}", flush=True)


def journal_counts(path: str) -> dict[str, int]:
    """The journal's rows by state (a plain SQLite file, readable once no job holds it)."""
    with sqlite3.connect(path) as db:
        counts = dict(db.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall())
    db.close()
    return counts


async def child(journal: str, count: int) -> None:
    async with AsyncKartra.from_env() as kartra:
        summary = await import_leads(kartra, rows(count), journal)
    print(f"done: {summary.ok} ok, {summary.skipped} skipped", flush=True)


def main(count: int) -> int:
    from kartra_async.testing import FakeKartra, FakeServer

    fake = FakeKartra()
    fake.seed()
    fake.faults.latency = (0.2, 0.5)  # Kartra's answer takes a while: some are in flight
    workdir = tempfile.mkdtemp(prefix="bulk_import.")
    journal = str(Path(workdir) / "import.db")
    with FakeServer(fake) as url:
        env = {
            **os.environ,
            "KARTRA_APP_ID": fake.app_id,
            "KARTRA_API_KEY": fake.api_key,
            "KARTRA_API_PASSWORD": fake.api_password,
            "KARTRA_BASE_URL": url,
        }
        print(f"a fake Kartra at {url}; importing {count} rows, journal {journal}")

        # 1-2. the first run, killed once a third of the rows have reached Kartra
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", journal, "--rows", str(count)], env=env
        )
        deadline = time.monotonic() + 60
        while len(fake.requests) < count // 3:
            if process.poll() is not None or time.monotonic() > deadline:
                print("the first run ended before it could be killed", file=sys.stderr)
                return 1
            time.sleep(0.01)
        process.kill()  # SIGKILL: no cleanup, no last journal write
        process.wait()
        reached = len(fake.requests)
        print(f"run 1: killed (SIGKILL) after {reached} requests reached Kartra")

        # 3. what the journal recorded, and the same job again
        states = journal_counts(journal)
        pending = count - sum(states.values())
        print(
            f"journal: {states.get('done', 0)} done, {states.get('sent', 0)} sent "
            f"(no answer recorded), {pending} never sent"
        )
        summary = asyncio.run(resume(env, journal, count))
        print(
            f"run 2: {summary.skipped} skipped (done in run 1), {summary.ok} ok, of which "
            f"{summary.reconciled} settled by a lookup; {sum(summary.failed.values())} "
            f"failed, {summary.ambiguous} ambiguous"
        )

    # 4. the outcome, as Kartra sees it
    leads = [fake.lead(row["email"]) for row in rows(count)]
    complete = [
        lead
        for lead in leads
        if lead is not None
        and lead.tags == ["Customer"]
        and lead.lists.get("Newsletter")
        and sum(p.amount for p in lead.points) == POINTS
    ]
    creates = sum(1 for request in fake.requests if request.cmds[:1] == ("create_lead",))
    print(
        f"Kartra: {len(complete)} of {count} leads complete (tag, list, {POINTS} points "
        f"each), from {creates} create_lead requests"
    )
    ok = len(complete) == creates == count and summary.ambiguous == 0 and not summary.failed
    return 0 if ok else 1


async def resume(env: dict[str, str], journal: str, count: int) -> Summary:
    async with AsyncKartra(
        env["KARTRA_APP_ID"],
        env["KARTRA_API_KEY"],
        env["KARTRA_API_PASSWORD"],
        base_url=env["KARTRA_BASE_URL"],
    ) as kartra:
        return await import_leads(kartra, rows(count), journal)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--child", metavar="JOURNAL", help="run the import itself")
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.rows))
    else:
        sys.exit(main(args.rows))
