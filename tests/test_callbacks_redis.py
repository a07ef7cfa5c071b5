"""RedisSeenStore against a real redis-server on 127.0.0.1 (the `redis_url` fixture):
two routers (two workers) sharing it dedupe across each other, a failure on one lets
the redelivery run on the other, and the window is Redis's own expiry. asyncio and trio
(coredis is anyio-based)."""

from __future__ import annotations

import uuid

import anyio
import coredis
import httpx
import pytest

from kartra_async.models import SaleTransaction
from kartra_async.webhooks import Claim, RedisSeenStore, TagAssigned

from .test_callbacks import FORM, ipn, make_app, post, tag_event

pytestmark = pytest.mark.anyio


def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


async def test_two_workers_share_one_redis_seen_store(redis_url: str) -> None:
    shared = prefix()
    runs: list[str] = []
    workers = []
    for name in ("a", "b"):
        app, router = make_app(seen_store=RedisSeenStore(redis_url, prefix=shared))

        @router.on(TagAssigned, SaleTransaction)
        async def handle(received: object, name: str = name) -> None:
            runs.append(name)
            if runs == ["a"]:
                raise RuntimeError("worker a's first try fails")

        workers.append(app)
    a, b = workers
    async with a.router.lifespan_context(a), b.router.lifespan_context(b):
        assert (await post(a, tag_event())).status_code == 500
        # the load balancer sends the redelivery to b: it runs (a released its claim)
        assert (await post(b, tag_event())).status_code == 200
        assert (await post(a, tag_event())).json()["duplicate"] is True
        assert (await post(b, tag_event())).json()["duplicate"] is True
        assert (await post(b, ipn(), FORM)).status_code == 200
        assert (await post(a, ipn(), FORM)).json()["duplicate"] is True
        async with coredis.Redis.from_url(redis_url) as redis:
            ttl = await redis.pttl(shared + "ipn:700:sale")
        assert 299_000 < ttl <= 300_000  # the default window, kept by Redis
    assert runs == ["a", "b", "b"]


async def test_a_duplicate_on_another_worker_while_the_first_runs(redis_url: str) -> None:
    shared = prefix()
    started, finish = anyio.Event(), anyio.Event()
    (a, router_a), (b, router_b) = (
        make_app(seen_store=RedisSeenStore(redis_url, prefix=shared)) for _ in range(2)
    )
    runs: list[str] = []

    @router_a.on(TagAssigned)
    async def slow(event: TagAssigned) -> None:
        runs.append("a")
        started.set()
        await finish.wait()

    router_b.on(TagAssigned)(lambda event: runs.append("b"))
    answers: list[httpx.Response] = []

    async def first() -> None:
        answers.append(await post(a, tag_event()))

    async with a.router.lifespan_context(a), b.router.lifespan_context(b):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await started.wait()
            assert (await post(b, tag_event())).status_code == 503
            finish.set()
        assert answers[0].status_code == 200
        assert (await post(b, tag_event())).json()["duplicate"] is True
    assert runs == ["a"]


async def test_a_repeat_after_the_window_runs_again(redis_url: str) -> None:
    shared = prefix()
    app, router = make_app(seen_store=RedisSeenStore(redis_url, prefix=shared), dedupe_window=0.2)
    runs: list[str] = []
    router.on(TagAssigned)(lambda event: runs.append("run"))
    async with app.router.lifespan_context(app):
        answer = await post(app, tag_event())
        key = shared + answer.json()["dedupe_key"]
        async with coredis.Redis.from_url(redis_url) as redis:
            for _ in range(600):  # Redis expires the key: wait for that, not for a time
                if not await redis.exists([key]):
                    break
                await anyio.sleep(0.05)
            else:
                raise AssertionError("Redis kept the key for 30 s")
        assert "duplicate" not in (await post(app, tag_event())).json()
    assert runs == ["run", "run"]


async def test_store_states_with_a_client_of_your_own(redis_url: str) -> None:
    async with coredis.Redis.from_url(redis_url) as redis:
        store = RedisSeenStore(redis, prefix=prefix())
        async with store:  # not its client: entering does nothing
            assert await store.claim("k", "t1", lease=30) is Claim.NEW
            assert 29_000 < await redis.pttl(store.prefix + "k") <= 30_000
            assert await store.claim("k", "t2", lease=30) is Claim.BUSY
            await store.release("k", "t2")  # not its holder
            assert await store.claim("k", "t2", lease=30) is Claim.BUSY
            await store.release("k", "t1")
            assert await store.claim("k", "t2", lease=30) is Claim.NEW
            await store.mark_seen("k", window=60)
            await store.release("k", "t2")  # seen stays seen
            assert await store.claim("k", "t3", lease=30) is Claim.SEEN
        assert await redis.get(store.prefix + "k") == b"seen"  # still usable: not closed
    assert repr(store).startswith("RedisSeenStore(prefix='test:")


async def test_a_store_that_was_never_entered_answers_503(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, router = make_app(seen_store=RedisSeenStore(redis_url, prefix=prefix()))
    runs: list[str] = []
    router.on(TagAssigned)(lambda event: runs.append("run"))
    # no lifespan: the store's client is not connected
    assert (await post(app, tag_event())).status_code == 503
    assert runs == []
    assert "RedisSeenStore(url) is not connected: enter it" in caplog.text
