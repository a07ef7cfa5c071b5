"""The command table is the one home of each command's knowledge: the fake covers the
same commands, nothing outside it names a command, and its options (reconcile, the
retry policy, NOT_GIVEN, with_options) behave as documented."""

from __future__ import annotations

import ast
import pickle
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import respx

import kartra_async
from kartra_async import (
    NOT_GIVEN,
    AmbiguousResultError,
    AsyncKartra,
    ItemState,
    LeadChain,
    NotGiven,
    RetryPolicy,
)
from kartra_async._bulk import Journal, JournalEntry
from kartra_async._commands import COMMANDS, Call, LookUpCreatedLead, Safety, Scope
from kartra_async._retry import Decision, decide
from kartra_async.errors import KartraConnectionError, KartraResponseError, LeadExistsError
from kartra_async.limits import Limiter
from kartra_async.testing import FakeKartra
from kartra_async.testing._handlers import HANDLERS, LEAD_CMDS, LEAD_SCOPED, TOP_LEVEL

pytestmark = pytest.mark.anyio

PACKAGE = Path(kartra_async.__file__).parent


# ---- the fake and the table name the same commands


def test_the_fakes_handlers_and_the_table_cover_the_same_commands() -> None:
    handled = [*HANDLERS, *LEAD_CMDS, *TOP_LEVEL]
    assert len(handled) == len(set(handled))  # no cmd has two handlers
    assert set(handled) == set(COMMANDS)
    assert set(LEAD_CMDS) == {c.name for c in COMMANDS.values() if c.starts_chain}
    assert set(TOP_LEVEL) == {c.name for c in COMMANDS.values() if c.scope is Scope.GET_LEAD}
    assert {
        c.name for c in COMMANDS.values() if c.scope is Scope.LEAD and not c.starts_chain
    } == LEAD_SCOPED


def test_the_rows_say_which_result_names_the_lead_and_what_is_reconciled() -> None:
    assert {c.name for c in COMMANDS.values() if c.names_lead} == {
        "create_lead", "edit_lead", "search_lead", "get_lead",
    }  # fmt: skip
    assert {c.name for c in COMMANDS.values() if c.data_required} == {
        "get_lead", "get_transaction_details", "get_subscription_details",
    }  # fmt: skip
    reconciled = {c.name: c.reconcile for c in COMMANDS.values() if c.reconcile is not None}
    assert reconciled == {"create_lead": LookUpCreatedLead(lookup="get_lead")}
    assert COMMANDS[LookUpCreatedLead().lookup].safety is Safety.READ_ONLY
    forms = {c.name: c.single_form for c in COMMANDS.values() if c.single_form != "flat"}
    assert forms == {
        "create_lead": "wrapped",
        "edit_lead": "wrapped",
        "edit_subscription": "wrapped",
        "modify_subscription_status": "wrapped",
        "refund_transaction": "unwrapped",
        "cancel_transaction": "unwrapped",
        "get_subscription_details": "unwrapped",
        "get_transaction_details": "unwrapped",
        "retrieve_transactions_from_lead": "unwrapped",
        "retrieve_subscriptions_from_lead": "unwrapped",
    }


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


@pytest.mark.parametrize(
    "module", ["_client.py", "_bulk.py", "_response.py", "_retry.py", "testing/fake.py"]
)
def test_no_command_is_named_outside_the_table(module: str) -> None:
    """The client, bulk, the reader, the retry policy and the fake read the table; the
    only cmd names they hold are row look-ups (`COMMANDS["get_lead"]`, a builder)."""
    tree = ast.parse((PACKAGE / module).read_text())
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "COMMANDS"
        ):
            skip.add(id(node.slice))
    named = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and node.value in COMMANDS
    ]
    assert named == []


# ---- the policy object


def test_the_policy_is_keyword_only_frozen_and_checked() -> None:
    policy = RetryPolicy()
    assert (
        policy.max_attempts, policy.backoff_base, policy.backoff_cap, policy.jitter,
        policy.server_retry_after_max, policy.rate_limit_pause, policy.rate_limit_pause_max,
        policy.rate_limit_resends, policy.on_retry,
    ) == (3, 0.5, 8.0, 0.5, 30.0, 1.0, 30.0, 5, None)  # fmt: skip
    with pytest.raises(TypeError):
        RetryPolicy(5)  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_attempts = 5  # type: ignore[misc]
    assert attrs.evolve(policy, rate_limit_resends=0).rate_limit_resends == 0
    for bad in (
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"backoff_base": -1},
        {"rate_limit_pause": -1},
        {"rate_limit_resends": -1},
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            RetryPolicy(**bad)
    assert RetryPolicy(rate_limit_pause=0.2).rate_limit_delay(None) == 0.2
    assert RetryPolicy(rate_limit_pause_max=5).rate_limit_delay(3600) == 5
    assert RetryPolicy().rate_limit_delay(2.0) == 2.0


def test_decision_is_an_enum() -> None:
    call = Call({"actions": [{"cmd": "assign_tag"}]}, (COMMANDS["assign_tag"],))
    points = Call({"actions": [{"cmd": "x"}]}, (COMMANDS["give_points_to_lead"],))
    assert decide(KartraConnectionError("x", request_sent=False), points) is Decision.RETRY
    assert decide(KartraResponseError("x"), call) is Decision.RETRY
    assert decide(KartraResponseError("x"), points) is Decision.AMBIGUOUS
    assert decide(LeadExistsError("x", code=244), call) is Decision.RAISE
    assert [d.value for d in Decision] == ["retry", "ambiguous", "raise"]


async def test_429_pause_and_resends_come_from_the_policy() -> None:
    paused: list[float] = []
    limiter = Limiter(100, 1.0)
    limiter.pause = paused.append  # type: ignore[method-assign]
    policy = RetryPolicy(rate_limit_pause=0.25, rate_limit_pause_max=2.0, rate_limit_resends=2)
    with respx.mock(base_url="https://app.kartra.com/api") as router:
        route = router.post("").mock(
            side_effect=[
                httpx.Response(429),
                httpx.Response(429, headers={"Retry-After": "60"}),
                httpx.Response(429),
            ]
        )
        async with AsyncKartra("app", "k", "p", limiter=limiter, retry=policy) as kartra:
            with pytest.raises(kartra_async.RateLimitError, match="2 resends"):
                await kartra.account.tags()
    assert route.call_count == 3
    assert paused == [0.25, 2.0, 0.25]


# ---- NOT_GIVEN


def test_not_given_is_a_typed_falsy_singleton() -> None:
    assert isinstance(NOT_GIVEN, NotGiven)
    assert not NOT_GIVEN
    assert repr(NOT_GIVEN) == "NOT_GIVEN"
    assert NotGiven() is NOT_GIVEN
    assert pickle.loads(pickle.dumps(NOT_GIVEN)) is NOT_GIVEN


async def test_limiter_not_given_is_the_apps_shared_limiter_and_none_is_none() -> None:
    async with AsyncKartra("shared-app", "k", "p") as kartra:
        other = AsyncKartra("shared-app", "k2", "p2", limiter=NOT_GIVEN)
        assert kartra.limiter is not None
        assert kartra.limiter is other.limiter
        await other.aclose()
        assert kartra.with_options(limiter=None).limiter is None
        assert kartra.with_options(limiter=NOT_GIVEN).limiter is kartra.limiter


# ---- with_options


async def test_with_options_builds_a_new_client_on_the_same_pool() -> None:
    async with AsyncKartra("app", "k", "p", limiter=None) as kartra:
        _ = kartra.account  # a cached view on the original
        policy = RetryPolicy(max_attempts=7)
        view = kartra.with_options(retry=policy, reconcile=True, deadline=5)
        assert type(view) is AsyncKartra
        assert view is not kartra
        assert view._http is kartra._http
        assert view.account._client is view  # type: ignore[attr-defined]
        assert kartra.account._client is kartra  # type: ignore[attr-defined]
        assert (view.retry, view.reconcile, view.deadline) == (policy, True, 5.0)
        assert (kartra.retry, kartra.reconcile, kartra.deadline) == (RetryPolicy(), False, 60.0)
        assert (view.app_id, view.base_url, view.limiter) == (
            kartra.app_id, kartra.base_url, kartra.limiter,
        )  # fmt: skip
        same = view.with_options()
        assert (same.retry, same.reconcile, same.deadline) == (policy, True, 5.0)
        await view.aclose()
        assert not kartra._http.is_closed
        with pytest.raises(kartra_async.KartraValidationError, match="reconcile"):
            kartra.with_options(reconcile="yes")  # type: ignore[arg-type]


# ---- reconcile: a behaviour option, per client and per call


def _creates(kartra: AsyncKartra) -> LeadChain:
    return kartra.lead("new@example.com").create(first_name="N").assign_tag("VIP")


async def test_reconcile_is_off_by_default_and_on_per_client_or_per_call() -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    async with fake.client() as kartra:
        assert kartra.reconcile is False
        fake.faults.inject("drop_after", times=1)
        with pytest.raises(AmbiguousResultError):
            await _creates(kartra)
    assert [r.cmds for r in fake.requests] == [("create_lead", "assign_tag")]

    fake = FakeKartra(rate_limit=None)
    fake.seed()
    async with fake.client(reconcile=True) as kartra:
        fake.faults.inject("drop_after", times=1)
        with pytest.raises(AmbiguousResultError):  # the call says no
            await kartra.send(_creates(kartra).compile(), reconcile=False)
    assert [r.cmds for r in fake.requests] == [("create_lead", "assign_tag")]

    fake = FakeKartra(rate_limit=None)
    fake.seed()
    async with fake.client() as kartra:
        fake.faults.inject("drop_after", times=1)
        result = await kartra.send(_creates(kartra).compile(), reconcile=True)
        lead = fake.lead("new@example.com")
        assert lead is not None
        assert (result.ok, result.lead_id, lead.tags) == (True, lead.id, ["VIP"])
        fake.faults.inject("drop_after", times=1)
        again = kartra.lead("two@example.com").create().assign_tag("VIP")
        assert (await kartra.with_options(reconcile=True).send(again.compile())).ok
    assert [r.cmds for r in fake.requests] == [
        ("create_lead", "assign_tag"),
        ("get_lead",),
        ("assign_tag",),
        ("create_lead", "assign_tag"),
        ("get_lead",),
        ("assign_tag",),
    ]


async def test_reconcile_ambiguous_needs_a_strategy() -> None:
    async with AsyncKartra("app", "k", "p", limiter=None) as kartra:
        call = kartra.lead("a@example.com").assign_tag("VIP").compile()
        with pytest.raises(ValueError, match="assign_tag has no reconcile strategy"):
            await kartra.reconcile_ambiguous(call)


# ---- bulk: the journal's send time reaches the reconcile


async def test_bulk_reconcile_compares_with_the_journals_send_time(tmp_path: Path) -> None:
    """The lead joined three days before the journal's "sent" row: the in-flight create
    did not make it (Kartra refused it, 244). Without the row's time the lead would be
    taken as the job's, and the tag applied to someone else's lead."""
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    other = fake.add_lead("old@example.com")
    other.date_joined = fake.now() - timedelta(days=3)
    path = tmp_path / "job.db"
    with Journal(path) as journal:
        journal.record(JournalEntry("old", ItemState.SENT, Safety.UNSAFE, updated=time.time()))
    async with fake.client() as kartra:

        def build(name: str) -> Any:
            return kartra.lead(f"{name}@example.com").create().assign_tag("VIP")

        async with kartra.fan_out(["old"], build, journal=path, key=str) as job:
            outcomes = [o async for o in job]
    assert not outcomes[0].ok
    assert "LeadExistsError" in str(outcomes[0].error)
    assert other.tags == []
    assert [r.cmds for r in fake.requests] == [("get_lead",)]
