"""pytest fixtures (registered through the `pytest11` entry point):

- `fake_kartra`: a fresh, empty FakeKartra per test (rate limit off; `.seed()` for a demo);
- `kartra_client`: an AsyncKartra wired to it, closed after the test;
- `fake_kartra_server`: a FakeServer serving it over HTTP (`.url`, `.control_url`;
  needs the `server` extra);
- `kartra_response_style`: the fake's answer shape (RESPONSE_STYLES). The default comes
  from `--kartra-response-style` or the ini option `kartra_response_style` ("mirrored"
  if neither); override the fixture, or parametrize it to run a test in every style:

      import pytest
      from kartra_async.testing import RESPONSE_STYLES

      @pytest.mark.parametrize("kartra_response_style", RESPONSE_STYLES)
      async def test_x(kartra_client): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .._client import AsyncKartra
from .fake import RESPONSE_STYLES, FakeKartra
from .server import FakeServer

_HELP = "the answer shape of the fake_kartra fixture: " + ", ".join(RESPONSE_STYLES)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kartra_async")
    group.addoption("--kartra-response-style", choices=RESPONSE_STYLES, default=None, help=_HELP)
    parser.addini("kartra_response_style", _HELP, default=RESPONSE_STYLES[0])


@pytest.fixture
def kartra_response_style(request: pytest.FixtureRequest) -> str:
    style = request.config.getoption("--kartra-response-style") or request.config.getini(
        "kartra_response_style"
    )
    if style not in RESPONSE_STYLES:
        raise pytest.UsageError(f"kartra_response_style is one of {', '.join(RESPONSE_STYLES)}")
    return str(style)


@pytest.fixture
def fake_kartra(kartra_response_style: str) -> FakeKartra:
    return FakeKartra(rate_limit=None, response_style=kartra_response_style)


@pytest.fixture
async def kartra_client(fake_kartra: FakeKartra) -> AsyncIterator[AsyncKartra]:
    async with fake_kartra.client() as client:
        yield client


@pytest.fixture
def fake_kartra_server(fake_kartra: FakeKartra) -> Iterator[FakeServer]:
    server = FakeServer(fake_kartra)
    server.start()
    try:
        yield server
    finally:
        server.stop()
