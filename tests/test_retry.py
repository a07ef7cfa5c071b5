"""Safe retries: each rule with exact attempt counts and exact sleeps, ambiguity,
reconciliation, per-call options, resources, a soak through the fake, fuzzed bodies."""

from __future__ import annotations

import gc
import tracemalloc
import warnings
from typing import Any

import anyio
import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from kartra_async import (
    AmbiguousResultError,
    AsyncKartra,
    KartraConnectionError,
    KartraDecodeError,
    KartraError,
    KartraServerError,
    KartraTimeoutError,
    LeadNotFoundError,
    Limiter,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
)
from kartra_async._commands import COMMANDS, Call, Safety
from kartra_async._response import read_response
from kartra_async._retry import Decision, decide
from kartra_async.models import LeadRef
from kartra_async.testing import FakeKartra, FakeServer

pytestmark = pytest.mark.anyio

OK_TAG = {"status": "Success", "message": "Tag added to lead", "type": "103"}
OK_POINTS = {"status": "Success", "message": "Points added to lead", "type": "105"}


class Sleeps:
    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


def policy(sleeps: Sleeps, **kwargs: Any) -> RetryPolicy:
    return RetryPolicy(
        backoff_base=0.5, backoff_cap=8.0, jitter=0.5, random=lambda: 0.5, sleep=sleeps, **kwargs
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def kartra(sleeps: Sleeps) -> Any:
    with respx.mock(base_url="https://app.kartra.com/api", assert_all_called=False) as router:
        async with AsyncKartra(
            "app", "key", "password", limiter=None, retry=policy(sleeps, max_attempts=4)
        ) as client:
            client.router = router  # type: ignore[attr-defined]
            yield client


def test_backoff_formula() -> None:
    p = RetryPolicy(backoff_base=0.5, backoff_cap=8.0, jitter=0.5, random=lambda: 0.5)
    assert [p.delay(n) for n in range(1, 8)] == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0, 6.0]
    exact = RetryPolicy(backoff_base=1.0, jitter=0.0, random=lambda: 0.99)
    assert [exact.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    full = RetryPolicy(backoff_base=1.0, jitter=1.0, random=lambda: 0.25)
    assert full.delay(1) == 0.25
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


def test_every_cmd_is_classified_with_a_reason() -> None:
    unsafe = {c.name for c in COMMANDS.values() if c.safety is Safety.UNSAFE}
    assert unsafe == {
        "create_lead", "give_points_to_lead", "remove_points_from_lead", "calendar_subscribe",
        "create_custom_field", "refund_transaction", "edit_subscription", "cancel_transaction",
        "modify_subscription_status",
    }  # fmt: skip
    read_only = {c.name for c in COMMANDS.values() if c.safety is Safety.READ_ONLY}
    assert all(n.startswith(("search", "get", "retrieve")) for n in read_only)
    assert all(c.why for c in COMMANDS.values())
    assert all(c.check for c in COMMANDS.values() if c.safety is Safety.UNSAFE)


NEVER_OPENED = [
    httpx.ConnectError("refused"),
    httpx.ConnectTimeout("slow"),
    httpx.PoolTimeout("busy"),
]
MAYBE_APPLIED = [
    httpx.Response(502, text="<h1>Bad Gateway</h1>"),
    httpx.Response(500, text="oops"),
    httpx.ReadTimeout("slow"),
    httpx.WriteTimeout("slow"),
    httpx.RemoteProtocolError("dropped"),
    httpx.ReadError("reset"),
    httpx.Response(200, text='{"status": "Succ'),  # truncated
]


@pytest.mark.parametrize("failures", [1, 2, 3])
@pytest.mark.parametrize("failure", NEVER_OPENED, ids=lambda e: type(e).__name__)
async def test_a_connection_that_never_opened_is_always_retried(
    kartra: Any, sleeps: Sleeps, failures: int, failure: Exception
) -> None:
    route = kartra.router.post("").mock(
        side_effect=[failure] * failures + [httpx.Response(200, json=OK_POINTS)]
    )
    result = await kartra.lead("a@b.co").give_points(5)  # unsafe, and still retried
    assert result.ok
    assert route.call_count == failures + 1
    assert sleeps.seen == [0.375, 0.75, 1.5][:failures]


@pytest.mark.parametrize("failures", [1, 3])
@pytest.mark.parametrize(
    "failure", MAYBE_APPLIED, ids=lambda e: getattr(e, "status_code", type(e).__name__)
)
@pytest.mark.parametrize("chain", ["read_only", "idempotent"])
async def test_safe_chains_are_retried_after_any_failure(
    kartra: Any, sleeps: Sleeps, failures: int, failure: Any, chain: str
) -> None:
    if chain == "read_only":
        ok = {"status": "Success", "message": "Lead found", "lead_details": {"id": "7"}}
        build = kartra.lead("a@b.co").search()
    else:
        ok = {
            "status": "Success",
            "actions": [{"assign_tag": OK_TAG}, {"subscribe_lead_to_list": OK_TAG}],
        }
        build = kartra.lead("a@b.co").assign_tag("VIP").subscribe_list("News")
    route = kartra.router.post("").mock(
        side_effect=[failure] * failures + [httpx.Response(200, json=ok)]
    )
    result = await build
    assert result.ok
    assert route.call_count == failures + 1
    assert sleeps.seen == [0.375, 0.75, 1.5][:failures]


@pytest.mark.parametrize(
    "failure", MAYBE_APPLIED, ids=lambda e: getattr(e, "status_code", type(e).__name__)
)
async def test_an_unsafe_chain_is_never_sent_twice(
    kartra: Any, sleeps: Sleeps, failure: Any
) -> None:
    route = kartra.router.post("").mock(side_effect=[failure, httpx.Response(200, json=OK_POINTS)])
    with pytest.raises(AmbiguousResultError) as caught:
        await kartra.lead("a@b.co").assign_tag("VIP").give_points(5)
    assert route.call_count == 1
    assert sleeps.seen == []
    err = caught.value
    assert isinstance(
        err.cause, (KartraConnectionError, KartraServerError, KartraTimeoutError, KartraError)
    )
    assert err.call.payload == {
        "lead": {"email": "a@b.co"},
        "actions": [
            {"cmd": "assign_tag", "tag_name": "VIP"},
            {"cmd": "give_points_to_lead", "points": 5},
        ],
    }
    message = str(err)
    assert message.startswith(
        "assign_tag, give_points_to_lead for lead a@b.co may or may not have been applied: "
    )
    assert "give_points_to_lead: points add up: a repeat doubles them" in message
    assert "kartra.get_lead(email).score shows whether the points were added" in message


async def test_kartra_error_answers_are_never_retried(kartra: Any, sleeps: Sleeps) -> None:
    route = kartra.router.post("").mock(
        return_value=httpx.Response(
            200, json={"status": "Error", "message": "No lead found", "type": "243"}
        )
    )
    with pytest.raises(LeadNotFoundError):
        await kartra.lead("a@b.co").search()
    assert route.call_count == 1
    assert sleeps.seen == []


async def test_an_answer_that_does_not_fit_its_model_is_raised_at_once(
    kartra: Any, sleeps: Sleeps
) -> None:
    """Kartra answered: resending a read gets the same data, resending a write repeats it."""
    huge = {"status": "Success", "transaction_details": {"transaction_id": "9" * 5000}}
    route = kartra.router.post("").mock(return_value=httpx.Response(200, json=huge))
    with pytest.raises(KartraDecodeError):
        await kartra.transactions.get(1)
    assert route.call_count == 1
    assert sleeps.seen == []
    error = KartraDecodeError("does not fit", status_code=200, model="Lead")
    unsafe = kartra.lead("a@b.co").create().give_points(5).compile()
    assert decide(error, unsafe) is Decision.RAISE


async def test_attempts_are_bounded_and_on_retry_is_told(sleeps: Sleeps) -> None:
    events: list[RetryEvent] = []
    with respx.mock(base_url="https://app.kartra.com/api") as router:
        route = router.post("").mock(side_effect=httpx.ConnectError("refused"))
        retry = policy(sleeps, max_attempts=3, on_retry=events.append)
        async with AsyncKartra("app", "key", "password", limiter=None, retry=retry) as kartra:
            with pytest.raises(KartraConnectionError) as caught:
                await kartra.account.tags()
    assert caught.value.request_sent is False
    assert route.call_count == 3
    assert sleeps.seen == [0.375, 0.75]
    assert [(e.attempt, e.delay, e.cmds) for e in events] == [
        (2, 0.375, ("retrieve_account_tags",)),
        (3, 0.75, ("retrieve_account_tags",)),
    ]


async def test_per_call_policy(kartra: Any, sleeps: Sleeps) -> None:
    route = kartra.router.post("").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=OK_TAG)]
    )
    with pytest.raises(KartraTimeoutError):
        await kartra.lead("a@b.co").assign_tag("VIP").send(retry=RetryPolicy(max_attempts=1))
    assert route.call_count == 1
    patient = kartra.with_options(retry=policy(sleeps, max_attempts=2))
    route.side_effect = [
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"status": "Success", "account_tags": ["A"]}),
    ]
    assert await patient.account.tags() == ["A"]
    assert patient.account is not kartra.account


async def test_with_options_shares_the_pool_and_sets_the_timeout(kartra: Any) -> None:
    seen: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"status": "Success", "account_tags": []})

    kartra.router.post("").mock(side_effect=answer)
    view = kartra.with_options(timeout=60)
    await view.account.tags()
    await kartra.account.tags()
    assert seen[0] == {"connect": 60.0, "read": 60.0, "write": 60.0, "pool": 60.0}
    assert seen[1] == {"connect": 5.0, "read": 30.0, "write": 30.0, "pool": 10.0}
    assert view._http is kartra._http
    await view.aclose()  # a view never closes the shared pool
    assert not kartra._http.is_closed


# ---- reconciliation of an ambiguous create_lead (opt-in)


@pytest.mark.parametrize("fault", ["drop_after", "drop_before", "http_5xx"])
async def test_reconcile_create(fault: str) -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    fake.faults.inject(fault, times=1)
    async with fake.client(reconcile=True, retry=RetryPolicy(backoff_base=0.001)) as kartra:
        result = (
            await kartra.lead("new@example.com")
            .create(first_name="N")
            .assign_tag("VIP")
            .subscribe_list("Newsletter")
        )
    lead = fake.lead("new@example.com")
    assert lead is not None
    assert result.ok
    assert result.lead_id == lead.id
    assert [a.cmd for a in result.actions] == [
        "create_lead",
        "assign_tag",
        "subscribe_lead_to_list",
    ]
    assert [a.index for a in result.actions] == [0, 1, 2]
    assert result.actions[0].data == LeadRef(lead.id)
    assert lead.tags == ["VIP"]
    assert lead.lists == {"Newsletter": True}
    applied_creates = [r for r in fake.requests if r.cmds[:1] == ("create_lead",) and r.applied]
    assert len(applied_creates) == 1


async def test_reconcile_refuses_when_the_rest_is_unsafe() -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    fake.faults.inject("drop_after", times=1)
    async with fake.client(reconcile=True) as kartra:
        with pytest.raises(AmbiguousResultError, match="give_points_to_lead"):
            await kartra.lead("new@example.com").create().give_points(5)
    assert fake.lead("new@example.com").score(fake.now()) == 5  # type: ignore[union-attr]


# ---- resources


async def test_unclosed_client_warns_when_collected() -> None:
    kartra = AsyncKartra("app", "key", "password", limiter=None)
    with pytest.warns(ResourceWarning, match="unclosed <AsyncKartra"):  # noqa: PT031
        del kartra  # warns at once (refcount) or at the collection
        gc.collect()
    async with httpx.AsyncClient() as http:
        borrowed = AsyncKartra("app", "key", "password", http_client=http)
        view = borrowed.with_options(timeout=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            del borrowed, view
            gc.collect()


async def test_no_connection_leaks_after_failed_retries() -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    with FakeServer(fake) as url:
        async with AsyncKartra(
            fake.app_id, fake.api_key, fake.api_password, base_url=url, limiter=None,
            retry=RetryPolicy(max_attempts=3, backoff_base=0.001),
        ) as kartra:  # fmt: skip
            fake.faults.inject("drop_after", share=0.5)
            outcomes = {"ok": 0, "failed": 0}

            async def one(i: int) -> None:
                try:
                    await kartra.lead("alice@example.com").assign_tag("VIP")
                    outcomes["ok"] += 1
                except KartraConnectionError:
                    outcomes["failed"] += 1

            async with anyio.create_task_group() as tg:
                for i in range(60):
                    tg.start_soon(one, i)
            pool = kartra._http._transport._pool  # httpcore's pool
            assert sum(outcomes.values()) == 60
            assert outcomes["failed"] > 0
            assert len(pool.connections) <= 25  # max_keepalive_connections
            assert all(c.is_idle() or c.is_closed() for c in pool.connections)
        assert pool.connections == []


async def test_memory_is_flat_over_10000_calls() -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    fake.record = False
    async with fake.client() as kartra:
        chain = kartra.lead("alice@example.com").assign_tag("VIP")
        for _ in range(1000):
            await chain
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(10_000):
                await chain
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, grown


# ---- soak: 10,000 chains through the fake with faults


async def test_soak_10000_chains() -> None:
    fake = FakeKartra(rate_limit=30, rate_period=0.02, seed=42)
    fake.seed()
    for i in range(3334):
        fake.add_lead(f"s{i}@example.com")
    for kind, share in (
        ("drop_before", 0.025),
        ("drop_after", 0.025),
        ("http_5xx", 0.02),
        ("timeout", 0.01),
        ("refuse", 0.01),
    ):
        fake.faults.inject(kind, share=share)
    limiter = Limiter(200, 0.02, margin=0.0)  # believes in twice the App's budget: 429 bursts
    retry = RetryPolicy(
        max_attempts=4, backoff_base=0.0005, backoff_cap=0.002, rate_limit_pause=0.005
    )
    outcomes: dict[int, str] = {}
    limit = anyio.Semaphore(64)

    async def one(i: int, kartra: AsyncKartra) -> None:
        group = i % 3
        if group == 0:
            chain = kartra.lead(f"u{i}@example.com").create().assign_tag("VIP").give_points(3)
        elif group == 1:
            chain = (
                kartra.lead(f"s{i // 3}@example.com").assign_tag("VIP").subscribe_list("Newsletter")
            )
        else:
            chain = kartra.lead(f"s{i // 3}@example.com").search()
        async with limit:
            try:
                result = await chain
                outcomes[i] = "ok" if result.ok else "failed"
            except AmbiguousResultError:
                outcomes[i] = "ambiguous"
            except (KartraConnectionError, KartraServerError, RateLimitError, KartraError):
                outcomes[i] = "failed"

    with anyio.fail_after(60):
        async with (
            fake.client(limiter=limiter, retry=retry) as kartra,
            anyio.create_task_group() as tg,
        ):
            for i in range(10_000):
                tg.start_soon(one, i, kartra)

    assert len(outcomes) == 10_000  # every call accounted for
    applied_per_email: dict[str, int] = {}
    for request in fake.requests:
        if request.applied and request.cmds[:1] == ("create_lead",):
            email = request.lead["email"]
            applied_per_email[email] = applied_per_email.get(email, 0) + 1
    for i, outcome in outcomes.items():
        if i % 3 == 0:
            email = f"u{i}@example.com"
            lead = fake.lead(email)
            assert applied_per_email.get(email, 0) <= 1, email  # never applied twice
            if outcome == "ok":
                assert lead is not None
                assert (lead.tags, lead.score(fake.now())) == (["VIP"], 3)
            elif outcome == "failed":
                assert lead is None  # only calls Kartra never saw fail without ambiguity
            else:
                assert lead is None or lead.score(fake.now()) in (0, 3)
        elif i % 3 == 1 and outcome == "ok":
            lead = fake.lead(f"s{i // 3}@example.com")
            assert lead is not None  # an idempotent call that succeeded is never lost
            assert "VIP" in lead.tags
            assert lead.lists.get("Newsletter")
    counts = {k: list(outcomes.values()).count(k) for k in ("ok", "failed", "ambiguous")}
    assert counts["ok"] > 9000
    assert counts["ambiguous"] > 0
    assert fake.faults.counts["refuse"] > 0
    assert any(r.status == 429 for r in fake.requests)


# ---- fuzzed bodies: always a KartraError, never KeyError/TypeError/AttributeError

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "status",
        "type",
        "message",
        "actions",
        "lead_details",
        "account_tags",
        "assign_tag",
        "transaction_list",
        "get_transaction_details",
        "transaction_details",
    ]
)
_shaped = st.fixed_dictionaries(
    {"status": st.sampled_from(["Success", "Error", "", None, 1])},
    optional={
        k: _json
        for k in [
            "type",
            "message",
            "actions",
            "lead_details",
            "account_tags",
            "assign_tag",
            "transaction_list",
            "get_transaction_details",
        ]
    },
)
_bodies = st.one_of(
    st.binary(max_size=64),
    _json.map(lambda v: __import__("json").dumps(v).encode()),
    _shaped.map(lambda v: __import__("json").dumps(v).encode()),
    st.dictionaries(_keys, _json, max_size=6).map(lambda v: __import__("json").dumps(v).encode()),
    st.sampled_from(
        [b"<html>502</html>", b'{"status":"Success","actions":[{"assign_tag":', b"null", b"[]"]
    ),
)
_CALLS = [
    Call({"actions": [{"cmd": c}]}, (COMMANDS[c],))
    for c in (
        "assign_tag",
        "retrieve_account_tags",
        "get_transaction_details",
        "retrieve_transactions_from_lead",
        "search_lead",
    )
] + [Call({"actions": []}, (COMMANDS["assign_tag"], COMMANDS["give_points_to_lead"]))]


@settings(max_examples=400, deadline=None)
@given(body=_bodies, call=st.sampled_from(_CALLS), status=st.sampled_from([200, 200, 403]))
def test_fuzzed_bodies_raise_only_kartra_errors(body: bytes, call: Call, status: int) -> None:
    try:
        result = read_response(status, body, call)
    except KartraError:
        return
    assert len(result.actions) == len(call.commands)
