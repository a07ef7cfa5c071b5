"""Delivery semantics of KartraWebhookRouter, through FastAPI and httpx's ASGI transport
(asyncio and trio: Starlette is anyio-based): a failure answers 500 and the redelivery
runs again, dedupe only after success and only for a time window, background mode's
retries and dead letters, concurrent duplicates, a broken seen-store, hostile bodies.
The Redis seen-store and the real uvicorn run are in test_callbacks_redis.py and
test_callbacks_uvicorn.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from fastapi import FastAPI

from kartra_async.fastapi import KartraWebhookRouter
from kartra_async.models import RefundTransaction, SaleTransaction
from kartra_async.webhooks import (
    Claim,
    DeadLetter,
    HandlerRetry,
    ListSubscribed,
    MemorySeenStore,
    TagAssigned,
    dedupe_key,
    parse_event,
    parse_ipn,
)

from .test_webhooks import DOCS_EVENT, IPN_BASE, LEAD

pytestmark = pytest.mark.anyio

SECRET = "cb-secret-0123456789abcdef"
URL = f"/kartra/callback/{SECRET}"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here also checks that no log record, at any level, holds the secret."""
    with caplog.at_level(logging.DEBUG):
        yield
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(r.__dict__) for r in caplog.records)


def tag_event(tag: str = "VIP", **lead: Any) -> bytes:
    body = {
        "lead": {**LEAD, **lead},
        "action": "assign_tag",
        "action_details": {"tag": {"tag_id": 7, "tag_name": tag}},
    }
    return json.dumps(body).encode()


def ipn(kind: str = "sale", **fields: str) -> bytes:
    return urlencode({**IPN_BASE, "transaction_type": kind, **fields}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """HandlerRetry's sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_app(**kwargs: Any) -> tuple[FastAPI, KartraWebhookRouter]:
    router = KartraWebhookRouter(SECRET, **kwargs)
    app = FastAPI()
    app.include_router(router)
    return app, router


async def post(
    app: FastAPI, body: bytes, content_type: str = JSON, url: str = URL
) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        return await http.post(url, content=body, headers={"content-type": content_type})


# ---- the default: handlers run before the answer


async def test_a_failed_handler_answers_500_and_the_redelivery_runs_again() -> None:
    app, router = make_app()
    runs: list[str] = []

    @router.on(TagAssigned)
    async def flaky(event: TagAssigned) -> None:
        runs.append(event.lead.email or "")
        if len(runs) == 1:
            raise RuntimeError("downstream is down")

    body = tag_event()
    failed = await post(app, body)
    assert (failed.status_code, failed.json()["error"]) == (
        500,
        "a handler failed; send the callback again",
    )
    again = await post(app, body)
    assert again.status_code == 200
    assert again.json() == {
        "status": "ok",
        "type": "TagAssigned",
        "dedupe_key": dedupe_key(parse_event(body)),
    }
    duplicate = await post(app, body)
    assert (duplicate.status_code, duplicate.json()["duplicate"]) == (200, True)
    assert runs == ["johndoe@gmail.com", "johndoe@gmail.com"]


async def test_every_matching_handler_runs_and_one_failure_fails_the_callback() -> None:
    app, router = make_app()
    runs: list[str] = []

    @router.on(TagAssigned)
    def first(event: TagAssigned) -> None:  # sync: runs in a worker thread
        runs.append("first")

    @router.on()
    async def everything(event: object) -> None:
        runs.append("everything")
        if runs.count("everything") == 1:
            raise ValueError("once")

    assert (await post(app, tag_event())).status_code == 500
    assert (await post(app, tag_event())).status_code == 200
    # a redelivery runs every handler again: handlers must be idempotent
    assert runs == ["first", "everything", "first", "everything"]


async def test_the_same_ipn_twice_runs_once() -> None:
    app, router = make_app()
    seen: list[tuple[str, int, str | None]] = []

    @router.on(SaleTransaction, RefundTransaction)
    async def money(t: SaleTransaction | RefundTransaction) -> None:
        seen.append((type(t).__name__, t.transaction_id, t.lead_first_name))

    first = await post(app, ipn(), FORM)
    assert (first.status_code, first.json()["dedupe_key"]) == (200, "ipn:700:sale")
    # the key is transaction_id + transaction_type: other fields do not make it new
    again = await post(app, ipn(lead_first_name="Johnny"), FORM)
    assert again.json()["duplicate"] is True
    refund = await post(app, ipn("refund"), FORM)
    other_sale = await post(app, ipn(transaction_id="701"), FORM)
    assert "duplicate" not in refund.json()
    assert "duplicate" not in other_sale.json()
    assert seen == [
        ("SaleTransaction", 700, "John"),
        ("RefundTransaction", 700, "John"),
        ("SaleTransaction", 701, "John"),
    ]


async def test_events_are_keyed_by_the_whole_body() -> None:
    app, router = make_app()
    runs: list[int] = []

    @router.on(TagAssigned)
    async def tagged(event: TagAssigned) -> None:
        runs.append(event.lead.score or 0)

    await post(app, tag_event(score=5))
    # the same JSON, other key order and whitespace: the same event
    reordered = json.dumps(json.loads(tag_event(score=5)), sort_keys=True, indent=2).encode()
    assert (await post(app, reordered)).json()["duplicate"] is True
    # VIP again after the lead's score changed: a different body, a new event
    assert "duplicate" not in (await post(app, tag_event(score=6))).json()
    assert runs == [5, 6]


async def test_a_genuine_repeat_after_the_window_runs_again() -> None:
    clock = Clock()
    store = MemorySeenStore(clock=clock)
    app, router = make_app(seen_store=store, dedupe_window=120)
    runs: list[str] = []

    @router.on(TagAssigned)
    async def tagged(event: TagAssigned) -> None:
        runs.append("run")

    body = tag_event()
    await post(app, body)
    clock.now += 119.9
    assert (await post(app, body)).json()["duplicate"] is True
    clock.now += 0.1
    assert "duplicate" not in (await post(app, body)).json()
    assert runs == ["run", "run"]
    clock.now += 120
    assert len(store) == 0  # nothing outlives its window


@pytest.mark.parametrize("off", [{"dedupe_window": 0}, {"dedupe": False}])
async def test_dedupe_can_be_turned_off(off: dict[str, Any]) -> None:
    store = MemorySeenStore()
    app, router = make_app(seen_store=store, **off)
    runs: list[str] = []
    router.on(TagAssigned)(lambda event: runs.append("run"))
    for _ in range(3):
        answer = await post(app, tag_event())
        assert answer.status_code == 200
        assert "duplicate" not in answer.json()
    assert runs == ["run", "run", "run"]
    assert len(store) == 0


async def test_a_callback_no_handler_wants_is_acknowledged_and_not_remembered() -> None:
    store = MemorySeenStore()
    app, _ = make_app(seen_store=store)
    answer = await post(app, tag_event())
    assert (answer.status_code, answer.json()["type"]) == (200, "TagAssigned")
    assert len(store) == 0


async def test_a_duplicate_arriving_while_the_first_runs_answers_503() -> None:
    app, router = make_app()
    started, finish = anyio.Event(), anyio.Event()
    runs: list[str] = []

    @router.on(TagAssigned)
    async def slow(event: TagAssigned) -> None:
        runs.append("run")
        started.set()
        await finish.wait()

    answers: list[httpx.Response] = []

    async def first() -> None:
        answers.append(await post(app, tag_event()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await started.wait()
        busy = await post(app, tag_event())
        assert (busy.status_code, busy.headers["retry-after"]) == (503, "5")
        assert busy.json()["error"] == "this callback is being handled; send it again later"
        finish.set()
    assert answers[0].status_code == 200
    assert (await post(app, tag_event())).json()["duplicate"] is True
    assert runs == ["run"]


async def test_a_request_cancelled_mid_handler_releases_its_claim() -> None:
    app, router = make_app()
    started = anyio.Event()
    runs: list[str] = []

    @router.on(TagAssigned)
    async def hangs(event: TagAssigned) -> None:
        runs.append("run")
        if len(runs) == 1:
            started.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(post, app, tag_event())
        await started.wait()
        tg.cancel_scope.cancel()
    assert (await post(app, tag_event())).status_code == 200
    assert runs == ["run", "run"]


class BrokenStore:
    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.memory = MemorySeenStore()

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        if self.broken == "claim":
            raise ConnectionError("redis is down")
        return await self.memory.claim(key, token, lease)

    async def mark_seen(self, key: str, window: float) -> None:
        if self.broken == "mark_seen":
            raise ConnectionError("redis is down")
        await self.memory.mark_seen(key, window)

    async def release(self, key: str, token: str) -> None:
        await self.memory.release(key, token)


async def test_a_broken_seen_store_never_eats_an_event(caplog: pytest.LogCaptureFixture) -> None:
    app, router = make_app(seen_store=BrokenStore("claim"))
    runs: list[str] = []
    router.on(TagAssigned)(lambda event: runs.append("run"))
    with caplog.at_level(logging.ERROR, logger="kartra_async.fastapi"):
        answer = await post(app, tag_event())
    assert (answer.status_code, answer.json()["error"]) == (
        503,
        "the seen-store is unavailable; send the callback again later",
    )
    assert runs == []
    assert "the seen-store failed" in caplog.text

    app, router = make_app(seen_store=BrokenStore("mark_seen"))
    router.on(TagAssigned)(lambda event: runs.append("run"))
    with caplog.at_level(logging.ERROR, logger="kartra_async.fastapi"):
        answer = await post(app, tag_event())
    assert answer.status_code == 200  # handled: the answer says so
    assert runs == ["run"]
    assert "was handled but the seen-store failed" in caplog.text


# ---- background mode


async def test_background_mode_retries_only_the_failing_handler() -> None:
    sleeps = Sleeps()
    letters: list[DeadLetter] = []
    app, router = make_app(
        background=True, retry=HandlerRetry(attempts=5, sleep=sleeps), on_failure=letters.append
    )
    runs: list[str] = []

    @router.on(TagAssigned)
    async def steady(event: TagAssigned) -> None:
        runs.append("steady")

    @router.on(TagAssigned)
    async def flaky(event: TagAssigned) -> None:
        runs.append("flaky")
        if runs.count("flaky") < 3:
            raise RuntimeError("not yet")

    answer = await post(app, tag_event())
    assert (answer.status_code, answer.json()["status"]) == (200, "accepted")
    assert runs == ["steady", "flaky", "flaky", "flaky"]
    assert sleeps.delays == [1.0, 2.0]
    assert letters == []
    assert (await post(app, tag_event())).json()["duplicate"] is True


async def test_background_mode_gives_up_and_hands_the_raw_body_to_on_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = Sleeps()
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    app, router = make_app(
        background=True,
        retry=HandlerRetry(attempts=4, backoff=0.5, sleep=sleeps),
        on_failure=dead_letter,
    )

    @router.on(ListSubscribed)
    def broken(event: ListSubscribed) -> None:
        raise RuntimeError("handler bug")

    body = json.dumps(DOCS_EVENT, indent=3).encode() + b"\n"
    with caplog.at_level(logging.ERROR, logger="kartra_async.fastapi"):
        failing = await post(app, body)
    # moved from test_webhooks.test_router_secret_and_content: acknowledged at once,
    # the handler's failure logged with its traceback
    assert failing.status_code == 200
    assert any(
        "handler broken failed on ListSubscribed" in r.getMessage() and r.exc_info
        for r in caplog.records
    )
    assert sleeps.delays == [0.5, 1.0, 2.0]
    [letter] = letters
    assert letter.body == body  # byte for byte
    assert letter.content_type == JSON
    assert isinstance(letter.received, ListSubscribed)
    assert letter.key == dedupe_key(parse_event(body))
    assert (letter.attempts, letter.handlers) == (4, ("broken",))
    assert isinstance(letter.error, RuntimeError)
    assert letter.reason == "1 handler(s) still failing after 4 attempts"
    assert "handed to on_failure" in caplog.text
    # not remembered as seen: the next delivery gets a fresh try
    assert "duplicate" not in (await post(app, body)).json()
    assert len(letters) == 2


async def test_background_ipn_to_a_sync_on_failure() -> None:
    letters: list[DeadLetter] = []
    app, router = make_app(
        background=True,
        retry=HandlerRetry(attempts=2, sleep=Sleeps()),
        on_failure=letters.append,
    )

    @router.on(SaleTransaction)
    async def sale(t: SaleTransaction) -> None:
        raise KeyError(t.transaction_id)

    body = ipn()
    assert (await post(app, body, FORM)).status_code == 200
    [letter] = letters
    assert (letter.body, letter.content_type, letter.key) == (body, FORM, "ipn:700:sale")
    assert isinstance(letter.received, SaleTransaction)


async def test_background_duplicate_while_in_progress_is_acknowledged() -> None:
    letters: list[DeadLetter] = []
    started, finish = anyio.Event(), anyio.Event()
    app, router = make_app(background=True, on_failure=letters.append)
    runs: list[str] = []

    @router.on(TagAssigned)
    async def slow(event: TagAssigned) -> None:
        runs.append("run")
        started.set()
        await finish.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(post, app, tag_event())
        await started.wait()
        second = await post(app, tag_event())
        assert second.json()["in_progress"] is True
        finish.set()
    assert runs == ["run"]


async def test_background_work_cancelled_at_shutdown_goes_to_on_failure() -> None:
    letters: list[DeadLetter] = []
    started = anyio.Event()
    app, router = make_app(background=True, on_failure=letters.append)

    @router.on(TagAssigned)
    async def hangs(event: TagAssigned) -> None:
        started.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(post, app, tag_event())
        await started.wait()
        tg.cancel_scope.cancel()
    [letter] = letters
    assert letter.error is None
    assert letter.reason.startswith("cancelled")
    assert letter.body == tag_event()


async def test_on_failure_that_fails_leaves_the_body_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on_failure(letter: DeadLetter) -> None:
        raise OSError("disk full")

    app, router = make_app(background=True, retry=HandlerRetry(attempts=1), on_failure=on_failure)

    @router.on(SaleTransaction)
    async def sale(t: SaleTransaction) -> None:
        raise RuntimeError("no")

    with caplog.at_level(logging.ERROR, logger="kartra_async.fastapi"):
        await post(app, ipn(), FORM)
    [record] = [r for r in caplog.records if "on_failure failed" in r.getMessage()]
    assert repr(ipn()) in record.getMessage()


def test_router_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="background=True needs on_failure"):
        KartraWebhookRouter(SECRET, background=True)
    with pytest.raises(ValueError, match="on_failure is for background=True"):
        KartraWebhookRouter(SECRET, on_failure=print)
    with pytest.raises(ValueError, match="dedupe_window must be >= 0"):
        KartraWebhookRouter(SECRET, dedupe_window=-1)
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        HandlerRetry(attempts=0)
    retry = HandlerRetry(attempts=6, backoff=1.0, max_backoff=5.0)
    assert [retry.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry.total_delay == 17.0
    router = KartraWebhookRouter(SECRET, background=True, on_failure=print)
    assert SECRET not in repr(router)


# ---- the memory store


async def test_memory_store_states() -> None:
    clock = Clock()
    store = MemorySeenStore(clock=clock)
    assert await store.claim("k", "t1", lease=10) is Claim.NEW
    assert await store.claim("k", "t2", lease=10) is Claim.BUSY
    await store.release("k", "t2")  # not its holder: nothing happens
    assert await store.claim("k", "t2", lease=10) is Claim.BUSY
    await store.release("k", "t1")
    assert await store.claim("k", "t2", lease=10) is Claim.NEW
    clock.now += 10  # the holder died: the lease ends
    assert await store.claim("k", "t3", lease=10) is Claim.NEW
    await store.mark_seen("k", window=30)
    await store.release("k", "t3")  # seen stays seen
    assert await store.claim("k", "t4", lease=10) is Claim.SEEN
    clock.now += 30
    assert await store.claim("k", "t4", lease=10) is Claim.NEW
    assert repr(store) == "MemorySeenStore(1 keys)"


# ---- hostile bodies: 400 with a reason, never 500

HOSTILE: list[tuple[bytes, str, str]] = [
    (b"[" * 100_000 + b"]" * 100_000, JSON, "the event body is nested deeper than 32"),
    (
        b'{"action": "x", "lead": {"id": 1}, "action_details": '
        + b'{"a": ' * 40
        + b"1"
        + b"}" * 40
        + b"}",
        JSON,
        "the event body is nested deeper than 32",
    ),
    (b'{"action": "x", "lead": {"id": ' + b"9" * 5000 + b"}}", JSON, "a number too long"),
    (b'{"action": "assign_tag\xff", "lead": {"id": 1}}', JSON, "the event body is not UTF-8"),
    (
        b'{"action": "assign_tag", "lead": {"id": NaN}}',
        JSON,
        "the assign_tag event's lead does not fit Lead: expected an integer, got nan",
    ),
    (
        b'{"action": "reaches_score", "lead": {"id": 1}, "action_details": {"points": 1e999}}',
        JSON,
        "expected an integer, got inf",
    ),
    (b"a=1&" * 1001, FORM, "the IPN has more than 1000 fields"),
    (ipn(transaction_id="9" * 5000), FORM, "Exceeds the limit (4300 digits)"),
    (ipn(transaction_id="N/A"), FORM, "expected an integer, got 'N/A'"),
]


@pytest.mark.parametrize(("body", "kind", "reason"), HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_bodies_answer_400_with_the_reason(
    body: bytes, kind: str, reason: str
) -> None:
    app, router = make_app(max_body=1024 * 1024)
    router.on()(lambda received: None)
    answer = await post(app, body, kind)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


def test_parsers_keep_undecodable_ipn_bytes() -> None:
    form = ipn().replace(b"lead_first_name=John", b"lead_first_name=Jos%E9")  # Latin-1 é
    assert parse_ipn(form).lead_first_name == "Jos\ufffd"
