from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from kartra_async import AsyncKartra

APP_ID = "AIm863DwsOW"
API_KEY = "QG9GPLW8G"
API_PASSWORD = "kdwFAfwrfVS"
BASE_URL = "https://app.kartra.com/api"
CREDENTIALS = [("app_id", APP_ID), ("api_key", API_KEY), ("api_password", API_PASSWORD)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test must run on asyncio and on trio: test modules set
    `pytestmark = pytest.mark.anyio` (a marker added here would come too late to
    parametrize anyio_backend), and this refuses a module that forgot."""
    for item in items:
        func = getattr(item, "function", None)
        if func is not None and inspect.iscoroutinefunction(func):
            assert item.get_closest_marker("anyio"), (
                f"{item.nodeid}: add pytestmark = pytest.mark.anyio"
            )


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def form(request: httpx.Request) -> list[tuple[str, str]]:
    """The form body as PHP's parse_str would see its keys, in order."""
    return parse_qsl(request.content.decode(), keep_blank_values=True, strict_parsing=True)


def fields(request: httpx.Request) -> list[tuple[str, str]]:
    """The form body without the three credentials (checked to be first)."""
    pairs = form(request)
    assert pairs[:3] == CREDENTIALS
    return pairs[3:]


@pytest.fixture
def api() -> respx.MockRouter:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def kartra(api: respx.MockRouter) -> AsyncIterator[AsyncKartra]:
    # no rate limiting here: the limiter has its own tests (test_limits.py)
    async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, limiter=None) as client:
        yield client
