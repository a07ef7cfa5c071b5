"""The shell sessions on the documentation site run too: every ```console block of a
page, in page order, against a real `python -m kartra_async.testing` server.

How a page's sessions run:

- A line `$ command` (continued by lines ending in `\\`) is run by bash in a temporary
  directory, with this interpreter's `bin` first on PATH (so `python` is the one the
  suite runs on). It must exit 0, and its output must be the lines that follow it, up
  to the next `$` line; `...` in them stands for any text (as doctest's ELLIPSIS).
- `$ python -m kartra_async.testing ... --port 8765 ...` (or `$ kartra fake-server ...`,
  the same server) starts the fake server in the
  background, on a free port instead: the port the page shows (8765) becomes that port
  in every later command and output. Its banner is the expected
  output. Starting another one stops the one running (SIGINT, status 0 expected), as
  does the end of the page.
- A block titled with a file name (```json title="seed.json"```, ```php title="x.php"```)
  is written to the directory when the page reaches it, for later commands to use.
- `<!-- no-run: reason -->` on the line before a block leaves it out, as for Python.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from .test_docs_samples import _FENCE, _NO_RUN, _TITLE, PAGES, ROOT

PORT_SHOWN = "8765"  #: the port the pages show; replaced by the server's real one
IN_CI = os.environ.get("CI", "").lower() == "true"
TOOLS = ("curl", "php", "jq")  #: outside tools a session may call
SERVER = re.compile(
    rf"^(python -m kartra_async\.testing|kartra fake-server) .*--port {PORT_SHOWN}\b"
)


@attrs.frozen
class Command:
    where: str  #: "page:line"
    line: str  #: the command, continuation lines joined
    expected: str  #: the output shown after it


@attrs.frozen
class FileBlock:
    where: str
    name: str
    text: str


def page_steps(path: Path) -> list[Command | FileBlock]:
    """The commands of a page's ```console blocks and its titled non-Python files, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    steps: list[Command | FileBlock] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        end = i + 1
        while end < len(lines) and not re.match(
            rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}\s*$", lines[end]
        ):
            end += 1
        body = [line[len(indent) :] for line in lines[i + 1 : end]]
        lang = info.split(" ", 1)[0].lower()
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        title = _TITLE.search(info)
        if _NO_RUN.match(before):
            pass
        elif lang == "console":
            steps.extend(_commands(body, f"{name}:{i + 2}", i + 2))
        elif title and lang != "python":
            steps.append(FileBlock(f"{name}:{i + 1}", title["title"], "\n".join(body) + "\n"))
        i = end + 1
    return steps


def _commands(body: list[str], where: str, first_line: int) -> list[Command]:
    assert (body or [""])[0].startswith("$ "), f"{where}: a console block starts with `$ `"
    commands: list[Command] = []
    j = 0
    while j < len(body):
        start = j
        parts = [body[j][2:]]
        while parts[-1].endswith("\\"):
            j += 1
            parts[-1] = parts[-1][:-1]
            parts.append(body[j].strip())
        j += 1
        output = []
        while j < len(body) and not body[j].startswith("$ "):
            output.append(body[j])
            j += 1
        line = " ".join(p.strip() for p in parts)
        commands.append(
            Command(f"{where.split(':')[0]}:{first_line + start}", line, "\n".join(output))
        )
    return commands


def matches(expected: str, actual: str) -> bool:
    """Equal after trailing whitespace, with `...` in `expected` standing for any text."""
    expected = "\n".join(line.rstrip() for line in expected.strip("\n").splitlines())
    actual = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines())
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, re.S) is not None


class Session:
    """A page's shell: a directory, an environment, at most one fake server."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        self.server: subprocess.Popen[str] | None = None
        self.port = PORT_SHOWN

    def ported(self, text: str) -> str:
        return text.replace(PORT_SHOWN, self.port)

    def run(self, command: Command) -> None:
        if SERVER.match(command.line):
            self.start(command)
            return
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {self.ported(command.line)}"],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (
            f"{command.where}: `{command.line}` exited {done.returncode}\n{done.stderr}"
        )
        expected = self.ported(command.expected)
        assert matches(expected, done.stdout), (
            f"{command.where}: `{command.line}` printed\n{done.stdout}\nnot\n{expected}"
        )

    def start(self, command: Command) -> None:
        self.stop()
        line = re.sub(rf"--port {PORT_SHOWN}\b", "--port 0", command.line)
        assert line != command.line, f"{command.where}: start the server with --port {PORT_SHOWN}"
        self.server = server = subprocess.Popen(
            ["bash", "-c", f"exec {line}"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        banner: list[str] = []
        deadline = time.monotonic() + 60
        while not banner or banner[-1] != "Ctrl-C stops it.":
            text = server.stdout.readline()
            assert text, f"{command.where}: the server ended: {server.communicate()[1]}"
            assert time.monotonic() < deadline, f"{command.where}: no banner in 60 s"
            banner.append(text.rstrip("\n"))
        found = re.search(r"http://127\.0\.0\.1:(\d+)/api", banner[0])
        assert found, banner
        self.port = found.group(1)
        expected = self.ported(command.expected)
        assert matches(expected, "\n".join(banner)), (
            f"{command.where}: the banner is\n{chr(10).join(banner)}\nnot\n{expected}"
        )

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
            raise AssertionError("the fake server did not stop on SIGINT within 30 s") from None
        assert server.returncode == 0, f"the server ended with {server.returncode}: {err}"
        self.port = PORT_SHOWN


def _pages() -> list[Any]:
    params = []
    for path in PAGES:
        commands = [s for s in page_steps(path) if isinstance(s, Command)]
        if commands:
            name = path.relative_to(ROOT).as_posix()
            params.append(pytest.param(path, id=f"{name}: {len(commands)} commands"))
    return params


@pytest.mark.parametrize("path", _pages())
def test_page_console_sessions(path: Path, tmp_path: Path) -> None:
    steps = page_steps(path)
    text = " ".join(s.line for s in steps if isinstance(s, Command))
    for tool in TOOLS:
        if re.search(rf"(^|[\s|;&(]){tool}\s", text) and shutil.which(tool) is None:
            if IN_CI:
                raise RuntimeError(f"CI=true but {tool} is missing")
            pytest.skip(f"{tool} is not installed; {path.name}'s sessions call it")
    session = Session(tmp_path)
    try:
        for step in steps:
            if isinstance(step, FileBlock):
                (tmp_path / step.name).write_text(step.text, encoding="utf-8")
            else:
                session.run(step)
    finally:
        session.stop()


# --------------------------------------------------------------------------- the reader


def test_the_http_fake_guide_has_its_sessions() -> None:
    """The reader finds the guide's commands (a reader that finds nothing checks nothing)."""
    steps = page_steps(ROOT / "docs" / "guides" / "http-fake.md")
    commands = [s for s in steps if isinstance(s, Command)]
    assert len(commands) >= 25
    assert sum(1 for c in commands if SERVER.match(c.line)) == 5
    assert [s.name for s in steps if isinstance(s, FileBlock)] == ["client.php", "shop_seed.json"]


def test_the_reader_splits_commands_outputs_and_files(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```console\n"
        "$ echo one \\\n"
        "    two\n"
        "one two\n"
        "$ true\n"
        "```\n\n"
        '```json title="seed.json"\n{"tags": []}\n```\n\n'
        "<!-- no-run: needs a terminal -->\n```console\n$ top\n```\n",
        encoding="utf-8",
    )
    steps = page_steps(page)
    assert [(type(s).__name__, getattr(s, "line", getattr(s, "name", ""))) for s in steps] == [
        ("Command", "echo one two"),
        ("Command", "true"),
        ("FileBlock", "seed.json"),
    ]
    assert steps[0].expected == "one two"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("expected", "actual", "result"),
    [
        ("a\nb", "a\nb\n", True),
        ('{"at": ..., "ok": true}', '{"at": 12.5, "ok": true}', True),
        ("first\n...\nlast", "first\nx\ny\nlast", True),
        ("a", "b", False),
        ("", "noise", False),
    ],
)
def test_matches(expected: str, actual: str, result: bool) -> None:
    assert matches(expected, actual) is result


def test_the_server_pattern() -> None:
    assert SERVER.match("python -m kartra_async.testing --port 8765 --empty")
    assert not SERVER.match("python -m kartra_async.testing --print-demo-seed > seed.json")
    assert not SERVER.match("python -m kartra_async.testing --seed broken.json")
    assert SERVER.match("kartra fake-server --port 8765 --app-id MyApp")
    assert not SERVER.match("kartra --fake account tags")
