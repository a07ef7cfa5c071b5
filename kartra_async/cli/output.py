"""What the `kartra` command prints: tables (rich) by default, JSON with `--json`;
notes, rejected rows and the progress bar on stderr.

Every result is shown the same way whatever the command: names one per line, records
as a field/value table followed by a table for each list they hold, lists of records
as a table with a column per field.
"""

from __future__ import annotations

import enum
import json
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

import attrs
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from .._bulk import Outcome, Summary
from .rows import Rejected, Row

__all__ = ["Meter", "Output", "jsonable", "wrap"]

PIPE_WIDTH = 100  #: the width of tables and wrapped notes when not printing to a terminal


def jsonable(value: Any) -> Any:
    """Models, dates, Decimals and enums as plain JSON values (a model's `raw` left out)."""
    if attrs.has(type(value)):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if f.name != "raw"
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _cell(value: Any) -> str:
    """A value as table text: lists joined, records as `key=value` pairs, nothing for
    None and empty values."""
    value = jsonable(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items() if _cell(v))
    return str(value)


def _is_record(value: Any) -> bool:
    return attrs.has(type(value)) or isinstance(value, Mapping)


def _fields(record: Any) -> dict[str, Any]:
    if isinstance(record, Mapping):
        return {str(k): v for k, v in record.items()}
    return {f.name: getattr(record, f.name) for f in attrs.fields(type(record)) if f.name != "raw"}


def wrap(text: str, width: int, indent: str = "    ") -> str:
    """`text` in lines of at most `width` characters, broken between words only (a word
    longer than a line stays whole), continuation lines indented."""
    return textwrap.fill(
        text,
        width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _width(stream: TextIO) -> int | None:
    """The terminal's width, or a fixed one for a pipe or file (so output is the same
    wherever it goes)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty else PIPE_WIDTH


class Output:
    """Tables (rich) or JSON on stdout; notes and progress on stderr."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out, self.err = out, err
        self.console = Console(file=out, width=_width(out), soft_wrap=False, highlight=False)
        self.err_console = Console(file=err, width=_width(err), highlight=False)

    @property
    def note_width(self) -> int:
        return self.err_console.width

    def note(self, text: str) -> None:
        """A line for the user on stderr (above the progress bar while one is shown)."""
        if self.err_console.is_terminal:
            self.err_console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.err)

    def item(self, text: str) -> None:
        """One entry of a list on stderr (a rejected row, a failed row), wrapped
        between words, never cut."""
        print(wrap(f"  {text}", self.note_width), file=self.err)

    def json(self, value: Any) -> None:
        print(json.dumps(jsonable(value), indent=2, ensure_ascii=False), file=self.out)

    def show(self, value: Any, title: str = "") -> None:
        """Any result: JSON with --json, else names one per line, a record as a table of
        its fields (and a table per list of records it holds), a list of records as a
        table with a column per field."""
        if self.as_json:
            self.json(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            for name in value:
                print(name, file=self.out)
        elif isinstance(value, (list, tuple)):
            self.records(value, title=title)
        elif _is_record(value):
            self.record(value, title=title)
        else:
            print(_cell(value), file=self.out)

    def record(self, record: Any, title: str = "") -> None:
        """Fields with a value as `field  value` rows; each non-empty list of records
        after it as its own table."""
        pairs: list[tuple[str, str]] = []
        nested: list[tuple[str, Sequence[Any]]] = []
        for name, value in _fields(record).items():
            if isinstance(value, (list, tuple)) and value and all(_is_record(v) for v in value):
                nested.append((name, value))
            elif _cell(value) != "":
                pairs.append((name, _cell(value)))
        self.table(("field", "value"), pairs, title=title)
        for name, values in nested:
            self.out.write("\n")
            self.records(values, title=name)

    def records(self, records: Sequence[Any], title: str = "") -> None:
        """A table with a column per field of the records."""
        rows = [_fields(r) for r in records]
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        self.table(columns, [[_cell(row.get(c)) for c in columns] for row in rows], title=title)

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str = ""
    ) -> None:
        table = Table(
            *columns,
            title=title or None,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
        )
        for row in rows:
            table.add_row(*row)
        self.console.print(table)


class Meter:
    """Calls per second over a window that starts at the first call, and the time the
    rest will take at that rate.

    Between calls the rate is the calls' own spacing; when the next call is later than
    that spacing (a pause, a burst then a wait) the window runs on to now, so the rate
    falls as it really does and a burst at the start does not read as a huge rate.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.calls = 0
        self.first = self.last = 0.0

    def tick(self) -> None:
        """A call left."""
        now = self.clock()
        if not self.calls:
            self.first = now
        self.calls += 1
        self.last = now

    @property
    def rate(self) -> float | None:
        """Calls per second since the first call; None before a second call."""
        if self.calls < 2:
            return None
        intervals = self.calls - 1
        spacing = (self.last - self.first) / intervals
        span = max(self.last - self.first, self.clock() - self.first - spacing)
        return intervals / span if span > 0 else None

    def remaining(self, calls: int) -> float | None:
        """Seconds `calls` more calls will take at the current rate (None: no rate yet)."""
        rate = self.rate
        return calls / rate if rate else None


def clock_text(seconds: float | None) -> str:
    """`0:01:05`, or `-:--:--` without an estimate."""
    if seconds is None:
        return "-:--:--"
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class ProgressBar:
    """A rich progress bar on stderr while a phase runs: rows done of all, calls per
    second and time remaining (from `meter`, whose window starts at the phase's first
    call), ok and failed counts. Only on a terminal, never with --json."""

    def __init__(self, output: Output, total: int, label: str, meter: Meter) -> None:
        self.output, self.total, self.label, self.meter = output, total, label, meter
        self.bar: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> Callable[[Summary], None]:
        if not self.output.as_json and self.total and self.output.err_console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(self.meter),
                _RemainingColumn(self.meter),
                TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
                console=self.output.err_console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, ok=0, failed=0)
        return self.update

    def update(self, summary: Summary) -> None:
        if self.bar is not None:
            failed = sum(summary.failed.values()) + summary.ambiguous
            self.bar.update(self.task, completed=summary.total, ok=summary.ok, failed=failed)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def rate_text(meter: Meter) -> str:
    rate = meter.rate
    return "-- calls/s" if rate is None else f"{rate:.1f} calls/s"


def remaining_text(meter: Meter, left: int) -> str:
    return clock_text(meter.remaining(left) if left else 0.0)


class _RateColumn(ProgressColumn):
    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter

    def render(self, task: Task) -> Text:
        return Text(rate_text(self.meter))


class _RemainingColumn(ProgressColumn):
    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter

    def render(self, task: Task) -> Text:
        left = int((task.total or 0) - task.completed)
        return Text(remaining_text(self.meter, left), style="progress.remaining")


def report_rejected(rejected: Sequence[Rejected], output: Output) -> None:
    """The rows that were not sent, one per line, each reason whole."""
    if not rejected or output.as_json:
        return
    output.note(f"{len(rejected)} row(s) rejected:")
    for r in rejected:
        output.item(f"row {r.number}: {r.reason}")


def reason(outcome: Outcome[Row]) -> str:
    """Why a row failed: the error, or each failed action's."""
    if outcome.error is not None:
        return f"{type(outcome.error).__name__}: {outcome.error}"
    assert outcome.result is not None
    return "; ".join(str(e) for e in outcome.result.errors)


def report_import(
    summary: Summary,
    problems: Sequence[Outcome[Row]],
    rejected: Sequence[Rejected],
    output: Output,
    guidance: Sequence[str],
    resume: str | None,
) -> None:
    """The totals of an import (a table, or one JSON object), then its failed and
    rejected rows and what to do next."""
    if output.as_json:
        output.json(
            {
                "ok": summary.ok,
                "failed": summary.failed,
                "ambiguous": summary.ambiguous,
                "skipped": summary.skipped,
                "pending": summary.pending,
                "reconciled": summary.reconciled,
                "rejected": [attrs.asdict(r) for r in rejected],
                "problems": [
                    {"row": o.item.number, "email": o.item.email, "error": reason(o)}
                    for o in problems
                ],
                "elapsed": round(summary.elapsed, 3),
                "calls": summary.calls,
                "calls_per_second": round(summary.calls_per_second, 2),
                "peak_calls_per_second": summary.peak,
                "interrupted": summary.stopped,
                "resume": resume,
            }
        )
        for text in guidance:
            output.note(f"kartra: {text}")
        return
    rows = [
        ("ok", str(summary.ok)),
        *((f"failed: {k}", str(v)) for k, v in sorted(summary.failed.items())),
        ("ambiguous", str(summary.ambiguous)),
        ("skipped (journal)", str(summary.skipped)),
        *([("not sent (interrupted)", str(summary.pending))] if summary.stopped else []),
        *([("settled by a lookup", str(summary.reconciled))] if summary.reconciled else []),
        ("rejected rows", str(len(rejected))),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("calls (lookups included)", str(summary.calls)),
        ("calls/s while calling", f"{summary.calls_per_second:.1f}"),
        ("most calls in one second", str(summary.peak)),
    ]
    output.table(("outcome", "count"), rows, title="kartra import")
    for outcome in problems:
        output.item(f"row {outcome.item.number} ({outcome.item.email}): {reason(outcome)}")
    report_rejected(rejected, output)
    for text in guidance:
        output.note(f"kartra: {text}")
