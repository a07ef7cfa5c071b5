"""The public API's types, as a user's type checker sees them.

Never run: `mypy --strict tests/typing/check_public_api.py` checks it (tests/test_typing.py
runs that). Every public call is wrapped in `assert_type`, so a signature that loosens to
`Any` or changes its result type fails the check.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from typing_extensions import assert_type

import kartra_async
from kartra_async import (
    ERROR_CODES,
    NOT_GIVEN,
    UNTIL_CANCELLED,
    ActionResult,
    AmbiguousResultError,
    AsyncKartra,
    CancelResult,
    ChainError,
    ChainResult,
    CustomField,
    FanOut,
    ItemState,
    KartraAPIError,
    KartraDecodeError,
    KartraError,
    KartraValidationError,
    KartraWebhookError,
    Lead,
    LeadChain,
    LeadRef,
    Limiter,
    NotGiven,
    Outcome,
    Priority,
    RedisLimiter,
    RefundResult,
    RetryEvent,
    RetryPolicy,
    SubscriptionDetails,
    SubscriptionSummary,
    Summary,
    TagNotFoundError,
    Transaction,
    TransactionSummary,
)
from kartra_async.errors import ErrorCode
from kartra_async.models import FieldOption
from kartra_async.webhooks import Event, parse_event, parse_ipn


async def client_and_chains(kartra: AsyncKartra) -> None:
    assert_type(AsyncKartra("app", "key", "password", timeout=10.0), AsyncKartra)
    assert_type(AsyncKartra.from_env(), AsyncKartra)
    assert_type(kartra.with_options(retry=RetryPolicy(max_attempts=5), timeout=60), AsyncKartra)
    assert_type(kartra.base_url, str)
    assert_type(kartra.app_id, str)

    lead = kartra.lead("john@example.com")
    assert_type(lead, LeadChain)
    assert_type(kartra.lead(id=1234), LeadChain)
    assert_type(lead.create(first_name="John", custom_fields={"text1": "hi"}), LeadChain)
    assert_type(lead.edit(new_email="john@example.org"), LeadChain)
    assert_type(lead.search(), LeadChain)
    assert_type(lead.assign_tag("VIP"), LeadChain)
    assert_type(lead.unassign_tag("VIP"), LeadChain)
    assert_type(lead.subscribe_list("Newsletter"), LeadChain)
    assert_type(lead.unsubscribe_list("Newsletter"), LeadChain)
    assert_type(lead.give_points(12, expiration_days=30), LeadChain)
    assert_type(lead.remove_points(2), LeadChain)
    assert_type(lead.subscribe_sequence("Welcome", step=2), LeadChain)
    assert_type(lead.unsubscribe_sequence("Welcome"), LeadChain)
    assert_type(lead.subscribe_calendar("Calendar", "Class", datetime(2030, 1, 1)), LeadChain)
    assert_type(lead.cancel_calendar("Calendar", "Class"), LeadChain)
    assert_type(lead.transactions(), LeadChain)
    assert_type(lead.subscriptions(), LeadChain)
    assert_type(lead.payload, dict[str, Any])
    assert_type(lead.cmds, tuple[str, ...])

    result = await lead.assign_tag("VIP")
    assert_type(result, ChainResult)
    assert_type(await lead.assign_tag("VIP").send(priority="bulk"), ChainResult)
    assert_type(result.ok, bool)
    assert_type(result.lead_id, int | None)
    assert_type(result.actions, tuple[ActionResult, ...])
    assert_type(result[0], ActionResult)
    assert_type(result.errors, tuple[KartraAPIError, ...])
    assert_type(result.raise_for_errors(), ChainResult)
    action = result.actions[0]
    assert_type(action.cmd, str)
    assert_type(action.ok, bool)
    assert_type(action.code, int | None)
    assert_type(action.message, str | None)
    assert_type(action.error, KartraAPIError | None)

    assert_type(await kartra.call([{"cmd": "assign_tag", "tag_name": "VIP"}]), ChainResult)
    assert_type(await kartra.get_lead("john@example.com"), Lead)
    assert_type(await kartra.get_lead(id=1234), Lead)


async def account_calls(kartra: AsyncKartra) -> None:
    assert_type(await kartra.account.tags(), list[str])
    assert_type(await kartra.account.lists(), list[str])
    assert_type(await kartra.account.sequences(), list[str])
    assert_type(await kartra.account.pages(), list[str])
    fields = await kartra.account.custom_fields()
    assert_type(fields, list[CustomField])
    assert_type(fields[0].options, list[FieldOption])
    assert_type(await kartra.account.create_custom_field("colour", "drop_down", ["a", "b"]), None)

    assert_type(await kartra.transactions.search(1), bool)
    transaction = await kartra.transactions.get(1)
    assert_type(transaction, Transaction)
    assert_type(transaction.transaction_id, int)
    assert_type(await kartra.transactions.refund(1, amount=Decimal("9.95")), RefundResult)
    assert_type(await kartra.transactions.cancel(transaction_id=1), CancelResult)

    assert_type(await kartra.subscriptions.search(1), bool)
    assert_type(await kartra.subscriptions.get(1), SubscriptionDetails)
    assert_type(await kartra.subscriptions.edit(1, quantity=2), None)
    assert_type(await kartra.subscriptions.edit(1, installments_left=UNTIL_CANCELLED), None)
    assert_type(await kartra.subscriptions.pause(1), None)
    assert_type(await kartra.subscriptions.unpause(1), None)
    assert_type(await kartra.subscriptions.cancel(1), None)


async def results_of_lead_reads(result: ChainResult) -> None:
    """What the chain's reads hold, once narrowed (ActionResult.data is per-cmd)."""
    data = result.actions[0].data
    if isinstance(data, LeadRef):
        assert_type(data.id, int)
    if isinstance(data, list) and isinstance(data[0], TransactionSummary):
        assert_type(data[0].transaction_id, int)
    if isinstance(data, list) and isinstance(data[0], SubscriptionSummary):
        assert_type(data[0].subscription_id, int)


async def bulk(kartra: AsyncKartra, rows: list[dict[str, str]]) -> None:
    job = kartra.fan_out(rows, lambda row: kartra.lead(row["email"]).assign_tag("VIP"))
    assert_type(job, FanOut[dict[str, str]])
    async with job as running:
        assert_type(running, FanOut[dict[str, str]])
        async for outcome in running:
            assert_type(outcome, Outcome[dict[str, str]])
            assert_type(outcome.ok, bool)
            assert_type(outcome.state, ItemState)
            assert_type(outcome.result, ChainResult | None)
    assert_type(job.summary, Summary)
    assert_type(await kartra.fan_out(rows, lambda row: kartra.lead(row["email"])).run(), Summary)


async def limits_and_retries(kartra: AsyncKartra) -> None:
    limiter = Limiter(20, 1.0)
    assert_type(await limiter.acquire("bulk"), float)
    priority: Priority = "interactive"
    assert_type(await limiter.acquire(priority), float)
    shared = RedisLimiter("redis://127.0.0.1:6379/0", "app")
    assert_type(shared, RedisLimiter)
    assert_type(kartra_async.RedisLimiter, type[RedisLimiter])
    assert_type(AsyncKartra("app", "key", "password", limiter=shared), AsyncKartra)

    def on_retry(event: RetryEvent) -> None:
        assert_type(event.attempt, int)
        assert_type(event.delay, float)
        assert_type(event.error, KartraError)

    policy = RetryPolicy(max_attempts=5, backoff_base=0.1, on_retry=on_retry)
    assert_type(policy.delay(1), float)
    patient = RetryPolicy(rate_limit_pause=2.0, rate_limit_pause_max=10.0, rate_limit_resends=8)
    assert_type(patient.rate_limit_resends, int)
    assert_type(patient.rate_limit_delay(None), float)
    assert_type(AsyncKartra("app", "key", "password", retry=patient, reconcile=True), AsyncKartra)
    assert_type(AsyncKartra("app", "key", "password", limiter=NOT_GIVEN), AsyncKartra)
    assert_type(NOT_GIVEN, NotGiven)
    view = kartra.with_options(reconcile=True, limiter=None, retry=patient)
    assert_type(view, AsyncKartra)
    assert_type(view.reconcile, bool)
    assert_type(view.retry, RetryPolicy)
    call = kartra.lead("john@example.com").create().assign_tag("VIP").compile()
    assert_type(await kartra.send(call, reconcile=False), ChainResult)
    assert_type(await kartra.reconcile_ambiguous(call), ChainResult)


def await_nothing() -> None: ...


def errors() -> None:
    assert_type(ERROR_CODES[244], ErrorCode)
    assert_type(KartraValidationError("email", "must be an email"), KartraValidationError)
    try:
        parse_event(b"{}")
    except KartraWebhookError as exc:
        assert_type(exc, KartraWebhookError)
    except ChainError as exc:
        assert_type(exc.errors, tuple[KartraAPIError, ...])
        assert_type(str(exc), str)
    except KartraDecodeError as exc:
        assert_type(exc.model, str)
        assert_type(exc.reason, str)
        assert_type(exc.status_code, int | None)
    except AmbiguousResultError as exc:
        assert_type(exc.cmds, tuple[str, ...])
        assert_type(exc.cause, BaseException | None)
    except KartraAPIError as exc:
        assert_type(exc.with_index(2), KartraAPIError)
    try:
        await_nothing()
    except TagNotFoundError as exc:
        assert_type(exc.with_index(2), TagNotFoundError)
        assert_type(exc.__replace__(action_index=1), TagNotFoundError)
    assert_type(parse_event(b"{}"), Event)
    assert_type(parse_ipn(b""), Transaction)
