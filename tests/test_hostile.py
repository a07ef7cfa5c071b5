"""Hostile answers, hostile input and echoed secrets: every answer is bounded (size, time,
depth, digits), every failure a KartraError, no secret anywhere, every error picklable.

The answers come from a small misbehaving HTTP/1.1 server on 127.0.0.1 (raw sockets,
one thread per connection, so it runs the same under asyncio and trio): bodies of
100 MB, a gzip bomb, 1 GiB chunked (sent lazily: it stops when the client hangs up),
bodies and headers dripped a byte at a time, 100,000-deep JSON, 5,000-digit integers.
Times are checked against the deadline with generous slack; memory with tracemalloc.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import math
import pickle
import socket
import socketserver
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import httpx
import pytest
import respx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kartra_async import (
    ERROR_CODES,
    AmbiguousResultError,
    AsyncKartra,
    AuthenticationError,
    ChainError,
    KartraAPIError,
    KartraConnectionError,
    KartraDecodeError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    LeadExistsError,
    RetryPolicy,
)
from kartra_async import errors as errors_module
from kartra_async._commands import Call, _joined_since, unknown_command
from kartra_async._constants import (
    KARTRA_TZ,
    MAX_ANSWER_BYTES,
    MAX_FORM_VARS,
    MAX_JSON_DEPTH,
    MAX_NAME_CHARS,
    MAX_TEXT_BYTES,
    RECONCILE_CLEARLY_BEFORE,
    RECONCILE_CLOCK_SKEW,
    SERVER_RETRY_AFTER_MAX,
)
from kartra_async._response import parse_json, retry_after
from kartra_async.errors import TransportFailure
from kartra_async.testing import FakeKartra

from .conftest import API_KEY, API_PASSWORD, APP_ID, BASE_URL

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024

# ---------------------------------------------------------------- the hostile server

Handler = Callable[[socket.socket, bytes], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Connection)
        self.routes: dict[str, Handler] = {}
        self.requests: list[bytes] = []
        self.heads: list[dict[str, str]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is the point of most tests


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(65536)
        if not line:
            return
        path = line.split()[1].decode()
        headers = {}
        while True:
            header = self.rfile.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.rfile.read(int(headers.get("content-length", 0)))
        self.server.requests.append(body)
        self.server.heads.append(headers)
        self.server.routes[path.strip("/")](self.request, body)


class Hostile:
    """Register what a path answers (`hostile.route(name, handler)`), then point a client
    at `hostile.url(name)`."""

    def __init__(self) -> None:
        self._server = _Server()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def requests(self) -> list[bytes]:
        return self._server.requests

    @property
    def heads(self) -> list[dict[str, str]]:
        return self._server.heads

    def route(self, name: str, handler: Handler) -> str:
        self._server.routes[name] = handler
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def head(status: int = 200, **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(body: bytes, status: int = 200, **headers: str | int) -> Handler:
    def send(sock: socket.socket, request: bytes) -> None:
        sock.sendall(head(status, content_length=len(body), **headers) + body)

    return send


_BLOCK = b"x" * 65536


def endless(total: int, *, chunked: bool = False, declared: bool = True) -> Handler:
    """`total` bytes of body, 64 KiB at a time, never held in memory at once: with a
    Content-Length (`declared`), chunked, or up to the connection's close."""

    def send(sock: socket.socket, request: bytes) -> None:
        if chunked:
            sock.sendall(head(transfer_encoding="chunked", content_type="application/json"))
        elif declared:
            sock.sendall(head(content_length=total, content_type="application/json"))
        else:
            sock.sendall(head(content_type="application/json"))
        size = b"%x\r\n" % len(_BLOCK)
        sent = 0
        while sent < total:
            if chunked:
                sock.sendall(size)
            sock.sendall(_BLOCK)
            if chunked:
                sock.sendall(b"\r\n")
            sent += len(_BLOCK)
        if chunked:
            sock.sendall(b"0\r\n\r\n")

    return send


def drip(data: bytes, every: float) -> Callable[[socket.socket], None]:
    def send(sock: socket.socket) -> None:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(every)

    return send


TAGS = b'{"status":"Success","account_tags":["VIP"]}'


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with Hostile() as server:
        yield server


_BOMB: list[bytes] = []


def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzipped: about 250 KB on the wire."""
    if not _BOMB:
        packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        zeros = bytes(MiB)
        parts = [packer.compress(zeros) for _ in range(256)]
        _BOMB.append(b"".join(parts) + packer.flush())
    return _BOMB[0]


def client(url: str, **options: Any) -> AsyncKartra:
    options.setdefault("limiter", None)
    options.setdefault("retry", RetryPolicy(max_attempts=1))
    return AsyncKartra(APP_ID, API_KEY, API_PASSWORD, base_url=url, **options)


async def measured(call: Callable[[], Any]) -> tuple[BaseException, float, int]:
    """Run `call`, expecting it to raise: (the error, seconds taken, peak traced bytes)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        await call()
    except BaseException as exc:
        error: BaseException = exc
    else:
        pytest.fail("no error")
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, elapsed, peak


# ---------------------------------------------------------------- answers: size


async def test_a_100_mb_body_stops_at_the_cap(hostile: Hostile) -> None:
    url = hostile.route("big", endless(100 * MiB, declared=False))
    async with client(url, deadline=30) as kartra:
        error, elapsed, peak = await measured(kartra.account.tags)
    assert type(error) is KartraResponseError
    assert error.status_code == 200
    assert "too big" in error.reason
    assert f"max_answer_bytes={MAX_ANSWER_BYTES:,}" in error.reason
    assert error.excerpt.startswith("xxxx")
    assert elapsed < 30
    assert peak < 4 * MAX_ANSWER_BYTES < 100 * MiB


async def test_a_declared_length_over_the_cap_is_refused_before_reading(hostile: Hostile) -> None:
    url = hostile.route("declared", endless(100 * MiB))
    async with client(url, max_answer_bytes=MiB) as kartra:
        error, _, peak = await measured(kartra.account.tags)
    assert type(error) is KartraResponseError
    assert f"Content-Length {100 * MiB}" in error.reason
    assert peak < MiB


async def test_a_gzip_bomb_is_stopped_after_the_cap_of_output(hostile: Hostile) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < MiB  # 256 MiB once decoded
    url = hostile.route(
        "bomb", answer(bomb, content_encoding="gzip", content_type="application/json")
    )
    async with client(url, deadline=30) as kartra:
        error, elapsed, peak = await measured(kartra.account.tags)
    assert type(error) is KartraResponseError
    assert "decoded" in error.reason
    assert f"max_answer_bytes={MAX_ANSWER_BYTES:,}" in error.reason
    assert elapsed < 30
    assert peak < 4 * MAX_ANSWER_BYTES


async def test_compressed_size_is_capped_too(hostile: Hostile) -> None:
    import random

    noise = gzip.compress(random.Random(1).randbytes(2 * MiB), 1)  # a bit over 2 MiB

    def send(sock: socket.socket, request: bytes) -> None:  # no Content-Length: to the close
        sock.sendall(head(content_encoding="gzip") + noise)

    url = hostile.route("noise", send)
    async with client(url, max_answer_bytes=MiB) as kartra:
        with pytest.raises(KartraResponseError, match="too big") as caught:
            await kartra.account.tags()
    assert "over 1,048,576 bytes gzip-encoded" in caught.value.reason


async def test_1_gib_chunked_is_cut_off_without_being_sent(hostile: Hostile) -> None:
    url = hostile.route("chunked", endless(1024 * MiB, chunked=True))
    async with client(url, deadline=30) as kartra:
        error, elapsed, peak = await measured(kartra.account.tags)
    assert type(error) is KartraResponseError
    assert "too big" in error.reason
    assert elapsed < 30
    assert peak < 4 * MAX_ANSWER_BYTES


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers do
        ("identity", lambda data: data),
    ],
)
async def test_encoded_answers_are_read(
    hostile: Hostile, encoding: str, pack: Callable[[bytes], bytes]
) -> None:
    url = hostile.route(f"enc-{encoding}-{id(pack)}", answer(pack(TAGS), content_encoding=encoding))
    async with client(url) as kartra:
        assert await kartra.account.tags() == ["VIP"]


@pytest.mark.parametrize(
    ("body", "encoding", "reason"),
    [
        (TAGS, "br", "Content-Encoding 'br'"),
        (TAGS, "gzip, gzip", "only gzip or deflate"),
        (b"not gzip at all", "gzip", "not valid gzip data"),
    ],
)
async def test_encodings_not_asked_for_or_broken(
    hostile: Hostile, body: bytes, encoding: str, reason: str
) -> None:
    url = hostile.route(f"bad-{reason[:3]}", answer(body, content_encoding=encoding))
    async with client(url) as kartra:
        with pytest.raises(KartraResponseError, match=reason):
            await kartra.account.tags()


# ---------------------------------------------------------------- answers: time


async def test_a_body_dripped_at_1_byte_per_second_hits_the_deadline(hostile: Hostile) -> None:
    def send(sock: socket.socket, request: bytes) -> None:
        sock.sendall(head(content_length=len(TAGS), content_type="application/json"))
        drip(TAGS, 1.0)(sock)

    url = hostile.route("drip-body", send)
    # per-read timeout 2 s (each byte comes within it), deadline 3 s
    async with client(url, timeout=2, deadline=3) as kartra:
        error, elapsed, _ = await measured(kartra.account.tags)
    assert type(error) is KartraTimeoutError
    assert "3 s deadline" in str(error)
    assert 2.9 <= elapsed < 3 + 10


async def test_dripped_headers_hit_the_deadline(hostile: Hostile) -> None:
    def send(sock: socket.socket, request: bytes) -> None:
        drip(head(content_length=len(TAGS)) + TAGS, 0.5)(sock)

    url = hostile.route("drip-headers", send)
    async with client(url, deadline=2) as kartra:
        error, elapsed, _ = await measured(kartra.account.tags)
    assert type(error) is KartraTimeoutError
    assert error.request_sent  # the request went out: it may have been applied
    assert 1.9 <= elapsed < 2 + 10


async def test_the_deadline_applies_per_attempt_and_read_only_calls_retry(
    hostile: Hostile,
) -> None:
    def send(sock: socket.socket, request: bytes) -> None:
        drip(head(content_length=len(TAGS)) + TAGS, 0.5)(sock)

    url = hostile.route("drip-retry", send)
    before = len(hostile.requests)
    policy = RetryPolicy(max_attempts=2, backoff_base=0.01)
    async with client(url, deadline=1, retry=policy) as kartra:
        error, elapsed, _ = await measured(kartra.account.tags)
    assert type(error) is KartraTimeoutError
    assert len(hostile.requests) - before == 2
    assert 1.9 <= elapsed < 2 + 10


async def test_a_cancellation_from_outside_is_not_a_timeout(hostile: Hostile) -> None:
    """The deadline tells its own expiry from the caller's cancel scope or timeout."""

    def send(sock: socket.socket, request: bytes) -> None:
        drip(head(content_length=len(TAGS)) + TAGS, 0.5)(sock)

    url = hostile.route("drip-cancel", send)
    async with client(url, deadline=30) as kartra:
        started = time.monotonic()
        with anyio.move_on_after(1) as scope:
            await kartra.account.tags()
        assert scope.cancelled_caught  # no TimeoutError, no KartraTimeoutError
        assert time.monotonic() - started < 1 + 10
        # and the next call meets its own deadline as usual
        with pytest.raises(KartraTimeoutError, match="2 s deadline"):
            await kartra.with_options(deadline=2).account.tags()


async def test_a_borrowed_http_client_gets_the_same_bounds(hostile: Hostile) -> None:
    url = hostile.route("big-borrowed", endless(100 * MiB, declared=False))
    async with httpx.AsyncClient() as http:
        async with client(url, http_client=http, max_answer_bytes=MiB) as kartra:
            error, _, peak = await measured(kartra.account.tags)
        assert not http.is_closed
    assert type(error) is KartraResponseError
    assert "over 1,048,576 bytes" in error.reason
    assert peak < 8 * MiB
    # offered only what the reader can decode with bounded memory
    assert hostile.heads[-1]["accept-encoding"] == "gzip, deflate"


async def test_our_own_pool_asks_for_no_encoding(hostile: Hostile) -> None:
    url = hostile.route("plain", answer(TAGS))
    async with client(url) as kartra:
        assert await kartra.account.tags() == ["VIP"]
    assert "accept-encoding" not in hostile.heads[-1]


async def test_deadline_and_size_via_with_options(hostile: Hostile) -> None:
    def send(sock: socket.socket, request: bytes) -> None:
        drip(head(content_length=len(TAGS)) + TAGS, 0.5)(sock)

    url = hostile.route("drip-view", send)
    async with client(url) as kartra:
        view = kartra.with_options(deadline=1, max_answer_bytes=10)
        assert (view.deadline, view.max_answer_bytes) == (1.0, 10)
        assert (kartra.deadline, kartra.max_answer_bytes) == (60.0, MAX_ANSWER_BYTES)
        with pytest.raises(KartraTimeoutError, match="1 s deadline"):
            await view.account.tags()


# ---------------------------------------------------------------- answers: depth, digits


DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
DIGITS = "9" * 5000
CALLS: list[tuple[str, Callable[[AsyncKartra], Any]]] = [
    ("tags", lambda k: k.account.tags()),
    ("custom_fields", lambda k: k.account.custom_fields()),
    ("transactions.get", lambda k: k.transactions.get(1)),
    ("get_lead", lambda k: k.get_lead("a@b.co")),
    ("chain", lambda k: k.lead("a@b.co").assign_tag("VIP").transactions()),
]


@pytest.mark.parametrize(("what", "call"), CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (DEEP_ARRAY, f"nested deeper than {MAX_JSON_DEPTH} levels"),
        (DEEP_OBJECT, f"nested deeper than {MAX_JSON_DEPTH} levels"),
        (
            b'{"status":"Success","wrapper":' + b"[" * 65 + b"]" * 65 + b"}",
            f"nested deeper than {MAX_JSON_DEPTH} levels",
        ),
        (
            f'{{"status":"Success","lead_details":{{"id":{DIGITS}}}}}'.encode(),
            "an integer of 5,000 digits",
        ),
    ],
    ids=["deep-array", "deep-object", "65-deep", "5000-digit-literal"],
)
async def test_deep_json_and_huge_integers_are_response_errors(
    hostile: Hostile, what: str, call: Callable[[AsyncKartra], Any], body: bytes, reason: str
) -> None:
    url = hostile.route(f"json-{what}-{hash(body)}", answer(body, status=200))
    async with client(url) as kartra:
        with pytest.raises(KartraResponseError) as caught:
            await call(kartra)
    assert type(caught.value) is KartraResponseError
    assert reason in caught.value.reason
    assert caught.value.status_code == 200
    assert len(caught.value.excerpt) <= 200


@pytest.mark.parametrize(("what", "call"), CALLS[:3], ids=[c[0] for c in CALLS[:3]])
async def test_a_5000_digit_lead_id_string_is_no_valueerror(
    hostile: Hostile, what: str, call: Callable[[AsyncKartra], Any]
) -> None:
    """The answers the review sent: a valid answer plus lead_details with a huge id."""
    body = {
        "status": "Success",
        "account_tags": ["VIP"],
        "custom_fields": [],
        "transaction_details": {"transaction_id": DIGITS},
        "lead_details": {"id": DIGITS},
    }
    url = hostile.route(f"digits-{what}", answer(json.dumps(body).encode()))
    error: KartraError | None = None
    async with client(url) as kartra:
        try:
            result = await call(kartra)
        except KartraError as exc:
            error = exc
    if error is not None:
        # the answer is Kartra's, its transaction does not fit: the decode subclass
        assert isinstance(error, KartraResponseError)
        assert type(error) is KartraDecodeError
        assert what == "transactions.get"
    else:
        assert result in (["VIP"], [])


async def test_get_lead_without_lead_details_is_a_response_error(hostile: Hostile) -> None:
    url = hostile.route("no-details", answer(b'{"status":"Success"}'))
    async with client(url) as kartra:
        with pytest.raises(KartraResponseError, match="no lead_details"):
            await kartra.get_lead("a@b.co")


def test_depth_limit_is_exact() -> None:
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(ok) is not None
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(b"[" + ok + b"]")
    wide = b"[" + b",".join([b"[[1]]"] * 500) + b"]"  # many containers, shallow
    assert len(parse_json(wide)) == 500
    assert parse_json(b'{"n": ' + b"9" * 32 + b"}") == {"n": int("9" * 32)}
    with pytest.raises(ValueError, match="33 digits"):
        parse_json(b'{"n": -' + b"9" * 33 + b"}")


# ---------------------------------------------------------------- Retry-After, timeouts


async def test_retry_after_on_503_is_honoured_and_capped() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_attempts=2, backoff_base=0.01, jitter=0, sleep=sleep)
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    with respx.mock(base_url=BASE_URL) as api:
        async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, limiter=None, retry=policy) as k:
            for header, low, high in (
                ("7", 7, 7),
                ("99999", SERVER_RETRY_AFTER_MAX, SERVER_RETRY_AFTER_MAX),
                (later, 15, 20),
                ("soon", 0.01, 0.01),
            ):
                waits.clear()
                api.post("").mock(
                    side_effect=[
                        httpx.Response(503, headers={"Retry-After": header}, content=b"busy"),
                        httpx.Response(200, content=TAGS),
                    ]
                )
                assert await k.account.tags() == ["VIP"]
                assert len(waits) == 1
                assert low <= waits[0] <= high, (header, waits)
            api.post("").mock(
                return_value=httpx.Response(503, headers={"Retry-After": "3"}, content=b"busy")
            )
            with pytest.raises(KartraServerError) as caught:
                await k.account.tags()
    assert caught.value.retry_after == 3.0
    assert caught.value.status_code == 503


def test_retry_after_parsing() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-1") is None
    assert retry_after("nan") is None
    assert retry_after("inf") is None
    assert retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": httpx.Timeout(5, read=-1)}, "timeout.read"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": math.inf}, "deadline"),
        ({"max_answer_bytes": 0}, "max_answer_bytes"),
        ({"max_form_vars": 3}, "max_form_vars"),
        ({"max_form_vars": True}, "max_form_vars"),
    ],
)
async def test_bad_transport_settings_are_refused(options: dict[str, Any], field: str) -> None:
    with pytest.raises(KartraValidationError) as caught:
        AsyncKartra(APP_ID, API_KEY, API_PASSWORD, **options)
    assert caught.value.field == field
    async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD) as kartra:
        with pytest.raises(KartraValidationError) as again:
            kartra.with_options(**options)
    assert again.value.field == field


async def test_timeouts_that_are_fine() -> None:
    for timeout in (None, 0.5, 30, httpx.Timeout(None), httpx.Timeout(5, connect=1)):
        async with AsyncKartra(APP_ID, API_KEY, API_PASSWORD, timeout=timeout) as kartra:
            kartra.with_options(timeout=timeout or 1)


# ---------------------------------------------------------------- transport errors


async def test_connection_errors_carry_the_root_cause() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    async with client(f"http://127.0.0.1:{port}/api") as kartra:
        with pytest.raises(KartraConnectionError) as caught:
            await kartra.account.tags()
    error = caught.value
    assert not error.request_sent
    text = str(error).lower()
    assert "retrieve_account_tags" in text
    assert "refused" in text or "connect call failed" in text, text
    cause = error.__cause__
    assert isinstance(cause, TransportFailure)
    assert cause.type == "httpx.ConnectError"
    assert cause.url == f"http://127.0.0.1:{port}/api"
    assert error.__context__ is None


async def test_a_dropped_connection_after_sending(hostile: Hostile) -> None:
    url = hostile.route("drop", lambda sock, request: None)  # reads the request, hangs up
    async with client(url) as kartra:
        with pytest.raises(KartraConnectionError) as caught:
            await kartra.account.tags()
    assert caught.value.request_sent
    assert isinstance(caught.value.__cause__, TransportFailure)
    assert "RemoteProtocolError" in str(caught.value)


def test_the_package_logger_is_silent_by_default() -> None:
    assert any(
        isinstance(h, logging.NullHandler) for h in logging.getLogger("kartra_async").handlers
    )
    script = "import kartra_async, logging; logging.getLogger('kartra_async.x').warning('boo')"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == ""


# ---------------------------------------------------------------- secrets

# 150 characters whose spellings all differ: quote, quote_plus, PHP's ~, JSON, HTML
SECRET_PASSWORD = ("pw/~+ &=é\"<>'\\ ünï" * 10)[:150]
SECRET_KEY = "key/with space&more~" + "K" * 20


def spellings(secret: str) -> set[str]:
    escaped = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret, safe=""),
        quote_plus(secret, safe="").replace("~", "%7E"),
        html.escape(secret),
        *escaped,
        *(e.replace("/", "\\/") for e in escaped),
    }


ALL_SPELLINGS = sorted(spellings(SECRET_PASSWORD) | spellings(SECRET_KEY))


def leaks(text: str, window: int = 12) -> list[str]:
    """Every 12-character piece of any spelling of a secret found in `text`."""
    found = []
    for spelling in ALL_SPELLINGS:
        for i in range(0, max(1, len(spelling) - window + 1), 3):
            piece = spelling[i : i + window]
            if piece in text:
                found.append(piece)
    return found


def everything(exc: BaseException) -> str:
    """Every text an exception exposes: str, repr, attributes (raw, excerpt, call, cause),
    the traceback with its chain, each __cause__/__context__ and its attributes (an
    httpx error's request body included), and the pickle."""
    parts: list[str] = []
    stack: list[Any] = [exc]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        parts += [str(item), repr(item), repr(getattr(item, "__dict__", ""))]
        parts.append("".join(traceback.format_exception(item)))
        request = getattr(item, "_request", None)
        if request is not None:
            parts.append(request.content.decode("utf-8", "replace"))
        for value in vars(item).values():
            if isinstance(value, BaseException):
                stack.append(value)
            for attr in ("raw", "result", "call", "errors"):
                if hasattr(value, attr):
                    parts.append(repr(getattr(value, attr)))
        stack += [item.__cause__, item.__context__]
    pickled = pickle.dumps(exc)
    parts.append(pickled.decode("utf-8", "replace"))
    again = pickle.loads(pickled)
    parts += [str(again), repr(vars(again))]
    return "\n".join(parts)


def secret_client(url: str, **options: Any) -> AsyncKartra:
    options.setdefault("limiter", None)
    options.setdefault("retry", RetryPolicy(max_attempts=1))
    return AsyncKartra(APP_ID, SECRET_KEY, SECRET_PASSWORD, base_url=url, **options)


def echo_500(prefix: bytes, spelling: str) -> Handler:
    def send(sock: socket.socket, request: bytes) -> None:
        body = prefix + spelling.encode() + b"\n" + request
        sock.sendall(head(500, content_length=len(body), content_type="text/html") + body)

    return send


def test_the_test_sees_leaks() -> None:
    assert leaks("x" * 180 + quote_plus(SECRET_PASSWORD)[:20])
    assert not leaks("x" * 180 + "***")


@pytest.mark.parametrize("spelling", ALL_SPELLINGS, ids=lambda s: s[:8])
async def test_no_spelling_of_a_secret_survives_an_excerpt(
    hostile: Hostile, spelling: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The review's case: a 150-character password echoed at offset 180 (the excerpt is
    cut at 200); and every other spelling of both secrets."""
    caplog.set_level(logging.DEBUG)
    url = hostile.route(f"echo-{ALL_SPELLINGS.index(spelling)}", echo_500(b"A" * 180, spelling))
    async with secret_client(url) as kartra:
        with pytest.raises(KartraServerError) as caught:
            await kartra.account.tags()
    assert caught.value.excerpt.startswith("A" * 180)
    assert caught.value.excerpt[180:183] == "***"
    assert leaks(everything(caught.value)) == []
    assert leaks("\n".join(r.getMessage() + repr(r.args) for r in caplog.records)) == []


async def test_secrets_echoed_in_a_json_answer(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def send(sock: socket.socket, request: bytes) -> None:
        body = json.dumps(
            {
                "status": "Error",
                "type": "233",
                "message": f"API password not valid: {SECRET_PASSWORD}",
                "api_key": SECRET_KEY,
                "echo": {"api_password": SECRET_PASSWORD, "form": request.decode()},
                "escaped": [html.escape(SECRET_PASSWORD), quote(SECRET_KEY)],
            }
        ).encode()
        sock.sendall(head(content_length=len(body)) + body)

    url = hostile.route("json-echo", send)
    async with secret_client(url) as kartra:
        with pytest.raises(AuthenticationError) as caught:
            await kartra.account.tags()
    error = caught.value
    assert error.code == 233
    assert error.message == "API password not valid: ***"
    assert error.raw is not None
    assert error.raw["api_key"] == "***"
    assert error.raw["echo"]["api_password"] == "***"
    assert leaks(everything(error)) == []
    assert leaks(json.dumps(error.raw)) == []
    assert leaks("\n".join(r.getMessage() + repr(r.args) for r in caplog.records)) == []


async def test_secrets_in_a_successful_answer_and_in_chain_errors(hostile: Hostile) -> None:
    def send(sock: socket.socket, request: bytes) -> None:
        body = json.dumps(
            {
                "status": "Success",
                "actions": [
                    {"assign_tag": {"status": "Error", "type": "212", "message": SECRET_KEY}},
                    {"subscribe_lead_to_list": {"status": "Success", "echo": SECRET_PASSWORD}},
                ],
            }
        ).encode()
        sock.sendall(head(content_length=len(body)) + body)

    url = hostile.route("chain-echo", send)
    async with secret_client(url) as kartra:
        result = await kartra.lead("a@b.co").assign_tag("X").subscribe_list("Y")
    assert leaks(repr(result.raw) + repr([a.raw for a in result.actions])) == []
    with pytest.raises(ChainError) as caught:
        result.raise_for_errors()
    assert leaks(everything(caught.value)) == []


@pytest.mark.parametrize("fault", ["refused", "dropped", "deadline", "ambiguous"])
async def test_no_secret_in_transport_errors(
    hostile: Hostile, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    if fault == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    elif fault == "deadline":
        url = hostile.route(
            "secret-drip", lambda sock, request: drip(head(content_length=2) + b"{}", 0.5)(sock)
        )
    else:
        url = hostile.route(f"secret-{fault}", lambda sock, request: None)
    async with secret_client(url, deadline=1) as kartra:
        chain = kartra.lead("a@b.co").create().give_points(5)
        send = chain.send if fault == "ambiguous" else kartra.account.tags
        with pytest.raises(KartraError) as caught:
            await send()
    error = caught.value
    expected = {
        "refused": KartraConnectionError,
        "dropped": KartraConnectionError,
        "deadline": KartraTimeoutError,
        "ambiguous": AmbiguousResultError,
    }[fault]
    assert type(error) is expected
    assert leaks(everything(error)) == []
    assert leaks("\n".join(r.getMessage() + repr(r.args) for r in caplog.records)) == []


# ---------------------------------------------------------------- pickling


def _samples() -> list[BaseException]:
    fake = FakeKartra()
    kartra = fake.client()
    call = kartra.lead("a@b.co").create(first_name="J").assign_tag("VIP").compile()
    fake_call = kartra.lead("a@b.co").assign_tag("VIP").compile()
    transport = KartraConnectionError("dropped", request_sent=False)
    transport.__cause__ = TransportFailure("httpx.ConnectError", "refused", "https://x/api")
    api_error = LeadExistsError("Lead already exists", code=244, cmd="create_lead", raw={"a": 1})
    samples: list[BaseException] = [
        KartraError("plain"),
        KartraValidationError("email", "is required", cmd="create_lead"),
        transport,
        KartraTimeoutError("slow"),
        KartraResponseError("not JSON", status_code=200, excerpt="<html>"),
        KartraDecodeError("get_lead does not fit Lead", status_code=200, excerpt="{", model="Lead"),
        KartraServerError("down", status_code=503, excerpt="x", retry_after=3.0),
        errors_module.RateLimitError("429", retry_after=1.0),
        errors_module.KartraWebhookError("not an event"),
        AmbiguousResultError("may have", call=call, cause=transport),
        AmbiguousResultError("no call"),
        api_error,
        ChainError([api_error]),
        TransportFailure("httpx.ReadTimeout", "slow", "https://x/api"),
        *(
            entry.cls(entry.message, code=code, cmd="x", action_index=1)
            for code, entry in ERROR_CODES.items()
        ),
        KartraAPIError("unknown", code=999),
    ]
    samples.append(AmbiguousResultError("fake call", call=fake_call))
    kartra._closed = True  # never opened a connection
    return samples


@pytest.mark.parametrize("error", _samples(), ids=lambda e: type(e).__name__)
def test_every_error_pickles(error: BaseException) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.args == error.args
    assert set(vars(again)) == set(vars(error))
    if isinstance(error, AmbiguousResultError) and error.call is not None:
        assert again.call.cmds == error.call.cmds
        assert again.call.payload == error.call.payload
        assert again.call.safety == error.call.safety
        assert type(again.cause) is type(error.cause)
    if isinstance(error, KartraAPIError):
        assert (again.code, again.cmd, again.action_index, again.raw, again.message) == (
            error.code,
            error.cmd,
            error.action_index,
            error.raw,
            error.message,
        )


async def test_an_ambiguous_error_from_a_real_call_pickles_in_another_process() -> None:
    fake = FakeKartra(rate_limit=None)
    fake.faults.inject("drop_after", times=1)
    async with fake.client() as kartra:
        with pytest.raises(AmbiguousResultError) as caught:
            await kartra.lead("a@b.co").create().give_points(5)
    data = pickle.dumps(caught.value)
    script = (
        "import pickle, sys; e = pickle.loads(sys.stdin.buffer.read()); "
        "print(type(e).__name__, e.call.cmds, type(e.cause).__name__)"
    )
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", script], input=data)
    assert done.stdout.decode().split() == [
        "AmbiguousResultError",
        "('create_lead',",
        "'give_points_to_lead')",
        "KartraConnectionError",
    ]


# ---------------------------------------------------------------- input


@pytest.fixture
def fake() -> FakeKartra:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    return fake


@pytest.mark.parametrize(
    "email",
    [
        "a@b.com\n",
        "a@b.com\r\n",
        "a\n@b.com",
        "a@b.com\x00",
        "a\x00@b.com",
        "a@b\x7f.com",
        "a@b.com\x85",
        "a\u2028@b.com",
        "a b@c.com",
        "a@b.com\t",
        "a\udc80@b.com",
        "x" * 250 + "@b.com",
        "@b.com",
        "a@",
        "a@@b.com",
    ],
)
async def test_bad_emails_are_refused_before_sending(fake: FakeKartra, email: str) -> None:
    async with fake.client() as kartra:
        with pytest.raises(KartraValidationError) as caught:
            await kartra.lead(email).create().assign_tag("VIP")
        with pytest.raises(KartraValidationError):
            await kartra.get_lead(email)
    assert caught.value.field == "email"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("build", "field", "rule"),
    [
        (lambda c: c.assign_tag("V\x00IP"), "tag_name", "NUL"),
        (lambda c: c.assign_tag("VIP\udcff"), "tag_name", "cannot be encoded as UTF-8"),
        (lambda c: c.assign_tag("x" * (50 * MiB)), "tag_name", f"at most {MAX_NAME_CHARS}"),
        (lambda c: c.subscribe_list("L" * (MAX_NAME_CHARS + 1)), "list_name", "256 characters"),
        (lambda c: c.create(city="\ud800"), "city", "lone surrogate"),
        (
            lambda c: c.create(city="é" * (MAX_TEXT_BYTES // 2 + 1)),
            "city",
            f"at most {MAX_TEXT_BYTES:,}",
        ),
        (
            lambda c: c.create(custom_fields={"notes": "a\x00b"}),
            "custom_fields",
            "NUL",
        ),
        (lambda c: c.give_points(10**40), "points", "at most 32 digits"),
        (lambda c: c.give_points("9" * 5000), "points", "must be an integer"),
        (lambda c: c.subscribe_sequence("Welcome", 10**40), "step", "at most 32 digits"),
    ],
)
async def test_bad_strings_are_refused_before_sending(
    fake: FakeKartra, build: Callable[[Any], Any], field: str, rule: str
) -> None:
    async with fake.client() as kartra:
        started = time.monotonic()
        with pytest.raises(KartraValidationError) as caught:
            await build(kartra.lead("new@example.com"))
        assert time.monotonic() - started < 30
    assert caught.value.field == field
    assert rule in caught.value.rule
    assert len(str(caught.value)) < 400  # a huge value is not quoted in full
    assert fake.requests == []


async def test_unencodable_text_in_the_escape_hatch(fake: FakeKartra) -> None:
    async with fake.client() as kartra:
        with pytest.raises(KartraValidationError) as caught:
            await kartra.call([{"cmd": "assign_tag", "tag_name": "a\udc80"}], lead={"id": 1})
    assert caught.value.field == "actions[0][tag_name]"
    assert fake.requests == []
    with pytest.raises(KartraValidationError) as bad:
        AsyncKartra(APP_ID, API_KEY, "pass\udc80word")
    assert bad.value.field == "api_password"


def _checkbox_chain(kartra: AsyncKartra, ids: int, email: str = "new@example.com") -> Any:
    return (
        kartra.lead(email)
        .create(custom_fields={"interests": list(range(1, ids + 1))})
        .give_points(5)
        .assign_tag("VIP")
    )


async def test_a_chain_over_max_input_vars_is_refused(fake: FakeKartra) -> None:
    """The review's case: 993 checkbox ids make PHP drop give_points and assign_tag."""
    async with fake.client() as kartra:
        fits = _checkbox_chain(kartra, 1)
        base = kartra._encode(fits.compile()).count(b"&") + 1
        at_limit = MAX_FORM_VARS - base + 1  # ids giving exactly 1,000 variables
        assert kartra._encode(_checkbox_chain(kartra, at_limit).compile()).count(b"&") + 1 == 1000
        with pytest.raises(KartraValidationError) as caught:
            await _checkbox_chain(kartra, at_limit + 1)
        with pytest.raises(KartraValidationError, match="1,003 form variables"):
            await _checkbox_chain(kartra, 993)
        assert fake.requests == []
        assert caught.value.field == "payload"
        assert "1,001 form variables" in caught.value.rule
        assert "max_form_vars=1,000" in caught.value.rule
        assert caught.value.cmd == "create_lead,give_points_to_lead,assign_tag"
        # a chain of exactly 1,000 goes out, and so does a bigger one once allowed
        assert (await _checkbox_chain(kartra, at_limit)).ok
        roomy = kartra.with_options(max_form_vars=2000)
        assert roomy.max_form_vars == 2000
        assert (await _checkbox_chain(roomy, 993, "other@example.com")).ok
    assert len(fake.requests) == 2
    for email in ("new@example.com", "other@example.com"):
        lead = fake.lead(email)
        assert lead is not None
        assert lead.tags == ["VIP"]
        assert lead.score(fake.now()) == 5


def attempt(build: Callable[[], Any]) -> tuple[Any, KartraValidationError | None]:
    try:
        return build(), None
    except KartraValidationError as exc:
        return None, exc


EMAIL_FORBIDDEN = set(range(0x20)) | set(range(0x7F, 0xA0))
#: any character, lone surrogates and the troublemakers included
ANY_CHAR = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from("\x00\n\r\t\x7f\x85\u2028 @"),
)
#: a client that never opens a connection: only for building and encoding
OFFLINE = AsyncKartra(APP_ID, API_KEY, API_PASSWORD, limiter=None)
OFFLINE._closed = True


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.text(alphabet=ANY_CHAR, max_size=40) | st.emails().map(lambda e: e + "\n"))
@example("a@b.com\n")
@example("a@b.com\x00")
@example("a\ud800@b.com")
def test_any_text_as_an_email_is_accepted_only_if_clean(text: str) -> None:
    chain, error = attempt(lambda: OFFLINE.lead(text).create())
    if error is not None:
        assert error.field == "email"
        return
    local, _, domain = text.partition("@")
    assert local
    assert domain
    assert "@" not in domain
    assert not any(ord(c) in EMAIL_FORBIDDEN or c.isspace() for c in text)
    text.encode()
    assert len(text) <= 254
    assert OFFLINE._encode(chain.compile())


@settings(max_examples=100)
@given(st.emails())
def test_real_emails_are_accepted(email: str) -> None:
    if len(email) <= 254:
        assert OFFLINE.lead(email).create().payload["lead"]["email"] == email


@settings(max_examples=300)
@given(
    st.text(alphabet=ANY_CHAR, max_size=300),
    st.sampled_from(["tag", "city", "custom", "call"]),
)
@example("\x00", "tag")
@example("\udc80", "custom")
@example("x" * 256, "tag")
def test_any_string_is_refused_or_encodes(text: str, where: str) -> None:
    """Whatever a user passes either raises KartraValidationError or becomes a body that
    encodes; nothing else (UnicodeEncodeError, TypeError) ever escapes."""
    lead = OFFLINE.lead("a@b.co")

    def build() -> bytes:
        if where == "tag":
            call = lead.assign_tag(text).compile()
        elif where == "city":
            call = lead.create(city=text).compile()
        elif where == "custom":
            call = lead.create(custom_fields={"notes": text}).compile()
        else:
            call = Call({"actions": [{"cmd": "x", "v": text}]}, (unknown_command("x"),))
        return OFFLINE._encode(call)

    body, error = attempt(build)
    if error is not None:
        assert error.rule
        bad = "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        assert bad or (where == "tag" and (len(text) > MAX_NAME_CHARS or not text.strip()))
        return
    assert b"%00" not in body
    body.decode()
    if where == "tag":
        assert text.strip()
        assert len(text) <= MAX_NAME_CHARS


# ---------------------------------------------------------------- reconcile


def _reconciling(fake: FakeKartra) -> AsyncKartra:
    return fake.client(reconcile=True, retry=RetryPolicy(backoff_base=0.001))


async def test_reconcile_never_touches_a_pre_existing_lead(fake: FakeKartra) -> None:
    """The review's case: create_lead + assign_tag on an email that already exists, the
    connection dropped after Kartra answered. Without the fault the call raises
    LeadExistsError and changes nothing; with it, it must do the same."""
    old = fake.add_lead("old@example.com", first_name="Old")
    old.date_joined = fake.now() - timedelta(days=3)
    async with _reconciling(fake) as kartra:
        with pytest.raises(LeadExistsError) as plain:
            await kartra.lead("old@example.com").create(first_name="New").assign_tag("VIP")
        fake.requests.clear()
        fake.faults.inject("drop_after", times=1)
        with pytest.raises(LeadExistsError) as reconciled:
            await kartra.lead("old@example.com").create(first_name="New").assign_tag("VIP")
    assert (reconciled.value.code, reconciled.value.cmd, reconciled.value.action_index) == (
        plain.value.code,
        plain.value.cmd,
        plain.value.action_index,
    )
    assert str(reconciled.value) == str(plain.value)
    assert old.tags == []
    assert old.fields == {"first_name": "Old"}
    assert [r.cmds for r in fake.requests] == [("create_lead", "assign_tag"), ("get_lead",)]
    assert isinstance(reconciled.value.__cause__, KartraConnectionError)


@pytest.mark.parametrize(
    ("joined_ago", "clock_shift"),
    [
        (timedelta(minutes=20), timedelta(0)),  # someone created it shortly before
        (None, -timedelta(minutes=10)),  # ours, but Kartra's clock runs 10 min behind
        (None, timedelta(hours=2)),  # ours, but Kartra's clock runs 2 hours ahead
    ],
    ids=["recent-other", "kartra-behind", "kartra-ahead"],
)
async def test_reconcile_that_cannot_tell_is_ambiguous(
    joined_ago: timedelta | None, clock_shift: timedelta
) -> None:
    fake = FakeKartra(rate_limit=None, now=lambda: datetime.now(KARTRA_TZ) + clock_shift)
    fake.seed()
    if joined_ago is not None:
        lead = fake.add_lead("new@example.com")
        lead.date_joined = fake.now() - joined_ago
    fake.faults.inject("drop_after", times=1)
    async with _reconciling(fake) as kartra:
        with pytest.raises(AmbiguousResultError) as caught:
            await kartra.lead("new@example.com").create().assign_tag("VIP")
    lead = fake.lead("new@example.com")
    assert lead is not None
    assert "does not tell whether this call created it" in str(caught.value)
    # nothing was sent after the look-up: the rest of the chain was not applied again
    assert [r.cmds for r in fake.requests] == [("create_lead", "assign_tag"), ("get_lead",)]
    if joined_ago is not None:  # Kartra refused the create (244): the other's lead is as it was
        assert lead.tags == []
    pickle.loads(pickle.dumps(caught.value))


async def test_reconcile_still_finishes_its_own_create(fake: FakeKartra) -> None:
    fake.faults.inject("drop_after", times=1)
    async with _reconciling(fake) as kartra:
        result = await kartra.lead("new@example.com").create().assign_tag("VIP")
    lead = fake.lead("new@example.com")
    assert lead is not None
    assert result.ok
    assert result.lead_id == lead.id
    assert lead.tags == ["VIP"]
    assert [r.cmds for r in fake.requests] == [
        ("create_lead", "assign_tag"),
        ("get_lead",),
        ("assign_tag",),
    ]


def test_joined_since_bounds() -> None:
    sent = datetime(2026, 3, 10, 17, 30, 30, tzinfo=timezone.utc)
    now = sent + timedelta(seconds=5)
    skew = timedelta(seconds=RECONCILE_CLOCK_SKEW)
    bound = (sent - skew).replace(second=0)
    eastern = KARTRA_TZ

    def at(when: datetime) -> datetime:  # as Kartra writes it: Eastern, to the second
        return when.astimezone(eastern).replace(microsecond=0)

    assert _joined_since(at(sent), sent, now) is True
    assert _joined_since(at(sent).replace(second=0), sent, now) is True  # minute precision
    assert _joined_since(at(bound), sent, now) is True
    assert _joined_since(at(bound - timedelta(seconds=1)), sent, now) is None
    clearly = bound - timedelta(seconds=RECONCILE_CLEARLY_BEFORE)
    assert _joined_since(at(clearly), sent, now) is None
    assert _joined_since(at(clearly - timedelta(seconds=1)), sent, now) is False
    assert _joined_since(at(now + skew + timedelta(minutes=2)), sent, now) is None
    assert _joined_since(None, sent, now) is None
    assert _joined_since(at(sent), None, now) is True  # no send time: nothing to prove


def test_joined_since_in_the_repeated_hour() -> None:
    """2026-11-01 01:30 happens twice in US Eastern time; both readings must agree."""
    first = datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc)  # 01:30 EDT
    naive = datetime(2026, 11, 1, 1, 30, tzinfo=KARTRA_TZ)  # as parsed from the answer
    sent = first + timedelta(minutes=5)  # sent after the first 01:30
    assert _joined_since(naive, sent, sent) is None  # 01:30 EDT: before; 01:30 EST: after
    later = first + timedelta(hours=1)  # 01:30 EST
    assert _joined_since(naive, later - timedelta(hours=3), later) is True
    assert _joined_since(naive, later + timedelta(hours=3), later) is False
