"""Fair queueing between the accounts (tenants) of one App, in virtual time
(tests/_virtual_time): the limiter's clock is anyio's, so the order and the moments of
the grants are exact and no machine load can change them."""

from __future__ import annotations

import anyio
import pytest
from anyio.lowlevel import checkpoint

from kartra_async import AsyncKartra, KartraValidationError
from kartra_async._commands import COMMANDS, Call
from kartra_async.limits import Limiter
from kartra_async.limits._common import Priority
from kartra_async.limits._local import _Waiter
from kartra_async.testing import FakeKartra

from ._virtual_time import backend_options

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return backend_options(str(request.param))


def limiter(**kwargs: object) -> Limiter:
    """4 grants per second, no pacing, no margin: the grant moments are whole seconds."""
    options: dict[str, object] = {"margin": 0.0, "burst": 4, "clock": anyio.current_time}
    options.update(kwargs)
    return Limiter(4, 1.0, **options)  # type: ignore[arg-type]


async def settle(lim: Limiter, count: int) -> None:
    """Until `count` waiters were granted or queued (trio runs new tasks in random order)."""
    while lim.stats.grants + lim.queued + lim.stats.cancelled < count:
        await checkpoint()


def grant_order(lim: Limiter) -> list[str]:
    """The tenants of the queued waiters, in the order the limiter grants them (a woken
    task may run later than another woken with it: trio shuffles them)."""
    order: list[str] = []
    pop = lim._queues.pop

    def logged() -> _Waiter:
        waiter = pop()
        order.append(waiter.tenant)
        return waiter

    lim._queues.pop = logged  # type: ignore[method-assign]
    return order


async def queue_up(
    lim: Limiter, batches: list[tuple[str, int]], priority: dict[str, Priority] | None = None
) -> list[str]:
    """Fill the first window, then start each batch's tasks in order (all at one moment,
    all queued); the tenants in grant order."""
    order = grant_order(lim)
    for _ in range(lim.limit):
        await lim.acquire(tenant="first")

    async def one(tenant: str) -> None:
        await lim.acquire((priority or {}).get(tenant, "interactive"), tenant=tenant)

    async with anyio.create_task_group() as tg:
        started = lim.limit
        for tenant, count in batches:
            for _ in range(count):
                tg.start_soon(one, tenant)
                started += 1
                await settle(lim, started)  # each task queues before the next starts
    return order


async def test_a_tenant_with_few_calls_is_served_within_a_round() -> None:
    lim = limiter()
    order = await queue_up(lim, [("a", 40), ("b", 5)])
    # a and b alternate until b's 5 are served
    assert order == ["a", "b"] * 5 + ["a"] * 35
    assert lim.stats.tenants["b"].grants == 5
    assert lim.stats.tenants["b"].waits == 5
    # the 10th grant: the 4th window (trio: its timer wakes a pacing step, 1/8 s, later)
    assert 3.0 <= lim.stats.tenants["b"].wait_max < 3.2
    assert lim.stats.tenants["a"].queued == 0


async def test_fair_false_is_one_fifo() -> None:
    order = await queue_up(limiter(fair=False), [("a", 40), ("b", 5)])
    assert order == ["a"] * 40 + ["b"] * 5
    assert sorted(order) == order


async def test_fifo_within_a_tenant() -> None:
    lim = limiter()
    served: list[tuple[str, int]] = []

    async def one(tenant: str, i: int) -> None:
        await lim.acquire(tenant=tenant)
        served.append((tenant, i))

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tenant = "abc"[i % 3]
            tg.start_soon(one, tenant, i)
            await settle(lim, i + 1)
    for tenant in "abc":
        mine = [i for t, i in served if t == tenant]
        assert mine == sorted(mine)


async def test_three_tenants_round_robin_and_a_late_one_joins_the_round() -> None:
    lim = limiter()
    order = grant_order(lim)
    for _ in range(4):
        await lim.acquire(tenant="first")

    async def one(tenant: str) -> None:
        await lim.acquire(tenant=tenant)

    async with anyio.create_task_group() as tg:
        for n, tenant in enumerate("abc"):
            for i in range(8):
                tg.start_soon(one, tenant)
                await settle(lim, 4 + 8 * n + i + 1)
        await anyio.sleep(2.5)  # 8 granted: a b c a b c a b
        tg.start_soon(one, "d")
    assert order[:8] == ["a", "b", "c"] * 2 + ["a", "b"]
    # d arrives with c next in the round: c, then d, then the round goes on
    assert order[8:12] == ["c", "d", "a", "b"]
    assert sorted(order) == sorted("a" * 8 + "b" * 8 + "c" * 8 + "d")


@pytest.mark.parametrize(
    "weights", [{"a": 2}, lambda tenant: 2.0 if tenant == "a" else 1.0], ids=["map", "callable"]
)
async def test_weights(weights: object) -> None:
    lim = limiter(weights=weights)
    order = await queue_up(lim, [("a", 60), ("b", 60)])
    # a gets two grants for each of b's
    assert order[:30] == ["a", "b", "a"] * 10


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="weight of tenant 'a'"):
        Limiter(weights={"a": 0})
    with pytest.raises(ValueError, match="weight of tenant 'a'"):
        Limiter(weights={"a": float("nan")})
    with pytest.raises(ValueError, match="idle_ttl"):
        Limiter(idle_ttl=0)


async def test_a_callable_weight_is_checked_when_used() -> None:
    lim = limiter(weights=lambda tenant: -1.0)
    for _ in range(4):
        await lim.acquire(tenant="x")
    with pytest.raises(ValueError, match="weight of tenant 'x'"):
        await lim.acquire(tenant="x")  # the window is full: it would queue
    assert lim.queued == 0
    assert lim.stats.tenants["x"].queued == 0


async def test_interactive_still_overtakes_bulk_between_tenants() -> None:
    lim = limiter(bulk_share=0.0)
    order = await queue_up(
        lim, [("a", 20), ("b", 4), ("c", 4)], priority={"a": "bulk", "b": "bulk"}
    )
    # c (interactive, queued last) goes first; a and b share the bulk grants fairly
    assert order[:4] == ["c"] * 4
    assert order[4:12] == ["a", "b"] * 4
    assert order[12:] == ["a"] * 16


async def test_a_tenant_alone_gets_the_whole_budget() -> None:
    lim = limiter()
    times: list[float] = []

    async def one() -> None:
        times.append(await lim.acquire(tenant="solo"))

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    # 4 per window, 5 windows: the last 4 one window after the 4th
    assert [round(t - start) for t in sorted(times)] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [
        4
    ] * 4


async def test_cancelling_a_tenants_waiters_mid_queue_loses_no_capacity() -> None:
    lim = limiter()
    granted: dict[str, list[float]] = {"a": [], "b": []}

    async def one(tenant: str) -> None:
        granted[tenant].append(await lim.acquire(tenant=tenant))

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(one, "a")
            await settle(lim, i + 1)
        async with anyio.create_task_group() as b_group:
            for i in range(10):
                b_group.start_soon(one, "b")
                await settle(lim, 13 + i)
            await anyio.sleep(1.5)  # window 2 gave 2 to a and 2 to b
            assert lim.stats.tenants["b"].queued == 8
            b_group.cancel_scope.cancel()
        assert lim.stats.tenants["b"].queued == 0
        assert lim.queued == 6  # a's only
        fair = lim._queues.queues["interactive"]
        assert list(fair.queues) == ["a"]  # no stale tenant in the round
    assert len(granted["b"]) == 2
    assert lim.stats.cancelled == 8
    # a's last 4 take window 3 in full: nothing of b's cancelled places was lost
    assert [round(t - start) for t in sorted(granted["a"])] == [0] * 4 + [1] * 2 + [2] * 4 + [3] * 2
    assert lim.stats.grants == 14


async def test_idle_tenants_are_forgotten_after_idle_ttl() -> None:
    lim = limiter(idle_ttl=10.0)
    await lim.acquire(tenant="a")
    await lim.acquire(tenant="b")
    await anyio.sleep(5.0)
    await lim.acquire(tenant="b")
    assert set(lim.stats.tenants) == {"a", "b"}
    await anyio.sleep(8.0)  # a idle 13 s, b 8 s
    await lim.acquire(tenant="c")
    assert set(lim.stats.tenants) == {"b", "c"}
    await anyio.sleep(20.0)
    await lim.acquire(tenant="c")
    assert set(lim.stats.tenants) == {"c"}


async def test_a_queued_tenant_is_never_forgotten() -> None:
    lim = Limiter(1, 100.0, margin=0.0, clock=anyio.current_time, idle_ttl=1.0)
    await lim.acquire(tenant="a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: lim.acquire(tenant="b"))
        await anyio.sleep(50.0)
        lim._tenants.expire(anyio.current_time())
        assert set(lim.stats.tenants) == {"b"}  # a idle 50 s; b queued 50 s
        assert lim.stats.tenants["b"].queued == 1
    assert lim.stats.tenants["b"].grants == 1


async def test_the_round_keeps_no_state_for_tenants_long_gone() -> None:
    lim = limiter()
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(lambda: lim.acquire(tenant="big"))
            await settle(lim, i + 1)
        for i in range(200):
            tg.start_soon(lambda t=f"t{i}": lim.acquire(tenant=t))  # type: ignore[misc]
            await settle(lim, 9 + i)
    fair = lim._queues.queues["interactive"]
    assert not fair.queues
    assert not fair.tags
    assert len(fair.finish) <= 16


async def test_the_client_names_its_account_without_revealing_the_key() -> None:
    fake = FakeKartra(clock=anyio.current_time)
    fake.seed()
    lim = Limiter(20, 1.0, clock=anyio.current_time)
    secret = fake.api_key
    async with AsyncKartra(
        fake.app_id, secret, fake.api_password, transport=fake.transport(), limiter=lim
    ) as kartra:
        await kartra.account.tags()
        default = kartra.tenant
        assert default.startswith("key-")
        assert secret not in default
        async with AsyncKartra(
            fake.app_id, "other-key", fake.api_password, transport=fake.transport(), limiter=lim
        ) as other:
            assert other.tenant != default
        async with AsyncKartra(
            fake.app_id,
            secret,
            fake.api_password,
            transport=fake.transport(),
            limiter=lim,
            tenant="acme",
        ) as acme:
            await acme.account.tags()
            assert acme.with_options(deadline=30).tenant == "acme"  # a view keeps its account
            await acme.with_options(deadline=30).account.tags()
            await acme.with_options(tenant="globex").account.tags()
            call = Call(
                {"actions": [{"cmd": "retrieve_account_tags"}]},
                (COMMANDS["retrieve_account_tags"],),
            )
            await acme.send(call, tenant="initech")  # one call counted for another account
    assert lim.stats.tenants[default].grants == 1
    assert lim.stats.tenants["acme"].grants == 2
    assert lim.stats.tenants["initech"].grants == 1
    assert lim.stats.tenants["globex"].grants == 1
    assert secret not in repr(lim.stats)


def test_a_blank_tenant_is_refused() -> None:
    with pytest.raises(KartraValidationError, match="tenant"):
        AsyncKartra("app", "key", "password", tenant=" ", limiter=None)
