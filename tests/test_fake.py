"""FakeKartra driven through the SDK: every cmd changes the fake's state as the docs
say and answers the documented responses and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from kartra_async import (
    AmbiguousResultError,
    AsyncKartra,
    AuthenticationError,
    CalendarNotFoundError,
    CalendarSubscriptionNotFoundError,
    ClassNotFoundError,
    CustomFieldExistsError,
    InvalidParameterError,
    KartraConnectionError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    LeadDeletedError,
    LeadExistsError,
    LeadNotFoundError,
    ListNotFoundError,
    PaymentStateError,
    ProductNotFoundError,
    RateLimitError,
    SequenceNotFoundError,
    StepNotFoundError,
    SubscriptionNotFoundError,
    TagNotFoundError,
    TransactionNotFoundError,
)
from kartra_async.models import (
    CalendarSubscriptionStatus,
    CancelResult,
    CustomFieldType,
    LeadRef,
    RefundResult,
    SequenceStatus,
    SubscriptionStatus,
    TransactionType,
    UntilCancelled,
)
from kartra_async.testing import RESPONSE_STYLES, FakeKartra, SeedError, demo_seed_path

pytestmark = pytest.mark.anyio

SEED_FILE = Path(__file__).parent / "data" / "fake_seed.json"
NY_NOW = datetime(2099, 6, 1, 12, 0, tzinfo=__import__("zoneinfo").ZoneInfo("America/New_York"))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake() -> FakeKartra:
    fake = FakeKartra(rate_limit=None, now=lambda: NY_NOW)
    fake.seed()
    return fake


@pytest.fixture
async def kartra(fake: FakeKartra) -> AsyncIterator[AsyncKartra]:
    async with fake.client() as client:
        yield client


# ---- leads


async def test_create_lead_with_fields_and_custom_fields(
    fake: FakeKartra, kartra: AsyncKartra
) -> None:
    size = next(iter(fake.account.custom_fields["company_size"].options))
    interests = list(fake.account.custom_fields["interests"].options)
    result = await kartra.lead("new@example.com").create(
        first_name="Nia",
        city="Oslo",
        lead_preferred_time_zone="Europe/London",
        custom_fields={
            "company_size": size,
            "interests": interests[:2],
            "referral_code": "R1",
            "unknown_field": "x",
        },
    )
    assert result.ok
    lead = fake.lead("new@example.com")
    assert lead is not None
    assert result.lead_id == lead.id
    assert result.actions[0].data == LeadRef(lead.id)
    assert lead.fields == {
        "first_name": "Nia",
        "city": "Oslo",
        "lead_preferred_time_zone": "Europe/London",
    }
    assert lead.custom == {
        "company_size": [size],
        "interests": interests[:2],
        "referral_code": "R1",
    }
    typed = await kartra.get_lead("new@example.com")
    assert (typed.id, typed.first_name, typed.city, typed.date_joined) == (
        lead.id,
        "Nia",
        "Oslo",
        NY_NOW,
    )
    assert typed.custom_field("interests").options[1].id == interests[1]  # type: ignore[union-attr]
    assert typed.custom_field("notes").value == ""  # type: ignore[union-attr]  # every field, even empty
    assert len(typed.custom_fields) == 5


async def test_create_existing_lead_is_244_and_nothing_else_runs(
    fake: FakeKartra, kartra: AsyncKartra
) -> None:
    with pytest.raises(LeadExistsError) as caught:
        await kartra.lead("alice@example.com").create().assign_tag("VIP")
    assert (caught.value.code, caught.value.cmd, caught.value.action_index) == (
        244,
        "create_lead",
        0,
    )
    assert "VIP" not in fake.lead("alice@example.com").tags  # type: ignore[union-attr]


async def test_edit_lead_and_new_email(fake: FakeKartra, kartra: AsyncKartra) -> None:
    bob = fake.lead("bob@example.com")
    assert bob is not None
    result = await kartra.lead(id=bob.id).edit(new_email="robert@example.com", last_name="Jonas")
    assert (result.ok, result.lead_id) == (True, bob.id)
    assert fake.lead("bob@example.com") is None
    assert fake.lead("robert@example.com") is bob
    assert bob.fields["last_name"] == "Jonas"
    with pytest.raises(LeadExistsError):
        await kartra.lead("robert@example.com").edit(new_email="alice@example.com")
    with pytest.raises(LeadNotFoundError) as missing:
        await kartra.lead("nobody@example.com").edit(city="X")
    assert missing.value.code == 243


async def test_search_lead(fake: FakeKartra, kartra: AsyncKartra) -> None:
    alice = fake.lead("alice@example.com")
    result = await kartra.lead("ALICE@example.com").search().assign_tag("VIP")
    assert result.lead_id == alice.id  # type: ignore[union-attr]
    assert result.actions[0].message == "Lead found"
    with pytest.raises(LeadNotFoundError):
        await kartra.lead("nobody@example.com").search()


async def test_deleted_lead_is_245(fake: FakeKartra, kartra: AsyncKartra) -> None:
    fake.lead("bob@example.com").deleted = True  # type: ignore[union-attr]
    for call in (
        kartra.lead("bob@example.com").assign_tag("VIP"),
        kartra.lead("bob@example.com").search(),
        kartra.get_lead("bob@example.com"),
    ):
        with pytest.raises(LeadDeletedError):
            await call


async def test_unknown_lead_for_an_action_is_243(kartra: AsyncKartra) -> None:
    with pytest.raises(LeadNotFoundError) as caught:
        await kartra.lead("nobody@example.com").assign_tag("VIP")
    assert caught.value.code == 243
    with pytest.raises(LeadNotFoundError) as get:
        await kartra.get_lead("nobody@example.com")
    assert get.value.code == 234


async def test_test_mode_rewrites_new_emails(fake: FakeKartra, kartra: AsyncKartra) -> None:
    fake.test_mode = True
    await kartra.lead("johnsmith@gmail.com").create()
    assert fake.lead("johnsmith@gmail.com") is None
    assert fake.lead("johnsmith@kartra.com") is not None


async def test_lead_first_rule_on_the_server(fake: FakeKartra, kartra: AsyncKartra) -> None:
    result = await kartra.call(
        [{"cmd": "assign_tag", "tag_name": "VIP"}, {"cmd": "create_lead"}],
        lead={"email": "alice@example.com"},
    )
    assert [(a.ok, a.code) for a in result.actions] == [(True, 103), (False, 206)]
    assert result.actions[1].message == "create_lead must be the first action (key 0)"


# ---- tags, lists, points, sequences, calendars


async def test_tags_and_lists(fake: FakeKartra, kartra: AsyncKartra) -> None:
    alice = fake.lead("alice@example.com")
    result = await (
        kartra.lead("alice@example.com")
        .assign_tag("VIP")
        .assign_tag("VIP")
        .unassign_tag("Customer")
        .unassign_tag("Newsletter")
        .subscribe_list("Newsletter")
        .unsubscribe_list("Customers")
        .unsubscribe_list("Webinar")
        .assign_tag("No such tag")
        .subscribe_list("No such list")
        .unassign_tag("Nope")
        .unsubscribe_list("Nope")
    )
    assert [(a.ok, a.code, a.message) for a in result.actions] == [
        (True, 103, "Tag added to lead"),
        (True, 103, "Tag added to lead"),
        (True, 104, "Tag removed from lead"),
        (True, 104, "Tag removed from lead"),
        (True, 101, "Lead subscribed to list"),
        (True, 101, "Lead unsubscribed from list"),
        (True, 101, "Lead unsubscribed from list"),
        (False, 212, "Tag does not exist"),
        (False, 231, "List does not exist"),
        (False, 214, "Tag does not exist"),
        (False, 209, "List does not exist"),
    ]
    assert [type(e) for e in result.errors] == [
        TagNotFoundError,
        ListNotFoundError,
        TagNotFoundError,
        ListNotFoundError,
    ]
    assert alice.tags == ["VIP"]  # type: ignore[union-attr]
    assert alice.lists == {"Customers": False, "Newsletter": True}  # type: ignore[union-attr]
    lead = await kartra.get_lead("alice@example.com")
    assert lead.tags == ["VIP"]
    assert [(m.name, m.active) for m in lead.lists] == [("Customers", False), ("Newsletter", True)]


async def test_empty_names_from_a_raw_call(kartra: AsyncKartra) -> None:
    """The SDK refuses empty names before sending; Kartra's own codes, via kartra.call."""
    result = await kartra.call(
        [
            {"cmd": "assign_tag", "tag_name": ""},
            {"cmd": "unassign_tag"},
            {"cmd": "subscribe_lead_to_list", "list_name": " "},
            {"cmd": "unsubscribe_lead_from_list"},
            {"cmd": "give_points_to_lead"},
            {"cmd": "give_points_to_lead", "points": "ten"},
            {"cmd": "remove_points_from_lead", "points": ""},
            {"cmd": "remove_points_from_lead", "points": "x"},
            {"cmd": "subscribe_lead_to_sequence_at_step", "step": "1"},
            {"cmd": "subscribe_lead_to_sequence_at_step", "sequence_name": "Welcome"},
            {
                "cmd": "subscribe_lead_to_sequence_at_step",
                "sequence_name": "Welcome",
                "step": "1-2",
            },
            {"cmd": "unsubscribe_lead_from_sequence"},
            {"cmd": "calendar_subscribe", "class_name": "x"},
            {"cmd": "calendar_cancel", "calendar_name": "Coaching"},
            {"cmd": "no_such_cmd"},
        ],
        lead={"email": "alice@example.com"},
    )
    assert [a.code for a in result.actions] == [
        211,
        213,
        207,
        208,
        215,
        227,
        217,
        228,
        226,
        225,
        229,
        226,
        255,
        256,
        254,
    ]
    assert all(not a.ok for a in result.actions)


async def test_points_and_expiry(fake: FakeKartra, kartra: AsyncKartra) -> None:
    await (
        kartra.lead("alice@example.com")
        .give_points(10)
        .give_points(5, expiration_days=3)
        .remove_points(2)
    )
    alice = fake.lead("alice@example.com")
    assert alice.score(NY_NOW) == 13  # type: ignore[union-attr]
    assert alice.score(NY_NOW + timedelta(days=4)) == 8  # type: ignore[union-attr]
    assert (await kartra.get_lead("alice@example.com")).score == 13


async def test_sequences(fake: FakeKartra, kartra: AsyncKartra) -> None:
    result = await (
        kartra.lead("alice@example.com")
        .subscribe_sequence("Welcome", 2)
        .subscribe_sequence("Welcome", "9")
        .subscribe_sequence("Nope", 1)
        .unsubscribe_sequence("Onboarding")
        .unsubscribe_sequence("Nope")
    )
    assert [(a.ok, a.code) for a in result.actions] == [
        (True, 107),
        (False, 230),
        (False, 219),
        (True, 108),
        (False, 220),
    ]
    assert isinstance(result.errors[0], StepNotFoundError)
    assert isinstance(result.errors[1], SequenceNotFoundError)
    await kartra.lead("alice@example.com").unsubscribe_sequence("Welcome")
    lead = await kartra.get_lead("alice@example.com")
    assert [(s.name, s.step, s.status) for s in lead.sequences] == [
        ("Welcome", "2", SequenceStatus.UNSUBSCRIBED)
    ]


async def test_calendars(fake: FakeKartra, kartra: AsyncKartra) -> None:
    starting = NY_NOW + timedelta(days=2, hours=3)
    result = await (
        kartra.lead("alice@example.com")
        .subscribe_calendar("Coaching", "Strategy Call", starting)
        .subscribe_calendar("Nope", "Strategy Call")
        .subscribe_calendar("Coaching", "Nope")
    )
    assert [(a.ok, a.code) for a in result.actions] == [(True, 112), (False, 257), (False, 258)]
    assert [type(e) for e in result.errors] == [CalendarNotFoundError, ClassNotFoundError]
    lead = await kartra.get_lead("alice@example.com")
    (booking,) = lead.calendars
    assert (booking.calendar_name, booking.class_name, booking.status) == (
        "Coaching",
        "Strategy Call",
        CalendarSubscriptionStatus.ACTIVE,
    )
    assert booking.events[0].date == starting
    cancel = (
        await kartra.lead("alice@example.com")
        .cancel_calendar("Coaching", "Strategy Call")
        .cancel_calendar("Coaching", "Strategy Call")
    )
    assert [(a.ok, a.code) for a in cancel.actions] == [(True, 113), (False, 259)]
    assert isinstance(cancel.errors[0], CalendarSubscriptionNotFoundError)
    raw = await kartra.call(
        [
            {
                "cmd": "calendar_subscribe",
                "calendar_name": "Coaching",
                "class_name": "Group Q&A",
                "starting_date": "2026-06-10",
                "starting_hour": "10:00",
            },
            {
                "cmd": "calendar_subscribe",
                "calendar_name": "Coaching",
                "class_name": "Group Q&A",
                "starting_date": "16 Jan 2019",
                "starting_hour": "15:00",
            },
        ],
        lead={"email": "alice@example.com"},
    )
    assert [a.code for a in raw.actions] == [260, 261]


# ---- custom fields


async def test_create_custom_field(fake: FakeKartra, kartra: AsyncKartra) -> None:
    assert await kartra.account.create_custom_field("color", "checkbox", ["red", "blue"]) is None
    definition = fake.account.custom_fields["color"]
    assert (definition.type, list(definition.options.values())) == ("checkbox", ["red", "blue"])
    fields = await kartra.account.custom_fields()
    assert fields[-1].identifier == "color"
    assert fields[-1].type is CustomFieldType.CHECKBOX
    assert [o.value for o in fields[-1].options] == ["red", "blue"]
    with pytest.raises(CustomFieldExistsError):
        await kartra.account.create_custom_field("color", "input_field")
    raw = await kartra.call(
        [
            {
                "cmd": "create_custom_field",
                "custom_field_identifier": "",
                "custom_field_type": "input_field",
            },
            {
                "cmd": "create_custom_field",
                "custom_field_identifier": "bad name",
                "custom_field_type": "input_field",
            },
            {
                "cmd": "create_custom_field",
                "custom_field_identifier": "f1",
                "custom_field_type": "select",
            },
            {
                "cmd": "create_custom_field",
                "custom_field_identifier": "f2",
                "custom_field_type": "drop_down",
                "custom_field_options": "a",
            },
            {
                "cmd": "create_custom_field",
                "custom_field_identifier": "f3",
                "custom_field_type": "drop_down",
                "custom_field_options": [{"option_name": "a"}],
            },
            {
                "cmd": "create_custom_field",
                "custom_field_identifier": "f4",
                "custom_field_type": "radio_button",
                "custom_field_options": [{"option_name": "a"}, {"option_name": ""}],
            },
        ]
    )
    assert [a.code for a in raw.actions] == [265, 263, 269, 270, 273, 272]


async def test_custom_field_format_271(kartra: AsyncKartra) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        await kartra.call(
            [{"cmd": "create_lead"}], lead={"email": "x@example.com", "custom_fields": "nope"}
        )
    assert caught.value.code == 271


# ---- payments


async def _alice_sale(
    fake: FakeKartra, *, days_ago: int = 0, subscription: bool = False, processor: str = "Stripe"
) -> int:
    alice = fake.lead("alice@example.com")
    product = fake.add_product("Ebook", {1: Decimal("40.00")})
    return fake.add_sale(
        alice, product, days_ago=days_ago, subscription=subscription, processor=processor
    ).id  # type: ignore[arg-type]


async def test_transactions(fake: FakeKartra, kartra: AsyncKartra) -> None:
    sale = await _alice_sale(fake)
    assert await kartra.transactions.search(sale) is True
    with pytest.raises(TransactionNotFoundError):
        await kartra.transactions.search(999999)
    details = await kartra.transactions.get(sale)
    assert (details.transaction_id, details.transaction_type, details.transaction_full_amount) == (
        sale,
        TransactionType.SALE,
        Decimal("40.00"),
    )
    assert await kartra.transactions.refund(sale, amount=Decimal("15.00")) == RefundResult(sale)
    assert await kartra.transactions.refund(sale) == RefundResult(sale)  # the remaining 25.00
    with pytest.raises(PaymentStateError) as again:
        await kartra.transactions.refund(sale)
    assert again.value.code == 251
    rows = (await kartra.lead("alice@example.com").transactions()).actions[0].data
    refunds = [r for r in rows if r.transaction_type is not TransactionType.SALE]
    assert [r.transaction_type for r in refunds] == [
        TransactionType.PARTIAL_REFUND,
        TransactionType.REFUND,
    ]
    assert [fake.account.transactions[r.transaction_id].amount for r in refunds] == [
        Decimal("15.00"),
        Decimal("25.00"),
    ]
    refund_details = await kartra.transactions.get(refunds[0].transaction_id)
    assert (type(refund_details).__name__, refund_details.transaction_parent_id) == (
        "RefundTransaction",
        sale,
    )
    with pytest.raises(PaymentStateError) as not_refundable:
        await kartra.transactions.refund(refunds[0].transaction_id)
    assert not_refundable.value.code == 253


async def test_refund_window_and_amount(fake: FakeKartra, kartra: AsyncKartra) -> None:
    old = await _alice_sale(fake, days_ago=45)
    with pytest.raises(PaymentStateError) as late:
        await kartra.transactions.refund(old)
    assert late.value.code == 250
    sale = await _alice_sale(fake)
    with pytest.raises(InvalidParameterError) as too_much:
        await kartra.transactions.refund(sale, amount="40.01")
    assert too_much.value.code == 268
    with pytest.raises(InvalidParameterError) as not_a_number:  # one action: a top-level error
        await kartra.call(
            [{"cmd": "refund_transaction", "transaction_id": sale, "refund_amount": "abc"}]
        )
    assert not_a_number.value.code == 268


async def test_subscriptions(fake: FakeKartra, kartra: AsyncKartra) -> None:
    sale = await _alice_sale(fake, subscription=True)
    sub_id = fake.account.transactions[sale].subscription_id
    assert sub_id is not None
    assert await kartra.subscriptions.search(sub_id) is True
    details = await kartra.subscriptions.get(sub_id)
    assert (
        details.subscription_status,
        details.subscription_installments_left,
        details.subscription_end_date,
    ) == (SubscriptionStatus.ACTIVE, UntilCancelled.UNTIL_CANCELLED, None)
    await kartra.subscriptions.edit(
        sub_id,
        amount="22.00",
        quantity=2,
        installments_left=3,
        tax_percent=5,
        next_payment_date=NY_NOW + timedelta(days=10),
    )
    sub = fake.account.subscriptions[sub_id]
    assert (sub.amount, sub.quantity, sub.installments_left, sub.tax_percent) == (
        Decimal("22.00"),
        2,
        3,
        Decimal(5),
    )
    assert sub.next_payment == (NY_NOW + timedelta(days=10)).replace(second=0)
    await kartra.subscriptions.pause(sub_id)
    assert (await kartra.subscriptions.get(sub_id)).subscription_status is SubscriptionStatus.PAUSED
    await kartra.subscriptions.unpause(sub_id)
    assert sub.status == "Active"
    result = await kartra.transactions.cancel(transaction_id=sale)
    assert result == CancelResult(str(sub_id), sub_id)
    assert sub.status == "Cancelled"
    with pytest.raises(PaymentStateError) as cancelled:
        await kartra.subscriptions.cancel(sub_id)
    assert cancelled.value.code == 252
    with pytest.raises(PaymentStateError) as frozen:
        await kartra.subscriptions.edit(sub_id, quantity=1)
    assert frozen.value.code == 275
    summary = (await kartra.lead("alice@example.com").subscriptions()).actions[0].data
    assert [(s.subscription_id, s.subscription_status) for s in summary][-1] == (
        sub_id,
        SubscriptionStatus.CANCELLED,
    )


async def test_subscription_errors(fake: FakeKartra, kartra: AsyncKartra) -> None:
    paypal = fake.account.transactions[
        await _alice_sale(fake, subscription=True, processor="PayPal")
    ].subscription_id
    with pytest.raises(PaymentStateError) as caught:
        await kartra.subscriptions.pause(paypal)  # type: ignore[arg-type]
    assert caught.value.code == 284
    with pytest.raises(SubscriptionNotFoundError):
        await kartra.subscriptions.get(424242)
    no_sub = await _alice_sale(fake)
    with pytest.raises(PaymentStateError) as not_linked:
        await kartra.transactions.cancel(transaction_id=no_sub)
    assert not_linked.value.code == 249
    stripe = fake.account.transactions[await _alice_sale(fake, subscription=True)].subscription_id
    with pytest.raises(ProductNotFoundError):
        await kartra.subscriptions.edit(stripe, product_id=1, price_point=1)  # type: ignore[arg-type]
    raw = await kartra.call(
        [
            {"cmd": "edit_subscription", "subscription_id": stripe},
            {"cmd": "edit_subscription", "subscription_id": stripe, "subscription_amount": "0.50"},
            {"cmd": "edit_subscription", "subscription_id": stripe, "subscription_amount": "-1"},
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_product_quantity": "0",
            },
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_installments_left": "x",
            },
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_tax_percent": "101",
            },
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_next_payment_date": "tomorrow",
            },
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_next_payment_date": "2020-01-01 10:00",
            },
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_recurrence": {"recurring_period_1": "daily"},
            },
            {
                "cmd": "edit_subscription",
                "subscription_id": stripe,
                "subscription_recurrence": {
                    "recurring_period_1": "monthly",
                    "recurring_period_2": "yearly",
                },
            },
            {
                "cmd": "modify_subscription_status",
                "subscription_id": stripe,
                "subscription_status_modification": "stop",
            },
        ]
    )
    assert [a.code for a in raw.actions] == [285, 277, 268, 276, 278, 290, 260, 261, 280, 281, 274]


# ---- account reads


async def test_account_reads(fake: FakeKartra, kartra: AsyncKartra) -> None:
    assert await kartra.account.tags() == fake.account.tags
    assert await kartra.account.lists() == fake.account.lists
    assert await kartra.account.sequences() == ["Welcome", "Onboarding"]
    assert await kartra.account.pages() == fake.account.pages
    assert [f.identifier for f in await kartra.account.custom_fields()] == list(
        fake.account.custom_fields
    )


# ---- authentication, permissions, several accounts


@pytest.mark.parametrize(
    ("app_id", "key", "password", "code"),
    [
        ("other-app", "fake-key", "fake-password", 239),
        ("fake-app", "wrong-key", "fake-password", 203),
        ("fake-app", "fake-key", "wrong-password", 233),
    ],
)
async def test_authentication(
    fake: FakeKartra, app_id: str, key: str, password: str, code: int
) -> None:
    async with AsyncKartra(
        app_id, key, password, base_url="http://127.0.0.1/api", transport=fake.transport()
    ) as kartra:
        with pytest.raises(AuthenticationError) as caught:
            await kartra.account.tags()
    assert caught.value.code == code


async def test_raw_auth_codes(fake: FakeKartra) -> None:
    async with httpx.AsyncClient(transport=fake.transport(), base_url="http://127.0.0.1") as http:

        async def code(body: str) -> str:
            return str((await http.post("/api", content=body)).json()["type"])

        assert await code("api_key=k&api_password=p") == "238"
        assert await code("app_id=fake-app&api_password=p") == "202"
        fake.account.active = False
        assert (
            await code(
                "app_id=fake-app&api_key=fake-key&api_password=fake-password&actions[0][cmd]=retrieve_account_tags"
            )
            == "204"
        )
        fake.account.active = True
        fake.app.active = False
        assert await code("app_id=fake-app&api_key=fake-key&api_password=fake-password") == "240"
        fake.app.active = True
        base = "app_id=fake-app&api_key=fake-key&api_password=fake-password"
        assert await code(base + "&actions=oops") == "224"
        assert await code(base + "&lead=x&actions[0][cmd]=assign_tag") == "223"
        assert await code(base + "&get_lead=x") == "236"
        assert await code(base + "&actions[0][tag_name]=x") == "254"
        assert await code(base + "&actions[0][cmd]=assign_tag&actions[0][tag_name]=VIP") == "206"
        fake.app.allowed_ips = frozenset({"10.0.0.9"})
        assert await code(base + "&actions[0][cmd]=retrieve_account_tags") == "242"
        fake.app.allowed_ips = None
        fake.app.forbidden_cmds = frozenset({"retrieve_account_tags"})
        assert await code(base + "&actions[0][cmd]=retrieve_account_tags") == "262"
        fake.app.forbidden_cmds = frozenset()
        fake.require_https = True
        assert await code(base + "&actions[0][cmd]=retrieve_account_tags") == "201"


async def test_several_accounts_share_one_app(fake: FakeKartra) -> None:
    other = fake.add_account("key-2", "password-2")
    other.tags = ["Other"]
    async with (
        fake.client(api_key="key-2", api_password="password-2") as second,
        fake.client() as first,
    ):
        assert await second.account.tags() == ["Other"]
        assert "Customer" in await first.account.tags()
        await second.lead("x@example.com").create()
    assert fake.lead("x@example.com") is None
    assert fake.lead("x@example.com", account=other) is not None


# ---- rate limit, latency, faults, reset, log


async def test_rate_limit_any_window() -> None:
    clock = Clock()
    fake = FakeKartra(rate_limit=3, clock=clock)
    async with fake.client(limiter=None) as kartra:  # the fake's own 429s, unthrottled
        for _ in range(3):
            await kartra.account.tags()
        with pytest.raises(RateLimitError):
            await kartra.account.tags()
        clock.t += 0.999
        with pytest.raises(RateLimitError):
            await kartra.account.tags()
        clock.t += 0.002
        await kartra.account.tags()
    assert [r.status for r in fake.requests] == [200, 200, 200, 429, 429, 200]
    assert fake.requests[3].body == b"Too many requests"


async def test_rate_limit_is_per_app_and_can_be_off() -> None:
    fake = FakeKartra(rate_limit=1, clock=Clock())
    fake.add_app("second-app")
    fake.add_account("k2", "p2", app_id="second-app")
    async with (
        fake.client(limiter=None) as first,
        AsyncKartra(
            "second-app",
            "k2",
            "p2",
            base_url="http://127.0.0.1/api",
            transport=fake.transport(),
            limiter=None,
        ) as second,
    ):
        await first.account.tags()
        await second.account.tags()  # another App has its own budget
        with pytest.raises(RateLimitError):
            await first.account.tags()
        fake.rate_limit = None
        for _ in range(10):
            await first.account.tags()


async def test_latency(anyio_backend: str) -> None:
    fake = FakeKartra(rate_limit=None)
    fake.faults.latency = 0.05
    async with fake.client() as kartra:
        import anyio

        start = anyio.current_time()
        await kartra.account.tags()
        assert anyio.current_time() - start >= 0.05
        fake.faults.latency = (0.01, 0.02)
        start = anyio.current_time()
        await kartra.account.tags()
        assert anyio.current_time() - start >= 0.01


@pytest.mark.parametrize(
    ("kind", "error", "applied"),
    [
        ("http_5xx", KartraServerError, False),
        ("drop_before", KartraConnectionError, False),
        ("drop_after", KartraConnectionError, True),
        ("timeout", KartraTimeoutError, True),
        ("not_json", KartraResponseError, False),
        ("truncated", KartraResponseError, True),
    ],
)
async def test_faults_for_the_next_calls(
    fake: FakeKartra, kind: str, error: type[Exception], applied: bool
) -> None:
    fake.faults.inject(kind, times=2)
    async with fake.client() as kartra:
        for i in range(2):
            # points are unsafe to repeat: the SDK reports the failure as ambiguous
            with pytest.raises(AmbiguousResultError) as caught:
                await kartra.lead("alice@example.com").give_points(10)
            assert type(caught.value.cause) is error
            assert fake.requests[-1].applied is applied
            assert fake.requests[-1].fault == (
                kind if kind in ("drop_before", "drop_after", "timeout") else None
            )
            del i
        await kartra.lead("alice@example.com").give_points(1)
    score = fake.lead("alice@example.com").score(NY_NOW)  # type: ignore[union-attr]
    assert score == (21 if applied else 1)
    assert fake.faults.counts == {kind: 2}


async def test_faults_by_share_are_seeded() -> None:
    def run() -> list[bool]:
        fake = FakeKartra(rate_limit=None, seed=7)
        fake.faults.inject("http_5xx", share=0.3, status=503)
        return [fake.handle(b"app_id=fake-app").status == 503 for _ in range(200)]

    first = run()
    assert first == run()
    assert 40 <= sum(first) <= 80


def test_fault_arguments_are_checked() -> None:
    fake = FakeKartra()
    with pytest.raises(ValueError, match="unknown fault"):
        fake.faults.inject("fire", times=1)
    with pytest.raises(ValueError, match="either times= or share="):
        fake.faults.inject("timeout")
    with pytest.raises(ValueError, match="between 0 and 1"):
        fake.faults.inject("timeout", share=2)


async def test_reset_isolates(fake: FakeKartra, kartra: AsyncKartra) -> None:
    fake.faults.inject("timeout", times=5)
    fake.reset()
    assert fake.requests == []
    assert await kartra.account.tags() == []
    assert fake.lead("alice@example.com") is None
    await kartra.lead("a@example.com").create()
    assert [r.cmds for r in fake.requests] == [("retrieve_account_tags",), ("create_lead",)]
    assert fake.requests[1].lead == {"email": "a@example.com"}


async def test_pytest_fixtures(fake_kartra: FakeKartra, kartra_client: AsyncKartra) -> None:
    fake_kartra.seed()
    result = await kartra_client.lead("fixture@example.com").create().assign_tag("VIP")
    assert result.ok
    assert fake_kartra.lead("fixture@example.com").tags == ["VIP"]  # type: ignore[union-attr]


async def test_wrapped_response_style() -> None:
    fake = FakeKartra(rate_limit=None, response_style="wrapped")
    fake.seed()
    async with fake.client() as kartra:
        assert await kartra.account.tags() == fake.account.tags
        reply = fake.requests[-1].body
        assert reply.startswith(b'{"status":"Success","actions":[{"retrieve_account_tags":')


async def test_asgi_app(fake: FakeKartra) -> None:
    transport = httpx.ASGITransport(app=fake.asgi_app())
    async with AsyncKartra(
        "fake-app",
        "fake-key",
        "fake-password",
        base_url="http://127.0.0.1/api",
        transport=transport,
    ) as kartra:
        assert await kartra.account.tags() == fake.account.tags
        result = await kartra.lead("asgi@example.com").create().assign_tag("VIP")
        assert result.ok
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        assert (await http.get("/other")).status_code == 404


# ---- get_lead by id, notes, integer score and blacklisted


async def test_get_lead_by_id_or_email(fake: FakeKartra, kartra: AsyncKartra) -> None:
    alice = fake.lead("alice@example.com")
    assert alice is not None
    alice.notes = "Prefers email"
    alice.blacklisted = True
    by_id = await kartra.get_lead(id=alice.id)
    assert fake.requests[-1].form["get_lead"] == {"id": str(alice.id)}
    by_email = await kartra.get_lead("alice@example.com")
    assert fake.requests[-1].form["get_lead"] == {"email": "alice@example.com"}
    assert by_id == by_email
    assert (by_id.id, by_id.email, by_id.notes, by_id.blacklisted, by_id.tags) == (
        alice.id,
        "alice@example.com",
        "Prefers email",
        True,
        ["Customer"],
    )
    assert [(m.name, m.level_name, m.active) for m in by_id.memberships] == [
        ("Members Area", "Gold", True)
    ]
    with pytest.raises(LeadNotFoundError) as caught:
        await kartra.get_lead(id=999_999)
    assert (caught.value.code, caught.value.cmd) == (234, "get_lead")


async def test_get_lead_raw_answer(fake: FakeKartra) -> None:
    base = "app_id=fake-app&api_key=fake-key&api_password=fake-password"
    alice = fake.lead("alice@example.com")
    assert alice is not None
    await_points = fake.handle(
        f"{base}&lead[id]={alice.id}&actions[0][cmd]=give_points_to_lead&actions[0][points]=5".encode()
    )
    assert await_points.status == 200
    details = json.loads(fake.handle(f"{base}&get_lead%5Bid%5D={alice.id}".encode()).body)[
        "lead_details"
    ]
    # the docs' table: score and blacklisted are integers; notes is a string; ids strings
    assert (details["id"], details["score"], details["blacklisted"], details["notes"]) == (
        str(alice.id),
        5,
        0,
        "",
    )
    keys = list(details)
    assert keys.index("lead_preferred_time_zone") + 1 == keys.index("notes")
    # id first, as Kartra looks a lead up by id first
    bob = json.loads(
        fake.handle(f"{base}&get_lead[id]={alice.id}&get_lead[email]=bob@example.com".encode()).body
    )
    assert bob["lead_details"]["email"] == "alice@example.com"
    for query, code in (
        ("get_lead[id]=", "206"),
        ("get_lead[id]=abc", "234"),
        ("get_lead[x]=1", "206"),
    ):
        answer = json.loads(fake.handle(f"{base}&{query}".encode()).body)
        assert (answer["status"], answer["type"]) == ("Error", code), query


# ---- option fields: ids or labels; what names no option is ignored (inferred rule)


async def test_option_fields_take_ids_or_labels(fake: FakeKartra, kartra: AsyncKartra) -> None:
    def ids(identifier: str) -> dict[str, int]:
        return {label: i for i, label in fake.account.custom_fields[identifier].options.items()}

    size, interests, fmt = ids("company_size"), ids("interests"), ids("newsletter_format")
    result = await kartra.call(
        [{"cmd": "create_lead"}],
        lead={
            "email": "options@example.com",
            "custom_fields": [
                {"field_identifier": "company_size", "field_value": "11-50"},
                {
                    "field_identifier": "interests",
                    "field_value": ["sales", str(interests["Marketing"]), "Nope", "999999"],
                },
                {"field_identifier": "newsletter_format", "field_value": "Carrier pigeon"},
            ],
        },
    )
    assert result.ok  # a label never aborts the call
    lead = fake.lead("options@example.com")
    assert lead is not None
    assert lead.custom == {
        "company_size": [size["11-50"]],
        "interests": [interests["Sales"], interests["Marketing"]],
    }
    # a value naming no option (unknown id or label) leaves the field as it was
    for value in ("999999", "Huge", ["x", "0"]):
        await kartra.call(
            [{"cmd": "edit_lead"}],
            lead={
                "email": "options@example.com",
                "custom_fields": [{"field_identifier": "company_size", "field_value": value}],
            },
        )
        assert lead.custom["company_size"] == [size["11-50"]], value
    # one option only for drop_down and radio_button
    await kartra.call(
        [{"cmd": "edit_lead"}],
        lead={
            "email": "options@example.com",
            "custom_fields": [
                {"field_identifier": "newsletter_format", "field_value": ["Text", "HTML"]},
                {"field_identifier": "company_size", "field_value": str(size["200+"])},
            ],
        },
    )
    assert (lead.custom["newsletter_format"], lead.custom["company_size"]) == (
        [fmt["Text"]],
        [size["200+"]],
    )
    typed = await kartra.get_lead("options@example.com")
    assert typed.custom_field("company_size").text == "200+"  # type: ignore[union-attr]


def test_numbers_beyond_64_bits_are_a_400(fake: FakeKartra) -> None:
    base = (
        b"app_id=fake-app&api_key=fake-key&api_password=fake-password&lead[email]=alice@example.com"
    )
    reply = fake.handle(
        base + b"&actions[0][cmd]=give_points_to_lead&actions[0][points]=" + b"9" * 5000
    )
    assert (reply.status, reply.body) == (400, b"Bad Request: a number of 5000 digits (at most 19)")
    assert (fake.requests[-1].status, fake.requests[-1].applied) == (400, False)
    reply = fake.handle(
        base + b"&actions[0][cmd]=give_points_to_lead&actions[0][points]=" + b"1" * 19
    )
    assert json.loads(reply.body)["type"] == "105"
    days = b"&actions[0][expiration]=" + b"9" * 18
    reply = fake.handle(base + b"&actions[0][cmd]=give_points_to_lead&actions[0][points]=1" + days)
    assert json.loads(reply.body)["type"] == "105"  # beyond year 9999: never expires


# ---- answer shapes


def _raw(fake: FakeKartra, tail: str) -> Any:
    base = "app_id=fake-app&api_key=fake-key&api_password=fake-password"
    return json.loads(fake.handle(f"{base}&{tail}".encode()).body)


TAG_OK = {"status": "Success", "message": "Tag added to lead", "type": "103"}
TAG_MISSING = {"status": "Error", "message": "Tag does not exist", "type": "212"}
FOUND = {"Status": "Found"}
ALICE = "lead[email]=alice@example.com"


@pytest.mark.parametrize(
    ("style", "single", "failing", "account"),
    [
        (
            "mirrored",
            {**TAG_OK, "lead": FOUND, "actions": [{"assign_tag": TAG_OK}]},
            {**TAG_MISSING, "lead": FOUND, "actions": [{"assign_tag": TAG_MISSING}]},
            {
                "status": "Success",
                "account_lists": ["Newsletter", "Customers", "Webinar", "Product Updates"],
            },
        ),
        (
            "documented",
            TAG_OK,
            TAG_MISSING,
            {
                "status": "Success",
                "account_lists": ["Newsletter", "Customers", "Webinar", "Product Updates"],
            },
        ),
        (
            "wrapped",
            {"status": "Success", "lead": FOUND, "actions": [{"assign_tag": TAG_OK}]},
            {"status": "Success", "lead": FOUND, "actions": [{"assign_tag": TAG_MISSING}]},
            {
                "status": "Success",
                "actions": [
                    {
                        "retrieve_account_lists": {
                            "status": "Success",
                            "account_lists": [
                                "Newsletter",
                                "Customers",
                                "Webinar",
                                "Product Updates",
                            ],
                        }
                    }
                ],
            },
        ),
    ],
)
def test_answer_shapes(
    style: str, single: dict[str, Any], failing: dict[str, Any], account: dict[str, Any]
) -> None:
    fake = FakeKartra(rate_limit=None, response_style=style)
    fake.seed()
    assert _raw(fake, f"{ALICE}&actions[0][cmd]=assign_tag&actions[0][tag_name]=VIP") == single
    assert _raw(fake, f"{ALICE}&actions[0][cmd]=assign_tag&actions[0][tag_name]=Nope") == failing
    assert _raw(fake, "actions[0][cmd]=retrieve_account_lists") == account
    two = _raw(
        fake,
        f"{ALICE}&actions[0][cmd]=assign_tag&actions[0][tag_name]=VIP"
        "&actions[1][cmd]=assign_tag&actions[1][tag_name]=Nope",
    )
    assert two == {
        "status": "Success",
        "lead": FOUND,
        "actions": [{"assign_tag": TAG_OK}, {"assign_tag": TAG_MISSING}],
    }


def test_mirrored_keeps_what_the_docs_print_at_the_top() -> None:
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    alice = fake.lead("alice@example.com")
    assert alice is not None
    search = _raw(fake, f"{ALICE}&actions[0][cmd]=search_lead")
    details = {"id": str(alice.id)}
    assert search == {
        "status": "Success",
        "message": "Lead found",
        "lead_details": details,
        "lead": FOUND,
        "actions": [
            {"search_lead": {"status": "Success", "message": "Lead found", "lead_details": details}}
        ],
    }
    listed = _raw(fake, f"{ALICE}&actions[0][cmd]=retrieve_subscriptions_from_lead")
    rows = listed["retrieve_subscriptions_from_lead"]["subscriptions_list"]
    assert listed == {
        "status": "Success",
        "retrieve_subscriptions_from_lead": {"subscriptions_list": rows},
        "lead": FOUND,
        "actions": [
            {"retrieve_subscriptions_from_lead": {"status": "Success", "subscriptions_list": rows}}
        ],
    }
    created = _raw(fake, "lead[email]=new@example.com&actions[0][cmd]=create_lead")
    new = fake.lead("new@example.com")
    assert new is not None
    assert created == {
        "status": "Success",
        "lead": {"Status": "Created"},
        "actions": [{"create_lead": {"status": "Success", "lead_details": {"id": str(new.id)}}}],
    }


def test_response_style_is_checked() -> None:
    with pytest.raises(ValueError, match="response_style is one of mirrored, documented, wrapped"):
        FakeKartra(response_style="flat")


@pytest.mark.parametrize("kartra_response_style", RESPONSE_STYLES)
async def test_the_sdk_reads_every_style_alike(
    fake_kartra: FakeKartra, kartra_client: AsyncKartra, kartra_response_style: str
) -> None:
    assert fake_kartra.response_style == kartra_response_style
    fake_kartra.seed()
    kartra = kartra_client
    created = await kartra.lead("styles@example.com").create(first_name="Sty")
    lead = fake_kartra.lead("styles@example.com")
    assert lead is not None
    assert (created.ok, created.lead_id) == (True, lead.id)
    tagged = await kartra.lead(id=lead.id).assign_tag("VIP")
    assert [(a.cmd, a.ok, a.code) for a in tagged.actions] == [("assign_tag", True, 103)]
    with pytest.raises(TagNotFoundError):
        await kartra.lead(id=lead.id).assign_tag("Nope")
    mixed = await kartra.lead(id=lead.id).subscribe_list("Newsletter").assign_tag("Nope")
    assert [(a.ok, a.code) for a in mixed.actions] == [(True, 101), (False, 212)]
    booked = await kartra.lead(id=lead.id).subscribe_calendar("Coaching", "Strategy Call")
    assert booked.actions[0].code == 112
    assert (await kartra.lead(id=lead.id).search()).lead_id == lead.id
    assert await kartra.account.lists() == ["Newsletter", "Customers", "Webinar", "Product Updates"]
    fields = await kartra.account.custom_fields()
    assert [f.identifier for f in fields][:2] == ["company_size", "interests"]
    typed = await kartra.get_lead(id=lead.id)
    assert (typed.first_name, typed.tags) == ("Sty", ["VIP"])
    alice = fake_kartra.lead("alice@example.com")
    assert alice is not None
    sale = next(t for t in fake_kartra.account.transactions.values() if t.lead_id == alice.id)
    assert await kartra.transactions.refund(sale.id, amount=Decimal("10.00")) == RefundResult(
        transaction_refunded=sale.id
    )


# ---- several App ids


async def test_more_app_ids_share_the_accounts() -> None:
    clock = Clock()
    fake = FakeKartra("A", "K", "P", rate_limit=2, clock=clock, app_ids=["B"])
    fake.seed()
    assert fake.app_ids == ("A", "B")

    def call(app_id: str) -> tuple[int, Any]:
        reply = fake.handle(
            f"app_id={app_id}&api_key=K&api_password=P&actions[0][cmd]=retrieve_account_tags".encode()
        )
        return reply.status, json.loads(reply.body) if reply.status == 200 else reply.body

    tags = {"status": "Success", "account_tags": fake.account.tags}
    assert call("A") == call("B") == (200, tags)
    assert call("C") == (
        200,
        {
            "status": "Error",
            "message": "App Id is not valid. The app does not exists or is inactive",
            "type": "239",
        },
    )
    assert call("A") == (200, tags)
    assert call("A") == (429, b"Too many requests")  # each App id has its own budget
    assert call("B") == (200, tags)
    fake.any_app_id = True
    assert call("C") == (200, tags)  # C's second call this second
    assert call("C") == (429, b"Too many requests")
    assert fake.app_ids == ("A", "B")  # any App id is accepted, not remembered
    clock.t += 1
    async with AsyncKartra(
        "B", "K", "P", base_url="http://127.0.0.1/api", transport=fake.transport(), limiter=None
    ) as kartra:
        await kartra.lead("shared@example.com").create()
    assert fake.lead("shared@example.com") is not None  # B wrote to the one account


# ---- seeds


def test_demo_seed_file_is_the_demo() -> None:
    demo = FakeKartra(now=lambda: NY_NOW)
    demo.seed()
    from_file = FakeKartra(now=lambda: NY_NOW)
    from_file.load_seed(json.loads(demo_seed_path().read_text(encoding="utf-8")))
    assert demo.state() == from_file.state()
    state = demo.state()
    assert state["memberships"] == {"Members Area": ["Free", "Gold"]}
    assert [lead["email"] for lead in state["leads"]] == ["alice@example.com", "bob@example.com"]
    assert [t["product_id"] for t in state["transactions"]] == [
        state["products"][0]["id"],
        state["products"][1]["id"],
        state["products"][1]["id"],
    ]


def test_seed_round_trip() -> None:
    seed = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    fake = FakeKartra(now=lambda: NY_NOW)
    fake.load_seed(seed)
    expected = {
        **seed,
        "accounts": [
            {k: v for k, v in account.items() if k != "api_password"}
            for account in seed["accounts"]
        ],
    }
    assert fake.state() == expected
    again = FakeKartra(now=lambda: NY_NOW)
    again.load_seed(fake.state() | {"accounts": seed["accounts"]})
    assert again.state() == expected
    assert json.loads(json.dumps(fake.state())) == fake.state()  # JSON-ready


async def test_seeded_lead_through_the_sdk() -> None:
    fake = FakeKartra(rate_limit=None, now=lambda: NY_NOW)
    fake.load_seed(json.loads(SEED_FILE.read_text(encoding="utf-8")))
    async with AsyncKartra(
        "WPFusion", "fake-key", "fake-password", base_url="http://127.0.0.1/api",
        transport=fake.transport(), limiter=None,
    ) as kartra:  # fmt: skip
        lead = await kartra.get_lead(id=1027)
        other = await kartra.account.tags()
    assert other == ["Member", "VIP"]
    assert (lead.email, lead.first_name, lead.city, lead.notes, lead.score, lead.tags) == (
        "wp@example.com",
        "Wanda",
        "Oslo",
        "Met at the webinar",
        17,
        ["Member"],
    )
    assert [(m.name, m.level_name, m.active) for m in lead.memberships] == [
        ("Gold Club", "Premium", True)
    ]
    assert [(c.calendar_name, c.class_name, c.calendar_id, c.class_id) for c in lead.calendars] == [
        ("Coaching", "Strategy Call", 7, 8)
    ]
    assert lead.custom_field("colors").text == "red, blue"  # type: ignore[union-attr]
    assert lead.custom_field("bio").value == "Likes APIs"  # type: ignore[union-attr]
    assert [(t.id, t.amount) for t in lead.transactions] == [(60, Decimal("99.00"))]
    assert [(s.name, s.step) for s in lead.sequences] == [("Welcome", "2")]


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ([], "must be a JSON object (got a list)"),
        (
            {"tag": ["x"]},
            "unknown key 'tag' (known: accounts, app_ids, calendars, "
            "custom_fields, leads, lists, memberships, next_id, pages, products, sales, sequences, "
            "subscriptions, tags, transactions)",
        ),
        ({"tags": ["ok", ""]}, "tags[1]: must be a non-empty string"),
        (
            {"leads": [{"email": "z@example.com", "tags": ["Nope"]}]},
            "leads[0].tags[0]: tag 'Nope' is not one of the account's tags",
        ),
        ({"leads": [{"first_name": "No email"}]}, "leads[0]: a lead needs an email"),
        (
            {"leads": [{"email": "alice@example.com"}]},
            "leads[0].email: a lead with email 'alice@example.com' already exists",
        ),
        (
            {
                "leads": [
                    {
                        "email": "m@example.com",
                        "memberships": [{"name": "Members Area", "level_name": "Platinum"}],
                    }
                ]
            },
            "leads[0].memberships[0].level_name: 'Platinum' is not a level of 'Members Area'",
        ),
        (
            {
                "leads": [
                    {"email": "c@example.com", "custom_fields": {"company_size": ["1-10", "11-50"]}}
                ]
            },
            "leads[0].custom_fields.company_size: a drop_down field holds one option",
        ),
        (
            {"leads": [{"email": "c@example.com", "custom_fields": {"company_size": "Huge"}}]},
            "leads[0].custom_fields.company_size[0]: 'Huge' is not an option of 'company_size'",
        ),
        (
            {"custom_fields": {"notes": {"type": "checkbox"}}},
            "custom_fields.notes.type: the field exists as text_area, not checkbox",
        ),
        (
            {"sales": [{"lead": "alice@example.com", "product": "Nope"}]},
            "sales[0]: names no product of the account (product_id or product)",
        ),
        (
            {"sequences": {"Welcome": ["1-2"]}},
            "sequences.Welcome[0]: a step is alphanumeric (got '1-2')",
        ),
        (
            {"accounts": [{"api_key": "new"}]},
            "accounts[0]: a new account ('new') needs its api_password",
        ),
        (
            {"tags": ["Fine"], "leads": [{"email": "late@example.com", "lists": {"Nope": True}}]},
            "leads[0].lists.Nope: not one of the account's lists",
        ),
    ],
)
def test_seed_errors_name_the_place_and_change_nothing(seed: Any, message: str) -> None:
    fake = FakeKartra(now=lambda: NY_NOW)
    fake.seed()
    before = fake.state()
    with pytest.raises(SeedError) as caught:
        fake.load_seed(seed)
    assert str(caught.value) == message
    assert fake.state() == before


def test_seeding_adds() -> None:
    fake = FakeKartra(now=lambda: NY_NOW)
    fake.seed()
    fake.load_seed(
        {
            "tags": ["VIP", "Brand new"],
            "sequences": {"Welcome": ["5"]},
            "calendars": {"Coaching": {"classes": ["Office Hours"]}},
            "leads": [{"email": "added@example.com", "tags": ["Brand new"], "points": 3}],
        }
    )
    account = fake.account
    assert account.tags == [
        "Customer",
        "VIP",
        "Lead Magnet",
        "Webinar Attendee",
        "Newsletter",
        "Brand new",
    ]
    assert account.sequences["Welcome"] == {"1", "2", "3", "4", "5"}
    assert list(account.calendars["Coaching"].classes) == [
        "Strategy Call",
        "Group Q&A",
        "Office Hours",
    ]
    added = fake.lead("added@example.com")
    assert added is not None
    assert (added.tags, added.score(NY_NOW)) == (["Brand new"], 3)
    assert fake.lead("alice@example.com") is not None


# ---- the ASGI app's control API (in process)


async def test_control_api_in_process(fake: FakeKartra) -> None:
    app = fake.asgi_app()
    baseline = fake.state()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        assert (await http.get("/_fake/")).json() == {
            "endpoints": [
                "/_fake/faults",
                "/_fake/requests",
                "/_fake/reset",
                "/_fake/seed",
                "/_fake/state",
            ]
        }
        assert (await http.get("/_fake/state")).json() == baseline
        added = await http.post(
            "/_fake/seed", json={"tags": ["From PHP"], "leads": [{"email": "php@example.com"}]}
        )
        assert (added.status_code, added.json()) == (200, {"ok": True})
        assert "From PHP" in fake.account.tags
        assert fake.lead("php@example.com") is not None
        bad = await http.post("/_fake/seed", json={"tags": [1]})
        assert (bad.status_code, bad.json()) == (
            400,
            {"error": "tags[0]: must be a non-empty string"},
        )
        not_json = await http.post("/_fake/seed", content=b"{nope")
        assert not_json.status_code == 400
        assert not_json.json()["error"].startswith("the body is not valid JSON")
        faults = await http.post(
            "/_fake/faults",
            json={"inject": [{"kind": "http_5xx", "times": 1, "status": 503}], "latency": [0, 0]},
        )
        assert faults.json() == {
            "rules": [{"kind": "http_5xx", "times": 1, "status": 503}],
            "latency": [0.0, 0.0],
            "counts": {},
        }
        body = "app_id=fake-app&api_key=fake-key&api_password=fake-password&actions[0][cmd]=retrieve_account_tags"
        assert (await http.post("/api", content=body)).status_code == 503
        assert (await http.get("/_fake/faults")).json() == {
            "rules": [],
            "latency": [0.0, 0.0],
            "counts": {"http_5xx": 1},
        }
        refused = await http.post("/_fake/faults", json={"inject": [{"kind": "fire", "times": 1}]})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("unknown fault 'fire'; one of refuse, http_5xx")
        assert (await http.post("/_fake/faults", json={"clear": True})).json() == {
            "rules": [],
            "latency": None,
            "counts": {},
        }
        assert (await http.post("/api", content=body)).json()["status"] == "Success"
        log = (await http.get("/_fake/requests")).json()
        assert [entry["cmds"] for entry in log] == [["retrieve_account_tags"]] * 2
        assert log[-1]["form"] == {"actions": {"0": {"cmd": "retrieve_account_tags"}}}
        assert "fake-password" not in json.dumps(log)
        reset = await http.post("/_fake/reset")
        assert (reset.status_code, reset.json()) == (200, {"ok": True})
        assert (await http.get("/_fake/state")).json() == baseline
        assert (await http.get("/_fake/requests")).json() == []
        await http.post("/_fake/reset", json={"empty": True})
        assert fake.account.tags == []
        missing = await http.get("/_fake/nope")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "no such control endpoint: /_fake/nope"},
        )
        wrong = await http.get("/_fake/seed")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
        assert (await http.get("/api")).status_code == 405


PLUGIN = ("-p", "kartra_async.testing.pytest_plugin")  # only this plugin: a quick start


def test_pytest_option_and_ini_pick_the_style(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        "import os\n"
        "def test_style(fake_kartra, kartra_response_style):\n"
        "    assert fake_kartra.response_style == kartra_response_style == os.environ['WANT']\n",
        encoding="utf-8",
    )

    def inner(*args: str, want: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGIN, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WANT": want, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )

    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    assert inner(want="mirrored").returncode == 0
    assert inner("--kartra-response-style", "wrapped", want="wrapped").returncode == 0
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nkartra_response_style = documented\n", encoding="utf-8"
    )
    assert inner(want="documented").returncode == 0
    assert inner("--kartra-response-style", "wrapped", want="wrapped").returncode == 0
    assert inner(want="wrapped").returncode == 1  # the check above can fail
