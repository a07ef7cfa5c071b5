"""Every Python sample on the documentation site (docs/*.md, the API reference's
docstrings) and in README.md runs here, on asyncio and on trio, so none can rot.

How a sample runs:

- A ```python block runs in one namespace per page, in page order, with top-level
  `await` / `async with` allowed (as in `python -m asyncio`). A block without `await` runs
  in a worker thread, so a complete script may call `asyncio.run(main())`.
- Each page gets a fresh FakeKartra with the demo account (`fake.seed()`) behind a real
  HTTP FakeServer on loopback. `KARTRA_APP_ID`, `KARTRA_API_KEY`, `KARTRA_API_PASSWORD`
  are the placeholders the pages use ("your-app-id", ...), `KARTRA_CALLBACK_SECRET` is
  "your-callback-secret", and `KARTRA_BASE_URL` is the server's URL, so `AsyncKartra.from_env()` reaches the fake as a user's would; an
  `AsyncKartra(...)` given no `base_url` gets the server's URL too (the one patch).
  The namespace starts with `kartra`, an open client of that fake, which the guides use.
  The working directory is a fresh temporary one, so a sample may write files (a bulk
  job's `journal="import.db"`).
- A block titled with a file name (```python title="test_signup.py"```) is a file: a
  page's files (test modules, a conftest.py, the module they test) are written to a
  temporary directory and run by pytest itself, on asyncio and trio, and every test in
  them must pass.
- A block that must not run says so on the line before it: `<!-- no-run: reason -->`.
  The test ids report how many samples ran and how many are marked.
- `>>>` examples and indented code blocks in the docstrings the API reference renders
  run too, each in a fresh namespace holding the public names; `DOCSTRINGS_NOT_RUN`
  lists, with a reason, the docstrings whose code is not meant to run.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import attrs
import pytest

import kartra_async
from kartra_async import AsyncKartra
from kartra_async.testing import FakeKartra, FakeServer

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
#: the site's pages, the files they include (CHANGELOG.md), and the README
PAGES = (*sorted((ROOT / "docs").rglob("*.md")), ROOT / "CHANGELOG.md", ROOT / "README.md")

#: the credentials the pages show; the fake's App and account use them
CREDENTIALS = {
    "KARTRA_APP_ID": "your-app-id",
    "KARTRA_API_KEY": "your-api-key",
    "KARTRA_API_PASSWORD": "your-api-password",
}
#: the environment the pages' programs read: the credentials and a callback secret
ENVIRONMENT = {**CREDENTIALS, "KARTRA_CALLBACK_SECRET": "your-callback-secret"}

#: the modules whose docstrings the API reference renders (docs/reference/*.md)
PUBLIC_MODULES = (
    "kartra_async",
    "kartra_async.errors",
    "kartra_async.models",
    "kartra_async.webhooks",
    "kartra_async.limits",
    "kartra_async.limits.redis",
    "kartra_async.testing",
    "kartra_async.testing.pytest_plugin",
    "kartra_async.fastapi",
)

#: docstrings whose code blocks are not meant to run, and why
DOCSTRINGS_NOT_RUN = {
    "kartra_async.errors": "the exception tree, a diagram rather than code",
    "kartra_async.webhooks": "an outline with placeholders (`body`, `form`, `...`)",
    "kartra_async.fastapi": "an outline of an app with `...` bodies",
    "kartra_async.testing.pytest_plugin": (
        "a test for pytest to collect; docs/guides/testing.md runs one through pytest"
    ),
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_NO_RUN = re.compile(r"^\s*<!--\s*no-run:(?P<reason>.*?)-->\s*$")
_TITLE = re.compile(r"""title=["'](?P<title>[^"']+)["']""")
_PYTHONISH = frozenset({"py", "py3", "python3", "pycon", "pyi", "ipython", "python-repl"})


@attrs.frozen
class Sample:
    where: str  #: "path:line" of the opening fence, or the docstring's object
    line: int  #: line of the code's first line in its file (0 for docstrings)
    code: str
    title: str | None = None
    not_run: str | None = None  #: the reason given with the no-run marker

    @property
    def is_file(self) -> bool:
        """A block titled with a file name: part of the page's pytest run."""
        return self.title is not None and re.fullmatch(r"\w+\.py", self.title) is not None


def page_samples(path: Path) -> list[Sample]:
    """Every ```python block of a markdown page, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    samples: list[Sample] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        lang = info.split(" ", 1)[0].split("{", 1)[0].lower()
        end = i + 1
        while end < len(lines) and not re.match(
            rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}\s*$", lines[end]
        ):
            end += 1
        assert end < len(lines), f"{name}:{i + 1}: code fence never closed"
        assert lang not in _PYTHONISH, (
            f"{name}:{i + 1}: write ```python (not ```{lang}) so the sample is checked"
        )
        if lang == "python":
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = _NO_RUN.match(before)
            reason = marker["reason"].strip() if marker else None
            assert marker is None or reason, f"{name}:{i + 1}: a no-run marker needs a reason"
            title = _TITLE.search(info)
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[i + 1 : end]
            ]
            samples.append(
                Sample(
                    where=f"{name}:{i + 1}",
                    line=i + 2,
                    code="\n".join(body) + "\n",
                    title=title["title"] if title else None,
                    not_run=reason,
                )
            )
        i = end + 1
    return samples


# --------------------------------------------------------------------------- docstrings

_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")  # a Google-style section header ("Example:")


def docstring_code(doc: str) -> list[str]:
    """The `>>>` examples, ```python blocks and indented code blocks of a (cleaned)
    docstring."""
    blocks: list[str] = []
    lines = doc.splitlines()
    i = 0
    in_section = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"a code fence never closed in:\n{doc}"
            if stripped[3:].strip().split(" ", 1)[0] in ("python", *_PYTHONISH):
                blocks.append(textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n")
            i = end + 1
            continue
        if stripped.startswith(">>>"):
            code = []
            while i < len(lines) and lines[i].strip().startswith((">>>", "...")):
                text = lines[i].strip()
                code.append(text[4:] if len(text) > 3 else "")
                i += 1
            blocks.append("\n".join(code) + "\n")
            continue
        if _SECTION.match(line):
            in_section = True
        elif line and not line[0].isspace():
            in_section = False
        previous_blank = i == 0 or not lines[i - 1].strip() or lines[i - 1].rstrip().endswith("::")
        if not in_section and line.startswith("    ") and previous_blank:
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i])
                i += 1
            blocks.append(textwrap.dedent("\n".join(block)).strip("\n") + "\n")
            continue
        i += 1
    return blocks


def _documented_objects() -> Iterator[tuple[str, Any]]:
    """Each public module, the names in its __all__, and their own public members."""
    seen: set[int] = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        yield module_name, module
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{module_name}.{name}", obj
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if member.startswith("_") and member != "__init__":
                        continue
                    target = value.fget if isinstance(value, property) else value
                    target = getattr(target, "__func__", target)
                    if inspect.isfunction(target) or isinstance(value, property):
                        yield f"{module_name}.{name}.{member}", target


def docstring_samples() -> list[Sample]:
    samples = []
    seen: set[str] = set()
    for where, obj in _documented_objects():
        doc = obj.__doc__
        if not doc:
            continue
        for code in docstring_code(inspect.cleandoc(doc)):
            if code in seen:
                continue
            seen.add(code)
            samples.append(
                Sample(where=where, line=0, code=code, not_run=DOCSTRINGS_NOT_RUN.get(where))
            )
    return samples


# --------------------------------------------------------------------------- running


@pytest.fixture
def docs_fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKartra]:
    """A seeded fake behind a loopback HTTP server, reachable the ways the pages show;
    the working directory is a fresh temporary one (for the files samples write)."""
    monkeypatch.chdir(tmp_path)
    fake = FakeKartra(
        CREDENTIALS["KARTRA_APP_ID"],
        CREDENTIALS["KARTRA_API_KEY"],
        CREDENTIALS["KARTRA_API_PASSWORD"],
        rate_limit=None,
    )
    fake.seed()
    with FakeServer(fake) as url:
        for name, value in ENVIRONMENT.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("KARTRA_BASE_URL", url)

        class DocsKartra(AsyncKartra):
            """AsyncKartra whose default base_url is the fake's; no shared limiter, so
            pages running one after another on asyncio and trio share nothing."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("base_url", url)
                kwargs.setdefault("limiter", None)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(kartra_async, "AsyncKartra", DocsKartra)
        yield fake


@pytest.fixture
async def docs_client(docs_fake: FakeKartra) -> AsyncIterator[AsyncKartra]:
    async with kartra_async.AsyncKartra.from_env() as client:
        yield client


async def run_sample(sample: Sample, namespace: dict[str, Any]) -> None:
    source = "\n" * (sample.line - 1) + sample.code
    try:
        code = compile(source, sample.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            await eval(code, namespace)
        else:
            await anyio.to_thread.run_sync(exec, code, namespace)
    except BaseException as exc:
        raise AssertionError(
            f"the sample at {sample.where} failed: {type(exc).__name__}: {exc}\n\n{sample.code}"
        ) from exc


def _pages_with_samples() -> list[Any]:
    """One param per page holding ```python blocks run in its namespace (or marked)."""
    params = []
    for path in PAGES:
        samples = [s for s in page_samples(path) if not s.is_file]
        if samples:
            ran = sum(1 for s in samples if s.not_run is None)
            name = path.relative_to(ROOT).as_posix()
            params.append(pytest.param(path, id=f"{name}: {ran} run, {len(samples) - ran} not run"))
    return params


@pytest.mark.anyio
@pytest.mark.parametrize("path", _pages_with_samples())
async def test_page_samples_run(path: Path, docs_client: AsyncKartra) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__", "kartra": docs_client}
    for sample in page_samples(path):
        if sample.not_run is None and not sample.is_file:
            await run_sample(sample, namespace)


def _pytest_pages() -> list[Any]:
    params = []
    for path in PAGES:
        files = [s for s in page_samples(path) if s.is_file and s.not_run is None]
        if files:
            name = path.relative_to(ROOT).as_posix()
            params.append(pytest.param(path, id=f"{name}: {len(files)} files, run by pytest"))
    return params


@pytest.mark.parametrize("path", _pytest_pages())
def test_page_pytest_modules_pass(path: Path, pytester: pytest.Pytester) -> None:
    """A page's pytest modules, run by pytest with the kartra_async plugin (as installed)."""
    modules = [s for s in page_samples(path) if s.is_file and s.not_run is None]
    files = {s.title: s.code for s in modules if s.title}
    assert len(files) == len(modules), f"{path}: two pytest samples share a title"
    if "conftest.py" not in files:
        files["conftest.py"] = textwrap.dedent(
            """
            import pytest

            @pytest.fixture(params=["asyncio", "trio"])
            def anyio_backend(request):
                return request.param
            """
        )
    for title, code in files.items():
        pytester.makepyfile(**{title.removesuffix(".py"): code})
    result = pytester.runpytest_inprocess(
        "-v", "-p", "no:cacheprovider", "-W", "error::ResourceWarning"
    )
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert set(outcomes) == {"passed"}, outcomes
    # every test ran on both backends (a page's own conftest.py must see to that too)
    # (a test parametrized further, test_x[asyncio-mirrored], is one test per other value)
    passed = []
    for name, params in re.findall(r"::(\w+)\[([^\]]+)\] PASSED", result.stdout.str()):
        backends = [p for p in params.split("-") if p in ("asyncio", "trio")]
        assert len(backends) == 1, f"{name}[{params}]: not run by anyio on one backend"
        variant = "-".join(p for p in params.split("-") if p not in ("asyncio", "trio"))
        passed.append((f"{name}[{variant}]", backends[0]))
    assert len(passed) == outcomes["passed"], result.stdout.str()
    tests = {name for name, _ in passed}
    assert set(passed) == {(name, backend) for name in tests for backend in ("asyncio", "trio")}


def _docstring_param() -> Any:
    samples = docstring_samples()
    ran = sum(1 for s in samples if s.not_run is None)
    return pytest.param(samples, id=f"docstrings: {ran} run, {len(samples) - ran} not run")


@pytest.mark.anyio
@pytest.mark.parametrize("samples", [_docstring_param()])
async def test_docstring_samples_run(samples: list[Sample], docs_fake: FakeKartra) -> None:
    public = {name: getattr(kartra_async, name) for name in kartra_async.__all__}
    for sample in samples:
        if sample.not_run is not None:
            continue
        module = importlib.import_module(_module_of(sample.where))
        namespace: dict[str, Any] = {
            "__name__": "__docs__",
            **public,
            **{name: getattr(module, name) for name in getattr(module, "__all__", ())},
            "AsyncKartra": kartra_async.AsyncKartra,
            "app_id": CREDENTIALS["KARTRA_APP_ID"],
            "api_key": CREDENTIALS["KARTRA_API_KEY"],
            "api_password": CREDENTIALS["KARTRA_API_PASSWORD"],
        }
        await run_sample(sample, namespace)


def _module_of(where: str) -> str:
    """The longest public module name that `where` starts with."""
    return max((m for m in PUBLIC_MODULES if where == m or where.startswith(m + ".")), key=len)


# --------------------------------------------------------------------------- the rules


def test_every_marked_docstring_exists() -> None:
    """DOCSTRINGS_NOT_RUN names only docstrings that hold code (so it cannot go stale)."""
    holders = {s.where for s in docstring_samples()}
    assert set(DOCSTRINGS_NOT_RUN) <= holders


def _totals() -> dict[str, int]:
    pages = [s for p in PAGES for s in page_samples(p)]
    docstrings = docstring_samples()
    return {
        "page samples run": sum(1 for s in pages if s.not_run is None and not s.is_file),
        "files run by pytest": sum(1 for s in pages if s.not_run is None and s.is_file),
        "docstring samples run": sum(1 for s in docstrings if s.not_run is None),
        "marked not to run": sum(1 for s in [*pages, *docstrings] if s.not_run is not None),
    }


@pytest.mark.parametrize(
    "totals", [pytest.param(_totals(), id=", ".join(f"{n} {k}" for k, n in _totals().items()))]
)
def test_samples_are_found(totals: dict[str, int]) -> None:
    """The extractor sees the pages' blocks (a parser that finds nothing checks nothing);
    the test id reports the totals."""
    counts = {p.relative_to(ROOT).as_posix(): len(page_samples(p)) for p in PAGES}
    assert counts["README.md"] >= 2  # the example chain, the many-accounts outline
    assert counts["docs/getting-started.md"] >= 5
    assert counts["docs/guides/testing.md"] >= 4
    assert counts["docs/guides/callbacks.md"] >= 20  # a sample body of every callback
    assert totals["page samples run"] >= 20
    assert totals["docstring samples run"] >= 3


def _page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_extractor_reads_markers_titles_and_indented_fences(tmp_path: Path) -> None:
    path = _page(
        tmp_path,
        """
        ```python
        a = 1
        ```

        <!-- no-run: an outline -->
        ```python
        b = undefined
        ```

        ```python title="test_x.py"
        def test_x(): ...
        ```

        !!! note
            ```python
            if a:
                c = 3
            ```

        ```sh
        python -m pip install kartra-async
        ```
        """,
    )
    samples = page_samples(path)
    assert [(s.code, s.title, s.not_run) for s in samples] == [
        ("a = 1\n", None, None),
        ("b = undefined\n", None, "an outline"),
        ("def test_x(): ...\n", "test_x.py", None),
        ("if a:\n    c = 3\n", None, None),
    ]
    assert [s.line for s in samples] == [3, 8, 12, 17]
    assert samples[2].is_file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- no-run: -->\n```python\nx\n```\n", "needs a reason"),
        ("```py\nx = 1\n```\n", "write ```python"),
        ("```python\nx = 1\n", "never closed"),
    ],
)
def test_the_extractor_refuses_what_would_escape_it(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        page_samples(_page(tmp_path, text))


def test_docstring_code_finds_examples_fences_and_indented_blocks() -> None:
    doc = textwrap.dedent(
        """\
        Summary.

        Example:
            >>> x = 1
            ... y = 2

        Args:
            name: not code, a section

            indented: still the section

        Text::

            tree = 1

        ```python
        fenced = True
        ```
        """
    )
    assert docstring_code(doc) == ["x = 1\ny = 2\n", "tree = 1\n", "fenced = True\n"]
