"""Every documented constraint is checked before sending: a KartraValidationError
(a ValueError) names the field and the rule, and nothing goes on the wire."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from kartra_async import AsyncKartra, KartraValidationError

pytestmark = pytest.mark.anyio

PAST = datetime(2020, 1, 1, 12, 0, tzinfo=timezone.utc)
FUTURE = datetime(2099, 1, 1, 12, 0, tzinfo=timezone.utc)

# (case id, the call, field, the start of the rule, cmd)
CASES: list[tuple[str, Callable[[AsyncKartra], Any], str, str, str | None]] = [
    ("no identity", lambda k: k.lead(), "email", "a lead needs an email or an id", None),
    ("bad email", lambda k: k.lead("not-an-email"), "email", "must be an email address", None),
    ("email with space", lambda k: k.lead("a b@c.d"), "email", "must be an email address", None),
    ("id zero", lambda k: k.lead(id=0), "id", "must be >= 1", None),
    ("id bool", lambda k: k.lead(id=True), "id", "must be an integer (got a bool)", None),
    (
        "create by id",
        lambda k: k.lead(id=5).create(),
        "email",
        "a new lead is named by its email only",
        "create_lead",
    ),
    (
        "create twice",
        lambda k: k.lead("a@b.co").create().create(),
        "actions",
        "create_lead must be the first action",
        "create_lead",
    ),
    (
        "edit after tag",
        lambda k: k.lead("a@b.co").assign_tag("T").edit(city="X"),
        "actions",
        "edit_lead must be the first action",
        "edit_lead",
    ),
    (
        "search after create",
        lambda k: k.lead("a@b.co").create().search(),
        "actions",
        "search_lead must be the first action",
        "search_lead",
    ),
    (
        "unknown lead field",
        lambda k: k.lead("a@b.co").create(nickname="J"),
        "nickname",
        "unknown parameter",
        "create_lead",
    ),
    (
        "new_email on create",
        lambda k: k.lead("a@b.co").create(new_email="x@y.z"),
        "new_email",
        "unknown parameter",
        "create_lead",
    ),
    (
        "field not a string",
        lambda k: k.lead("a@b.co").create(first_name=5),
        "first_name",
        "must be a string (got int)",
        "create_lead",
    ),
    (
        "time zone",
        lambda k: k.lead("a@b.co").create(lead_preferred_time_zone="Mars/Olympus"),
        "lead_preferred_time_zone",
        "must be one of 76 values, such as 'America/Los_Angeles', 'America/Boise', "
        "'America/Chicago' (got 'Mars/Olympus')",
        "create_lead",
    ),
    (
        "time zone misspelt: the closest whole names, never a list cut mid-word",
        lambda k: k.lead("a@b.co").create(lead_preferred_time_zone="Pacific/Hono"),
        "lead_preferred_time_zone",
        "must be one of 76 values; closest: 'Pacific/Honolulu', 'Pacific/Tongatapu', "
        "'Pacific/Guam' (got 'Pacific/Hono')",
        "create_lead",
    ),
    (
        "new_email",
        lambda k: k.lead("a@b.co").edit(new_email="nope"),
        "new_email",
        "must be an email address",
        "edit_lead",
    ),
    (
        "custom fields not mapping",
        lambda k: k.lead("a@b.co").create(custom_fields=[("a", "b")]),
        "custom_fields",
        "must be a mapping",
        "create_lead",
    ),
    (
        "custom field identifier",
        lambda k: k.lead("a@b.co").create(custom_fields={"bad id!": "x"}),
        "custom_fields",
        "identifier can only contain letters, numbers, dashes or underscores",
        "create_lead",
    ),
    (
        "custom field value",
        lambda k: k.lead("a@b.co").create(custom_fields={"f": 1.5}),
        "custom_fields",
        "'f' must be a string (text fields), an option id",
        "create_lead",
    ),
    (
        "custom field option id",
        lambda k: k.lead("a@b.co").create(custom_fields={"f": [1, -2]}),
        "custom_fields",
        "'f' must be >= 1",
        "create_lead",
    ),
    (
        "empty tag",
        lambda k: k.lead("a@b.co").assign_tag(""),
        "tag_name",
        "cannot be empty",
        "assign_tag",
    ),
    (
        "blank tag",
        lambda k: k.lead("a@b.co").unassign_tag("  "),
        "tag_name",
        "cannot be empty",
        "unassign_tag",
    ),
    (
        "tag not str",
        lambda k: k.lead("a@b.co").assign_tag(None),
        "tag_name",
        "is required",
        "assign_tag",
    ),
    (
        "empty list",
        lambda k: k.lead("a@b.co").subscribe_list(""),
        "list_name",
        "cannot be empty",
        "subscribe_lead_to_list",
    ),
    (
        "empty list unsub",
        lambda k: k.lead("a@b.co").unsubscribe_list(""),
        "list_name",
        "cannot be empty",
        "unsubscribe_lead_from_list",
    ),
    (
        "points text",
        lambda k: k.lead("a@b.co").give_points("ten"),
        "points",
        "must be an integer (got 'ten')",
        "give_points_to_lead",
    ),
    (
        "points float",
        lambda k: k.lead("a@b.co").give_points(1.5),
        "points",
        "must be an integer (got 1.5)",
        "give_points_to_lead",
    ),
    (
        "points missing",
        lambda k: k.lead("a@b.co").remove_points(None),
        "points",
        "is required",
        "remove_points_from_lead",
    ),
    (
        "remove points text",
        lambda k: k.lead("a@b.co").remove_points("x"),
        "points",
        "must be an integer",
        "remove_points_from_lead",
    ),
    (
        "expiration negative",
        lambda k: k.lead("a@b.co").give_points(1, expiration_days=-1),
        "expiration_days",
        "must be >= 0",
        "give_points_to_lead",
    ),
    (
        "empty sequence",
        lambda k: k.lead("a@b.co").subscribe_sequence("", 1),
        "sequence_name",
        "cannot be empty",
        "subscribe_lead_to_sequence_at_step",
    ),
    (
        "empty step",
        lambda k: k.lead("a@b.co").subscribe_sequence("S", ""),
        "step",
        "cannot be empty",
        "subscribe_lead_to_sequence_at_step",
    ),
    (
        "step not alnum",
        lambda k: k.lead("a@b.co").subscribe_sequence("S", "1-a"),
        "step",
        "must be alphanumeric",
        "subscribe_lead_to_sequence_at_step",
    ),
    (
        "empty sequence unsub",
        lambda k: k.lead("a@b.co").unsubscribe_sequence(""),
        "sequence_name",
        "cannot be empty",
        "unsubscribe_lead_from_sequence",
    ),
    (
        "empty calendar",
        lambda k: k.lead("a@b.co").subscribe_calendar("", "C"),
        "calendar_name",
        "cannot be empty",
        "calendar_subscribe",
    ),
    (
        "empty class",
        lambda k: k.lead("a@b.co").cancel_calendar("C", ""),
        "class_name",
        "cannot be empty",
        "calendar_cancel",
    ),
    (
        "past start",
        lambda k: k.lead("a@b.co").subscribe_calendar("C", "K", PAST),
        "starting",
        "starting is in the past",
        "calendar_subscribe",
    ),
    (
        "past start date",
        lambda k: k.lead("a@b.co").subscribe_calendar("C", "K", date(2020, 1, 1)),
        "starting",
        "starting is in the past",
        "calendar_subscribe",
    ),
    (
        "start as text",
        lambda k: k.lead("a@b.co").subscribe_calendar("C", "K", "16 Jan 2099"),
        "starting",
        "must be a datetime or a date",
        "calendar_subscribe",
    ),
    (
        "empty chain",
        lambda k: k.lead("a@b.co").send(),
        "actions",
        "a chain needs at least one action",
        None,
    ),
    (
        "custom field identifier empty",
        lambda k: k.account.create_custom_field("", "input_field"),
        "identifier",
        "cannot be empty",
        "create_custom_field",
    ),
    (
        "custom field identifier charset",
        lambda k: k.account.create_custom_field("my field", "input_field"),
        "identifier",
        "can only contain letters, numbers, dashes or underscores",
        "create_custom_field",
    ),
    (
        "custom field type",
        lambda k: k.account.create_custom_field("f", "dropdown"),
        "type",
        "must be one of 'input_field'",
        "create_custom_field",
    ),
    (
        "options missing",
        lambda k: k.account.create_custom_field("f", "checkbox"),
        "options",
        "are required for a checkbox field",
        "create_custom_field",
    ),
    (
        "options on text",
        lambda k: k.account.create_custom_field("f", "text_area", ["a", "b"]),
        "options",
        "only drop_down, radio_button and checkbox take options",
        "create_custom_field",
    ),
    (
        "one option",
        lambda k: k.account.create_custom_field("f", "radio_button", ["a"]),
        "options",
        "must have two or more options (got 1)",
        "create_custom_field",
    ),
    (
        "empty option",
        lambda k: k.account.create_custom_field("f", "drop_down", ["a", ""]),
        "options",
        "option 1 cannot be empty",
        "create_custom_field",
    ),
    (
        "options not list",
        lambda k: k.account.create_custom_field("f", "drop_down", "a,b"),
        "options",
        "must be a list of option names",
        "create_custom_field",
    ),
    (
        "transaction id",
        lambda k: k.transactions.search(0),
        "transaction_id",
        "must be >= 1",
        "search_transaction",
    ),
    (
        "transaction id text",
        lambda k: k.transactions.get("abc"),
        "transaction_id",
        "must be an integer",
        "get_transaction_details",
    ),
    (
        "refund zero",
        lambda k: k.transactions.refund(1, amount=0),
        "amount",
        "must be more than 0",
        "refund_transaction",
    ),
    (
        "refund three decimals",
        lambda k: k.transactions.refund(1, amount="1.005"),
        "amount",
        "must have at most two decimals",
        "refund_transaction",
    ),
    (
        "refund not number",
        lambda k: k.transactions.refund(1, amount="ten"),
        "amount",
        "must be a number",
        "refund_transaction",
    ),
    (
        "refund nan",
        lambda k: k.transactions.refund(1, amount=Decimal("NaN")),
        "amount",
        "must be a finite number",
        "refund_transaction",
    ),
    (
        "cancel neither",
        lambda k: k.transactions.cancel(),
        "transaction_id",
        "one of transaction_id or transaction_internal_subscription_id is required",
        "cancel_transaction",
    ),
    (
        "cancel both",
        lambda k: k.transactions.cancel(1, 2),
        "transaction_id",
        "give only one of",
        "cancel_transaction",
    ),
    (
        "edit nothing",
        lambda k: k.subscriptions.edit(1),
        "subscription",
        "at least one setting to change is required",
        "edit_subscription",
    ),
    (
        "product without price point",
        lambda k: k.subscriptions.edit(1, product_id=5),
        "product_id",
        "product_id and price_point must be given together",
        "edit_subscription",
    ),
    (
        "price point without product",
        lambda k: k.subscriptions.edit(1, price_point=5),
        "product_id",
        "product_id and price_point must be given together",
        "edit_subscription",
    ),
    (
        "amount low",
        lambda k: k.subscriptions.edit(1, amount="0.99"),
        "amount",
        "must be at least 1.00",
        "edit_subscription",
    ),
    (
        "amount high",
        lambda k: k.subscriptions.edit(1, amount="10000"),
        "amount",
        "must be at most 9,999.99",
        "edit_subscription",
    ),
    (
        "quantity low",
        lambda k: k.subscriptions.edit(1, quantity=0),
        "quantity",
        "must be >= 1",
        "edit_subscription",
    ),
    (
        "quantity high",
        lambda k: k.subscriptions.edit(1, quantity=10000),
        "quantity",
        "must be <= 9,999",
        "edit_subscription",
    ),
    (
        "tax high",
        lambda k: k.subscriptions.edit(1, tax_percent=101),
        "tax_percent",
        "must be at most 100",
        "edit_subscription",
    ),
    (
        "tax negative",
        lambda k: k.subscriptions.edit(1, tax_percent=-1),
        "tax_percent",
        "must be at least 0",
        "edit_subscription",
    ),
    (
        "installments",
        lambda k: k.subscriptions.edit(1, installments_left="forever"),
        "installments_left",
        "must be a positive integer or 'until cancelled'",
        "edit_subscription",
    ),
    (
        "installments zero",
        lambda k: k.subscriptions.edit(1, installments_left=0),
        "installments_left",
        "must be a positive integer",
        "edit_subscription",
    ),
    (
        "date format",
        lambda k: k.subscriptions.edit(1, next_payment_date="18/01/2099"),
        "next_payment_date",
        "must be 'YYYY-MM-DD HH:MM'",
        "edit_subscription",
    ),
    (
        "date not real",
        lambda k: k.subscriptions.edit(1, next_payment_date="2099-02-30 10:00"),
        "next_payment_date",
        "is not a real date",
        "edit_subscription",
    ),
    (
        "date past",
        lambda k: k.subscriptions.edit(1, next_payment_date="2020-01-18 05:46"),
        "next_payment_date",
        "the date is in the past",
        "edit_subscription",
    ),
    (
        "datetime past",
        lambda k: k.subscriptions.edit(1, next_payment_date=PAST),
        "next_payment_date",
        "the date is in the past",
        "edit_subscription",
    ),
    (
        "period 1",
        lambda k: k.subscriptions.edit(1, recurrence={"recurring_period_1": "daily"}),
        "recurrence",
        "recurring period must be one of 'monthly'",
        "edit_subscription",
    ),
    (
        "period 2 alone",
        lambda k: k.subscriptions.edit(1, recurrence={"recurring_period_2": "yearly"}),
        "recurrence",
        "recurring_period_2 needs recurring_period_1",
        "edit_subscription",
    ),
    (
        "period 2 with quarterly",
        lambda k: k.subscriptions.edit(
            1, recurrence={"recurring_period_1": "quarterly", "recurring_period_2": "yearly"}
        ),
        "recurrence",
        "recurring_period_2 needs recurring_period_1",
        "edit_subscription",
    ),
    (
        "period 2 value",
        lambda k: k.subscriptions.edit(
            1, recurrence={"recurring_period_1": "monthly", "recurring_period_2": "monthly"}
        ),
        "recurrence",
        "recurring period must be one of 'yearly', 'every 2 years'",
        "edit_subscription",
    ),
    (
        "recurrence key",
        lambda k: k.subscriptions.edit(1, recurrence={"period": "monthly"}),
        "recurrence",
        "unknown key 'period'",
        "edit_subscription",
    ),
    (
        "subscription id",
        lambda k: k.subscriptions.pause(-3),
        "subscription_id",
        "must be >= 1",
        "modify_subscription_status",
    ),
    ("get_lead email", lambda k: k.get_lead(""), "email", "must be an email address", "get_lead"),
    (
        "call without actions",
        lambda k: k.call([]),
        "actions",
        "a call needs at least one action",
        None,
    ),
    (
        "call without cmd",
        lambda k: k.call([{"tag_name": "x"}]),
        "actions[0].cmd",
        "is required",
        None,
    ),
]


@pytest.mark.parametrize(("case", "call", "field", "rule", "cmd"), CASES, ids=[c[0] for c in CASES])
async def test_invalid_input_raises_before_sending(
    kartra: AsyncKartra,
    api: respx.MockRouter,
    case: str,
    call: Callable[[AsyncKartra], Awaitable[Any] | Any],
    field: str,
    rule: str,
    cmd: str | None,
) -> None:
    route = api.post("").mock(return_value=httpx.Response(200, json={"status": "Success"}))

    async def run() -> None:
        pending = call(kartra)  # building may raise, or sending may
        if hasattr(pending, "__await__"):
            await pending

    with pytest.raises(KartraValidationError) as caught:
        await run()
    err = caught.value
    assert isinstance(err, ValueError)
    assert err.field == field
    assert err.rule.startswith(rule), err.rule
    assert err.cmd == cmd
    assert str(err) == (f"{cmd}: " if cmd else "") + f"{field}: {err.rule}"
    assert route.call_count == 0


def test_accepted_edge_values() -> None:
    from kartra_async._commands import COMMANDS

    assert COMMANDS["give_points_to_lead"].build({"points": "12"}) == {"points": 12}
    assert COMMANDS["give_points_to_lead"].build({"points": 5, "expiration_days": 0}) == {
        "points": 5,
        "expiration": 0,
    }
    assert COMMANDS["edit_subscription"].build(
        {"subscription_id": 1, "amount": "9999.99", "tax_percent": "0"}
    ) == {
        "subscription_id": 1,
        "subscription_amount": Decimal("9999.99"),
        "subscription_tax_percent": Decimal(0),
    }
    soon = datetime.now(timezone.utc) + timedelta(days=2)
    assert "subscription_next_payment_date" in COMMANDS["edit_subscription"].build(
        {"subscription_id": 1, "next_payment_date": soon}
    )
    assert COMMANDS["subscribe_lead_to_sequence_at_step"].build(
        {"sequence_name": "S", "step": "A1"}
    ) == {"sequence_name": "S", "step": "A1"}
    assert COMMANDS["create_custom_field"].build(
        {"identifier": "a-B_9", "type": "input_field"}
    ) == {"custom_field_identifier": "a-B_9", "custom_field_type": "input_field"}
    _ = FUTURE
