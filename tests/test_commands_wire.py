"""The exact form body of every command, and one request per chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from kartra_async import AsyncKartra, KartraResponseError
from kartra_async._commands import COMMANDS
from kartra_async.models import LeadRef

from .conftest import fields

pytestmark = pytest.mark.anyio

OK = {"status": "Success", "message": "ok", "type": "101"}

A = "actions[0]"

# (name, what the user calls, the form fields Kartra receives after the credentials)
CASES: list[tuple[str, Callable[[AsyncKartra], Awaitable[Any]], list[tuple[str, str]]]] = [
    (
        "create_lead",
        lambda k: k.lead("john@example.com").create(
            first_name="John",
            last_name="Smith",
            phone="555",
            phone_country_code="+1",
            lead_preferred_time_zone="Europe/London",
            custom_fields={"text1": "hi", "dropdown1": 612, "checkbox1": [620, 621]},
        ),
        [
            ("lead[email]", "john@example.com"),
            ("lead[first_name]", "John"),
            ("lead[last_name]", "Smith"),
            ("lead[phone]", "555"),
            ("lead[phone_country_code]", "+1"),
            ("lead[lead_preferred_time_zone]", "Europe/London"),
            ("lead[custom_fields][0][field_identifier]", "text1"),
            ("lead[custom_fields][0][field_value]", "hi"),
            ("lead[custom_fields][1][field_identifier]", "dropdown1"),
            ("lead[custom_fields][1][field_value]", "612"),
            ("lead[custom_fields][2][field_identifier]", "checkbox1"),
            ("lead[custom_fields][2][field_value][0]", "620"),
            ("lead[custom_fields][2][field_value][1]", "621"),
            (f"{A}[cmd]", "create_lead"),
        ],
    ),
    (
        "edit_lead",
        lambda k: k.lead(id=1234).edit(
            new_email="new@example.com", city="Paris", custom_fields={"text1": "", "cb": []}
        ),
        [
            ("lead[id]", "1234"),
            ("lead[new_email]", "new@example.com"),
            ("lead[city]", "Paris"),
            ("lead[custom_fields][0][field_identifier]", "text1"),
            ("lead[custom_fields][0][field_value]", ""),
            ("lead[custom_fields][1][field_identifier]", "cb"),
            ("lead[custom_fields][1][field_value]", ""),
            (f"{A}[cmd]", "edit_lead"),
        ],
    ),
    (
        "search_lead",
        lambda k: k.lead("test@kartra.com").search(),
        [("lead[email]", "test@kartra.com"), (f"{A}[cmd]", "search_lead")],
    ),
    (
        "subscribe_lead_to_list",
        lambda k: k.lead("a@b.co").subscribe_list("List name"),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "subscribe_lead_to_list"),
            (f"{A}[list_name]", "List name"),
        ],
    ),
    (
        "unsubscribe_lead_from_list",
        lambda k: k.lead("a@b.co").unsubscribe_list("List name"),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "unsubscribe_lead_from_list"),
            (f"{A}[list_name]", "List name"),
        ],
    ),
    (
        "assign_tag",
        lambda k: k.lead("a@b.co").assign_tag("tag name"),
        [("lead[email]", "a@b.co"), (f"{A}[cmd]", "assign_tag"), (f"{A}[tag_name]", "tag name")],
    ),
    (
        "unassign_tag",
        lambda k: k.lead("a@b.co").unassign_tag("tag name"),
        [("lead[email]", "a@b.co"), (f"{A}[cmd]", "unassign_tag"), (f"{A}[tag_name]", "tag name")],
    ),
    (
        "give_points_to_lead",
        lambda k: k.lead("a@b.co").give_points(12, expiration_days=30),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "give_points_to_lead"),
            (f"{A}[points]", "12"),
            (f"{A}[expiration]", "30"),
        ],
    ),
    (
        "remove_points_from_lead",
        lambda k: k.lead("a@b.co").remove_points(1),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "remove_points_from_lead"),
            (f"{A}[points]", "1"),
        ],
    ),
    (
        "subscribe_lead_to_sequence_at_step",
        lambda k: k.lead("a@b.co").subscribe_sequence("Sequence name", 1),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "subscribe_lead_to_sequence_at_step"),
            (f"{A}[sequence_name]", "Sequence name"),
            (f"{A}[step]", "1"),
        ],
    ),
    (
        "unsubscribe_lead_from_sequence",
        lambda k: k.lead("a@b.co").unsubscribe_sequence("Sequence name"),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "unsubscribe_lead_from_sequence"),
            (f"{A}[sequence_name]", "Sequence name"),
        ],
    ),
    (
        "calendar_subscribe",
        # 20:00 UTC on 16 Jan 2099 is 15:00 in New York (EST, UTC-5)
        lambda k: k.lead("a@b.co").subscribe_calendar(
            "First calendar", "First class", datetime(2099, 1, 16, 20, 0, tzinfo=timezone.utc)
        ),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "calendar_subscribe"),
            (f"{A}[calendar_name]", "First calendar"),
            (f"{A}[class_name]", "First class"),
            (f"{A}[starting_date]", "16 Jan 2099"),
            (f"{A}[starting_hour]", "15:00"),
        ],
    ),
    (
        "calendar_cancel",
        lambda k: k.lead("a@b.co").cancel_calendar("First calendar", "First class"),
        [
            ("lead[email]", "a@b.co"),
            (f"{A}[cmd]", "calendar_cancel"),
            (f"{A}[calendar_name]", "First calendar"),
            (f"{A}[class_name]", "First class"),
        ],
    ),
    (
        "retrieve_transactions_from_lead",
        lambda k: k.lead("a@b.co").transactions(),
        [("lead[email]", "a@b.co"), (f"{A}[cmd]", "retrieve_transactions_from_lead")],
    ),
    (
        "retrieve_subscriptions_from_lead",
        lambda k: k.lead("a@b.co").subscriptions(),
        [("lead[email]", "a@b.co"), (f"{A}[cmd]", "retrieve_subscriptions_from_lead")],
    ),
    (
        "create_custom_field",
        lambda k: k.account.create_custom_field("Custom_field-1", "drop_down", ["blue", "brown"]),
        [
            (f"{A}[cmd]", "create_custom_field"),
            (f"{A}[custom_field_identifier]", "Custom_field-1"),
            (f"{A}[custom_field_type]", "drop_down"),
            (f"{A}[custom_field_options][0][option_name]", "blue"),
            (f"{A}[custom_field_options][1][option_name]", "brown"),
        ],
    ),
    (
        "search_transaction",
        lambda k: k.transactions.search(1),
        [(f"{A}[cmd]", "search_transaction"), (f"{A}[transaction_id]", "1")],
    ),
    (
        "refund_transaction",
        lambda k: k.transactions.refund(738474, amount=Decimal("19.95")),
        [
            (f"{A}[cmd]", "refund_transaction"),
            (f"{A}[transaction_id]", "738474"),
            (f"{A}[refund_amount]", "19.95"),
        ],
    ),
    (
        "edit_subscription",
        lambda k: k.subscriptions.edit(
            32451,
            product_id=223,
            price_point=2,
            next_payment_date="2099-01-18 05:46",
            amount=Decimal("22.00"),
            recurrence={"recurring_period_1": "monthly", "recurring_period_2": "yearly"},
            quantity=2,
            installments_left=3,
            tax_percent=5,
        ),
        [
            (f"{A}[cmd]", "edit_subscription"),
            (f"{A}[subscription_id]", "32451"),
            (f"{A}[subscription_product_id]", "223"),
            (f"{A}[subscription_price_point]", "2"),
            (f"{A}[subscription_next_payment_date]", "2099-01-18 05:46"),
            (f"{A}[subscription_amount]", "22.00"),
            (f"{A}[subscription_recurrence][recurring_period_1]", "monthly"),
            (f"{A}[subscription_recurrence][recurring_period_2]", "yearly"),
            (f"{A}[subscription_product_quantity]", "2"),
            (f"{A}[subscription_installments_left]", "3"),
            (f"{A}[subscription_tax_percent]", "5"),
        ],
    ),
    (
        "cancel_transaction",
        lambda k: k.transactions.cancel(transaction_id=234161),
        [(f"{A}[cmd]", "cancel_transaction"), (f"{A}[transaction_id]", "234161")],
    ),
    (
        "modify_subscription_status",
        lambda k: k.subscriptions.pause(7373847),
        [
            (f"{A}[cmd]", "modify_subscription_status"),
            (f"{A}[subscription_id]", "7373847"),
            (f"{A}[subscription_status_modification]", "pause"),
        ],
    ),
    (
        "search_subscription",
        lambda k: k.subscriptions.search(94314),
        [
            (f"{A}[cmd]", "search_subscription"),
            (f"{A}[transaction_internal_subscription_id]", "94314"),
        ],
    ),
    (
        "get_subscription_details",
        lambda k: k.subscriptions.get(993037),
        [(f"{A}[cmd]", "get_subscription_details"), (f"{A}[subscription_id]", "993037")],
    ),
    (
        "get_transaction_details",
        lambda k: k.transactions.get(99432),
        [(f"{A}[cmd]", "get_transaction_details"), (f"{A}[transaction_id]", "99432")],
    ),
    (
        "retrieve_account_tags",
        lambda k: k.account.tags(),
        [(f"{A}[cmd]", "retrieve_account_tags")],
    ),
    (
        "retrieve_account_lists",
        lambda k: k.account.lists(),
        [(f"{A}[cmd]", "retrieve_account_lists")],
    ),
    (
        "retrieve_account_sequences",
        lambda k: k.account.sequences(),
        [(f"{A}[cmd]", "retrieve_account_sequences")],
    ),
    (
        "retrieve_account_pages",
        lambda k: k.account.pages(),
        [(f"{A}[cmd]", "retrieve_account_pages")],
    ),
    (
        "retrieve_custom_fields",
        lambda k: k.account.custom_fields(),
        [(f"{A}[cmd]", "retrieve_custom_fields")],
    ),
    (
        "get_lead",
        lambda k: k.get_lead("JoeSmith@domain.com"),
        [("get_lead[email]", "JoeSmith@domain.com")],
    ),
]


def test_every_documented_command_has_a_case() -> None:
    assert sorted(name for name, _, _ in CASES) == sorted(COMMANDS)
    assert len(COMMANDS) == 30  # 29 actions cmds + get_lead


_READS_DATA = {"get_lead", "get_transaction_details", "get_subscription_details"}


@pytest.mark.parametrize(("cmd", "call", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_exact_body(
    kartra: AsyncKartra,
    api: respx.MockRouter,
    cmd: str,
    call: Callable[[AsyncKartra], Awaitable[Any]],
    expected: list[tuple[str, str]],
) -> None:
    route = api.post("").mock(return_value=httpx.Response(200, json={"status": "Success"}))
    if cmd in _READS_DATA:  # a bare Success is no answer to a read of one record
        with pytest.raises(KartraResponseError, match="has no"):
            await call(kartra)
    else:
        await call(kartra)
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fields(request) == expected


@pytest.mark.parametrize("n", [1, 2, 7, 15])
async def test_chain_of_n_actions_is_one_request(
    kartra: AsyncKartra, api: respx.MockRouter, n: int
) -> None:
    chain = kartra.lead("a@b.co")
    for i in range(n):
        chain = chain.assign_tag(f"tag {i}")
    answer = {"status": "Success", "actions": [{"assign_tag": OK} for _ in range(n)]}
    route = api.post("").mock(return_value=httpx.Response(200, json=answer))
    result = await chain
    assert route.call_count == 1
    body = fields(route.calls.last.request)
    assert body[0] == ("lead[email]", "a@b.co")
    assert body[1:] == [
        pair
        for i in range(n)
        for pair in ((f"actions[{i}][cmd]", "assign_tag"), (f"actions[{i}][tag_name]", f"tag {i}"))
    ]
    assert [a.cmd for a in result.actions] == ["assign_tag"] * n
    assert result.ok


async def test_design_example_chain(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    answer = {
        "status": "Success",
        "actions": [
            {"create_lead": {"status": "Success", "lead_details": {"id": "1234"}}},
            {"assign_tag": {"status": "Success", "message": "Tag added to lead", "type": "103"}},
            {"subscribe_lead_to_list": {"status": "Success", "message": "x", "type": 101}},
            {"give_points_to_lead": {"status": "Success", "message": "y", "type": "105"}},
        ],
    }
    route = api.post("").mock(return_value=httpx.Response(200, json=answer))
    result = await (
        kartra.lead("john@example.com")
        .create(first_name="John", custom_fields={"text1": "hi", "checkbox1": [620]})
        .assign_tag("My customer")
        .subscribe_list("Newsletter")
        .give_points(12)
    )
    assert route.call_count == 1
    assert result.ok
    assert result.lead_id == 1234
    assert [(a.cmd, a.code) for a in result.actions] == [
        ("create_lead", None),
        ("assign_tag", 103),
        ("subscribe_lead_to_list", 101),
        ("give_points_to_lead", 105),
    ]
    assert result.actions[0].data == LeadRef(id=1234)


async def test_payload_is_nested_and_chain_is_immutable(kartra: AsyncKartra) -> None:
    base = kartra.lead("a@b.co")
    one = base.assign_tag("A")
    two = one.subscribe_list("L")
    assert base.payload == {"lead": {"email": "a@b.co"}, "actions": []}
    assert one.payload == {
        "lead": {"email": "a@b.co"},
        "actions": [{"cmd": "assign_tag", "tag_name": "A"}],
    }
    assert two.payload["actions"] == [
        {"cmd": "assign_tag", "tag_name": "A"},
        {"cmd": "subscribe_lead_to_list", "list_name": "L"},
    ]
    assert two.cmds == ("assign_tag", "subscribe_lead_to_list")


async def test_a_chain_is_a_reusable_template(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    answer = {"status": "Success", "actions": [{"assign_tag": OK}]}
    route = api.post("").mock(return_value=httpx.Response(200, json=answer))
    chain = kartra.lead("a@b.co").assign_tag("A")
    await chain
    await chain.send()
    assert route.call_count == 2
    assert route.calls[0].request.content == route.calls[1].request.content


async def test_calendar_with_a_date_only_sends_starting_date(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    route = api.post("").mock(return_value=httpx.Response(200, json=OK))
    await kartra.lead("a@b.co").subscribe_calendar("C", "K", date(2099, 3, 5))
    assert fields(route.calls.last.request)[-1] == ("actions[0][starting_date]", "05 Mar 2099")


async def test_naive_datetime_is_taken_as_eastern(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    route = api.post("").mock(return_value=httpx.Response(200, json=OK))
    await kartra.lead("a@b.co").subscribe_calendar("C", "K", datetime(2099, 7, 4, 9, 5))
    assert fields(route.calls.last.request)[-2:] == [
        ("actions[0][starting_date]", "04 Jul 2099"),
        ("actions[0][starting_hour]", "09:05"),
    ]


@pytest.mark.parametrize(
    ("method", "status"), [("pause", "pause"), ("unpause", "unpause"), ("cancel", "cancel")]
)
async def test_subscription_status_methods(
    kartra: AsyncKartra, api: respx.MockRouter, method: str, status: str
) -> None:
    route = api.post("").mock(return_value=httpx.Response(200, json=OK))
    await getattr(kartra.subscriptions, method)(5)
    assert fields(route.calls.last.request)[-1] == (
        "actions[0][subscription_status_modification]",
        status,
    )


async def test_cancel_by_subscription_id_and_edit_with_datetime(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    route = api.post("").mock(return_value=httpx.Response(200, json=OK))
    await kartra.transactions.cancel(subscription_id=14833)
    assert fields(route.calls.last.request) == [
        ("actions[0][cmd]", "cancel_transaction"),
        ("actions[0][transaction_internal_subscription_id]", "14833"),
    ]
    await kartra.subscriptions.edit(
        1,
        next_payment_date=datetime(2099, 1, 18, 10, 46, tzinfo=timezone.utc),
        installments_left="Until Cancelled",
    )
    assert fields(route.calls.last.request)[2:] == [
        ("actions[0][subscription_next_payment_date]", "2099-01-18 05:46"),
        ("actions[0][subscription_installments_left]", "until cancelled"),
    ]


async def test_escape_hatch_sends_actions_as_given(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    answer = {"status": "Success", "actions": [{"brand_new_cmd": {"status": "Success", "x": 1}}]}
    route = api.post("").mock(return_value=httpx.Response(200, json=answer))
    result = await kartra.call([{"cmd": "brand_new_cmd", "flag": True, "n": 2.5}], lead={"id": 9})
    assert fields(route.calls.last.request) == [
        ("lead[id]", "9"),
        ("actions[0][cmd]", "brand_new_cmd"),
        ("actions[0][flag]", "1"),
        ("actions[0][n]", "2.5"),
    ]
    assert result.lead_id == 9
    assert result.actions[0].data == {"x": 1}
