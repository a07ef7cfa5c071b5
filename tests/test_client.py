"""AsyncKartra: configuration, lifecycle, transport errors, and secrets kept secret."""

from __future__ import annotations

import inspect
import logging
import pickle
import traceback

import httpx
import pytest
import respx

from kartra_async import (
    AsyncKartra,
    AuthenticationError,
    KartraConnectionError,
    KartraError,
    KartraTimeoutError,
    KartraValidationError,
)
from kartra_async.errors import TransportFailure

from .conftest import API_KEY, API_PASSWORD, APP_ID, BASE_URL

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url",
    [
        "https://app.kartra.com/api",
        "http://127.0.0.1:8765/api",
        "http://127.5.5.5/api",
        "http://localhost:8000/api",
        "http://[::1]:8000/api",
    ],
)
async def test_accepted_base_urls(url: str) -> None:
    async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, base_url=url) as kartra:
        assert kartra.base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://app.kartra.com/api",
        "http://10.0.0.1/api",
        "ftp://127.0.0.1/api",
        "app.kartra.com/api",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base_url must use https") as caught:
        AsyncKartra(APP_ID, API_KEY, API_PASSWORD, base_url=url)
    assert API_KEY not in str(caught.value)


@pytest.mark.parametrize("field", ["app_id", "api_key", "api_password"])
def test_empty_credentials_are_refused(field: str) -> None:
    values = {"app_id": APP_ID, "api_key": API_KEY, "api_password": API_PASSWORD, field: " "}
    with pytest.raises(KartraValidationError) as caught:
        AsyncKartra(**values)
    assert caught.value.field == field


async def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARTRA_APP_ID", APP_ID)
    monkeypatch.setenv("KARTRA_API_KEY", API_KEY)
    monkeypatch.setenv("KARTRA_API_PASSWORD", API_PASSWORD)
    monkeypatch.delenv("KARTRA_BASE_URL", raising=False)
    async with AsyncKartra.from_env() as kartra:
        assert kartra.base_url == BASE_URL
        assert kartra.app_id == APP_ID
    monkeypatch.setenv("KARTRA_BASE_URL", "http://127.0.0.1:9/api")
    async with AsyncKartra.from_env() as kartra:
        assert kartra.base_url == "http://127.0.0.1:9/api"


@pytest.mark.parametrize("missing", ["KARTRA_APP_ID", "KARTRA_API_KEY", "KARTRA_API_PASSWORD"])
def test_from_env_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    for name, value in (
        ("KARTRA_APP_ID", APP_ID),
        ("KARTRA_API_KEY", API_KEY),
        ("KARTRA_API_PASSWORD", API_PASSWORD),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(KartraValidationError, match=missing) as caught:
        AsyncKartra.from_env()
    assert caught.value.field == missing


async def test_aclose_is_idempotent_and_closes_its_own_pool() -> None:
    kartra = AsyncKartra(APP_ID, API_KEY, API_PASSWORD)
    await kartra.aclose()
    await kartra.aclose()
    assert kartra._http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await kartra.account.tags()


async def test_a_passed_in_http_client_is_never_closed(api: respx.MockRouter) -> None:
    api.post("").mock(
        return_value=httpx.Response(200, json={"status": "Success", "account_tags": []})
    )
    async with httpx.AsyncClient() as http:
        async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, http_client=http) as kartra:
            assert await kartra.account.tags() == []
        assert not http.is_closed
        async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, http_client=http) as again:
            assert await again.account.tags() == []


async def test_one_pool_shared_by_every_chain(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    api.post("").mock(
        return_value=httpx.Response(200, json={"status": "Success", "message": "ok", "type": 103})
    )
    pool = kartra._http
    await kartra.lead("a@b.co").assign_tag("A")
    await kartra.lead("c@d.co").assign_tag("B")
    assert kartra._http is pool


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), KartraConnectionError),
        (httpx.RemoteProtocolError("dropped"), KartraConnectionError),
        (httpx.ReadTimeout("slow"), KartraTimeoutError),
        (httpx.ConnectTimeout("slow"), KartraTimeoutError),
        (httpx.PoolTimeout("busy"), KartraTimeoutError),
    ],
)
async def test_transport_errors(
    kartra: AsyncKartra, api: respx.MockRouter, exc: Exception, expected: type[KartraError]
) -> None:
    api.post("").mock(side_effect=exc)
    with pytest.raises(expected) as caught:
        await kartra.lead("a@b.co").assign_tag("A")
    assert type(caught.value) is expected
    assert "assign_tag" in str(caught.value)
    # the httpx exception (its request carries the credentials) is replaced by what it said
    cause = caught.value.__cause__
    assert isinstance(cause, TransportFailure)
    assert (cause.type, cause.url) == (f"httpx.{type(exc).__name__}", BASE_URL)
    assert cause.message.startswith(str(exc))
    assert str(exc) in str(caught.value)
    assert caught.value.__context__ is None


# ---- secrets


def _texts_of(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc) + repr(vars(exc))


async def test_credentials_never_leak(
    kartra: AsyncKartra, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [repr(kartra), str(kartra), repr(kartra.account), repr(kartra.transactions)]
    chain = kartra.lead("a@b.co").create(first_name="J").assign_tag("T")
    seen += [repr(chain), str(chain.payload), repr(chain.compile())]
    # an echoing server must not make them appear in an error's excerpt
    api.post("").mock(
        side_effect=lambda request: httpx.Response(200, content=b"oops " + request.content)
    )
    with pytest.raises(KartraError) as bad:  # ambiguous: create_lead may have been applied
        await chain
    seen.append(_texts_of(bad.value))
    api.post("").mock(side_effect=lambda request: httpx.Response(502, content=request.content))
    with pytest.raises(KartraError) as server:
        await chain
    seen.append(_texts_of(server.value))
    api.post("").mock(
        return_value=httpx.Response(
            200, json={"status": "Error", "message": "API key not valid", "type": "203"}
        )
    )
    with pytest.raises(AuthenticationError) as auth:
        await chain
    seen.append(_texts_of(auth.value))
    seen.append(repr(pickle.loads(pickle.dumps(auth.value))))
    api.post("").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(KartraConnectionError) as conn:
        await chain
    seen.append(_texts_of(conn.value))
    seen += [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    assert any("assign_tag" in r.getMessage() for r in caplog.records)
    everything = "\n".join(seen)
    assert API_KEY not in everything
    assert API_PASSWORD not in everything
    # but the request itself did carry them
    assert f"api_key={API_KEY}" in api.calls.last.request.content.decode()


async def test_the_request_body_is_no_async_generator() -> None:
    """A send cancelled mid-write must not leave a suspended async generator for the
    garbage collector to finalize after the event loop is gone (seen on trio as
    "Exception ignored in: <async_generator object ByteStream.__aiter__>")."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        chunks = [chunk async for chunk in request.stream]  # type: ignore[union-attr]
        assert b"".join(chunks) == request.content
        return httpx.Response(200, json={"status": "Success", "account_tags": ["VIP"]})

    transport = httpx.MockTransport(handler)
    async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, transport=transport, limiter=None) as k:
        assert await k.account.tags() == ["VIP"]
    (request,) = seen
    iterator = request.stream.__aiter__()  # type: ignore[union-attr]
    assert not inspect.isasyncgen(iterator)
    assert request.headers["Content-Length"] == str(len(request.content))
    assert request.content.startswith(b"app_id=")
