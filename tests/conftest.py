from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
from hypothesis import HealthCheck, settings

from kartra_async import AsyncKartra, RetryPolicy
from kartra_async.testing.redis_server import redis_server

APP_ID = "AIm863DwsOW"
API_KEY = "QG9GPLW8G"
API_PASSWORD = "kdwFAfwrfVS"
BASE_URL = "https://app.kartra.com/api"
CREDENTIALS = [("app_id", APP_ID), ("api_key", API_KEY), ("api_password", API_PASSWORD)]

# The machines are shared and noisy: property tests judge behaviour, never speed (no
# per-example deadline, no "too slow" health check); speed lives in benchmarks/.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")


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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on 127.0.0.1 for this test session (a free port, no disk).
    Where none can be started the Redis tests skip, except under CI=true, where they fail."""
    try:
        with redis_server() as url:
            yield url
    except FileNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but redis-server is missing: .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture
def api() -> respx.MockRouter:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def kartra(api: respx.MockRouter) -> AsyncIterator[AsyncKartra]:
    # no rate limiting and no retries here: they have their own tests
    async with AsyncKartra(
        APP_ID, API_KEY, API_PASSWORD, limiter=None, retry=RetryPolicy(max_attempts=1)
    ) as client:
        yield client
