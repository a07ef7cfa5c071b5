"""Every JSON sample in the docs structures into the models with exact values; each
normalisation hook on its own; payload variants from hypothesis; clear failures."""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from kartra_async import AsyncKartra, KartraDecodeError, KartraResponseError
from kartra_async._convert import (
    converter,
    structure,
    structure_bool,
    structure_datetime,
    structure_decimal,
    structure_installments,
    structure_int,
    structure_str,
)
from kartra_async.models import (
    CalendarEvent,
    CalendarHost,
    CalendarSubscription,
    CalendarSubscriptionStatus,
    CancelResult,
    CustomField,
    CustomFieldType,
    CustomFieldValue,
    FieldOption,
    GdprStatus,
    Lead,
    LeadRef,
    LeadSource,
    LeadTransaction,
    ListMembership,
    Membership,
    PaymentProcessor,
    QuestionResult,
    RefundResult,
    RefundTransaction,
    SaleTransaction,
    SequenceMembership,
    SequenceStatus,
    SubscriptionDetails,
    SubscriptionStatus,
    SubscriptionSummary,
    SurveyQuestion,
    SurveyResult,
    SurveyType,
    Transaction,
    TransactionDetails,
    TransactionSummary,
    TransactionType,
    UntilCancelled,
)
from kartra_async.models._base import member_of, parse_int

from .docs_samples import sample

pytestmark = pytest.mark.anyio

NY = ZoneInfo("America/New_York")


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=NY)  # type: ignore[misc]


GET_LEAD = sample("Here’s an example of success message when retrieving a lead’s data:")
SUBSCRIPTION = sample("Example of the returned JSON array:", 1)
TRANSACTION = sample("Example of the returned JSON array:", 2)
TRANSACTIONS_FROM_LEAD = sample("Example of the returned JSON array:", 3)
SUBSCRIPTIONS_FROM_LEAD = sample("Example of the returned JSON array:", 4)
CUSTOM_FIELDS = sample("Example of the returned array:", opener="[")
WEBHOOK = sample("Here’s an example of a JSON object sent when a lead is subscribed to a list:")

EXPECTED_LEAD = Lead(
    id=1234,
    first_name="test",
    middle_name="test",
    last_name="test",
    last_name2="test",
    company="test",
    sales_tax_id="test",
    email="test@test.co",
    username="test123",
    date_joined=et(2019, 3, 26, 6, 35, 31),
    phone_country_code="+40",
    phone="123456",
    ip="1.1.1.1",
    address="test",
    zip="test",
    city="test",
    state="CA",
    country="US",
    lead_picture="https://s3.amazonaws.com/kartra/internal/default_user.png",
    score=0,
    source=LeadSource.CHECKOUT,
    source_id=1234,
    ip_country="United States",
    website="https://google.com",
    facebook="test",
    twitter="test",
    linkedin="test",
    lead_preferred_time_zone="America/New_York",
    referring_id=1234,
    blacklisted=False,
    gdpr_lead_status=GdprStatus.ACCEPTED,
    gdpr_lead_status_date=et(2019, 3, 26, 6, 35, 31),
    gdpr_lead_communications=True,
    gdpr_lead_status_ip="1.1.1.1",
    tags=["test"],
    lists=[ListMembership(name="test", active=True)],
    sequences=[SequenceMembership(name="test", step="2", status=SequenceStatus.ACTIVE)],
    transactions=[
        LeadTransaction(
            id=1234,
            product_name="test product",
            price_point=1,
            type=TransactionType.SALE,
            amount=Decimal("300.00"),
            date=et(2019, 3, 26, 6, 35, 33),
        )
    ],
    memberships=[Membership(name="test", level_name="standard", active=True)],
    custom_fields=[
        CustomFieldValue(
            id=323,
            identifier="color",
            type=CustomFieldType.CHECKBOX,
            value=[FieldOption(id=1, value="red"), FieldOption(id=2, value="blue")],
        ),
        CustomFieldValue(
            id=324,
            identifier="gender",
            type=CustomFieldType.DROP_DOWN,
            value=[FieldOption(id=1, value="male")],
        ),
        CustomFieldValue(
            id=325,
            identifier="favorite_dish",
            type=CustomFieldType.INPUT_FIELD,
            value="beef lasagna",
        ),
    ],
    calendars=[
        CalendarSubscription(
            calendar_id=123,
            calendar_name="first calendar",
            class_id=22,
            class_name="first class",
            subscription_id=1885,
            status=CalendarSubscriptionStatus.CANCELLED,
            vendor_id=321,
            vendor_timezone="America/New_York",
            hosts=[
                CalendarHost(first_name="host", last_name="host", email="hostemail@gmail.com"),
                CalendarHost(
                    first_name="co-host", last_name="co-host", email="cohostemail@gmail.com"
                ),
            ],
            events=[
                CalendarEvent(date=et(2020, 12, 9, 9, 0), duration=60),
                CalendarEvent(date=et(2020, 12, 10, 9, 0), duration=40),
            ],
            ics_calendar_link=None,
        ),
        CalendarSubscription(
            calendar_id=33,
            calendar_name="second calendar",
            class_id=11,
            class_name="second class",
            subscription_id=245,
            status=CalendarSubscriptionStatus.ACTIVE,
            vendor_id=321,
            vendor_timezone="America/Detroit",
            hosts=[
                CalendarHost(first_name="host", last_name="host", email="hostemail@gmail.com"),
                CalendarHost(
                    first_name="co-host", last_name="co-host", email="cohostemail@gmail.com"
                ),
            ],
            events=[
                CalendarEvent(date=et(2020, 12, 14, 9, 0), duration=60),
                CalendarEvent(date=et(2020, 12, 19, 9, 0), duration=40),
            ],
            ics_calendar_link="https://app.kartra.com/calendar/ics/",
        ),
    ],
    surveys=[
        SurveyResult(
            id=123,
            name="My Survey",
            type=SurveyType.SURVEY,
            score=None,
            completion_time=65,
            completion_date=et(2021, 7, 1, 6, 35, 33),
            questions=[
                SurveyQuestion(
                    id=146,
                    title="Age",
                    correct=QuestionResult.NOT_SCORED,
                    answers=[FieldOption(id=105, value="Between 18 and 30")],
                ),
                SurveyQuestion(
                    id=147,
                    title="What pets do you like",
                    correct=QuestionResult.NOT_SCORED,
                    answers=[FieldOption(id=109, value="Cats"), FieldOption(id=110, value="Dogs")],
                ),
            ],
        ),
        SurveyResult(
            id=127,
            name="My Quiz",
            type=SurveyType.QUIZ,
            score=50,
            completion_time=75,
            completion_date=et(2021, 7, 2, 6, 35, 33),
            questions=[
                SurveyQuestion(
                    id=150,
                    title="5+5",
                    correct=QuestionResult.CORRECT,
                    answers=[FieldOption(id=125, value="10")],
                ),
                SurveyQuestion(
                    id=151,
                    title="Question",
                    correct=QuestionResult.INCORRECT,
                    answers=[FieldOption(id=131, value="Cats"), FieldOption(id=132, value="Dogs")],
                ),
            ],
        ),
    ],
)


def reply(api: respx.MockRouter, body: Any) -> None:
    api.post("").mock(return_value=httpx.Response(200, json=body))


# ---- the docs' samples, through the client


async def test_get_lead_sample(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, GET_LEAD)
    lead = await kartra.get_lead("test@test.co")
    assert lead == EXPECTED_LEAD
    assert lead.raw == GET_LEAD["lead_details"]
    assert lead.custom_field("favorite_dish") == EXPECTED_LEAD.custom_fields[2]
    assert lead.custom_field("missing") is None
    assert lead.custom_field("color").options == [FieldOption(1, "red"), FieldOption(2, "blue")]  # type: ignore[union-attr]
    assert lead.custom_field("color").text == "red, blue"  # type: ignore[union-attr]
    assert lead.custom_field("favorite_dish").options == []  # type: ignore[union-attr]
    assert lead.date_joined is not None
    assert lead.date_joined.utcoffset().total_seconds() == -4 * 3600


async def test_lead_details_samples(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, sample("Success message:", 1))  # create_lead
    result = await kartra.lead("John@kartra.com").create()
    assert (result.actions[0].data, result.lead_id) == (LeadRef(id=1234), 1234)
    reply(api, sample("Success message:", 2))  # edit_lead
    result = await kartra.lead("john@kartra.com").edit(new_email="john@email.com")
    assert (result.actions[0].data, result.lead_id) == (LeadRef(id=1234), 1234)
    reply(api, sample("Success message:", 3))  # search_lead
    result = await kartra.lead("test@kartra.com").search()
    assert (result.actions[0].data, result.lead_id) == (LeadRef(id=39260), 39260)


async def test_subscription_details_sample(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, SUBSCRIPTION)
    details = await kartra.subscriptions.get(993037)
    assert details == SubscriptionDetails(
        subscription_id=993037,
        subscription_product_id=213,
        subscription_price_point=2,
        subscription_lead_id=321,
        subscription_start_date=et(2021, 1, 7, 11, 14, 0),
        subscription_end_date=None,
        subscription_current_installment=1,
        subscription_installments_left=UntilCancelled.UNTIL_CANCELLED,
        subscription_recurring_period="monthly",
        subscription_status=SubscriptionStatus.ACTIVE,
        subscription_next_payment_date=et(2021, 2, 7, 11, 14, 0),
        subscription_next_scheduled_payment_amount=Decimal("22.19"),
        subscription_affiliate="affiliate_username",
        subscription_jv=None,
    )


async def test_transaction_details_sample(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, TRANSACTION)
    details = await kartra.transactions.get(99432)
    assert type(details) is SaleTransaction
    assert details == SaleTransaction(
        transaction_id=99432,
        lead_first_name="Joe",
        lead_last_name="Smith",
        lead_email="joe.smith@domain.com",
        lead_id=4174086,
        lead_username="emailtest5e9476c0",
        product_name="Product kartra",
        product_id=5425,
        product_price_point=2,
        transaction_full_amount=Decimal("4.00"),
        transaction_quantity=1,
        transaction_affiliate=None,
        transaction_jv=None,
        transaction_date=et(2020, 12, 23, 6, 22, 3),
        transaction_type=TransactionType.SALE,
        transaction_parent_id=0,
        transaction_subscription_id="1670",
        transaction_internal_subscription_id=13670,
        transaction_subscription_pay_number=1,
        transaction_last_4_card_digits="1234",
        original_id=48111,
        lead_country="United States",
        lead_country_code_2="US",
        lead_country_code_3="USA",
        lead_state="New York",
        lead_phone_country_code="1",
        lead_phone_number="555-43556",
        lead_address="1st street",
        lead_city="New York",
        lead_zip="430022",
        lead_ip="127.0.0.1",
        transaction_discount=None,
        transaction_tax=None,
        vendor_tracking_id_1=None,
        vendor_tracking_id_2=None,
        trial=False,
        trial_period=None,
        trial_amount=None,
        rebill_circle=66,
        installments=21,
        payments_left=21,
        shipping_first_name=None,
        shipping_last_name=None,
        shipping_address=None,
        shipping_city=None,
        shipping_zip=None,
        shipping_country=None,
        shipping_state=None,
        transaction_shipping=Decimal("0.00"),
        transaction_base_amount=Decimal("4.00"),
        vendor_tracking_link="",
        payment_processor_type=PaymentProcessor.STRIPE,
    )


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("refund", RefundTransaction),
        ("partial_refund", RefundTransaction),
        ("chargeback", RefundTransaction),
        ("rebill", __import__("kartra_async").models.RebillTransaction),
        ("failed", __import__("kartra_async").models.FailedTransaction),
        ("cancellation", __import__("kartra_async").models.CancellationTransaction),
        ("Sale", SaleTransaction),
        ("gift", Transaction),
    ],
)
def test_transaction_details_union_by_type(kind: str, cls: type) -> None:
    data = {
        **TRANSACTION["get_transaction_details"]["transaction_details"],
        "transaction_type": kind,
    }
    details = structure(data, TransactionDetails)
    assert type(details) is cls
    assert details.transaction_type.value in (kind.lower(), kind)
    assert details.transaction_id == 99432


async def test_retrieve_from_lead_samples(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, TRANSACTIONS_FROM_LEAD)
    result = await kartra.lead("example@email.com").transactions()
    assert result.actions[0].data == [
        TransactionSummary(
            transaction_id=48110,
            lead_id=4174086,
            lead_email="example@email.com",
            transaction_type=TransactionType.SALE,
        ),
        TransactionSummary(
            transaction_id=48112,
            lead_id=4174086,
            lead_email="example@email.com",
            transaction_type=TransactionType.REFUND,
        ),
    ]
    reply(api, SUBSCRIPTIONS_FROM_LEAD)
    result = await kartra.lead("example@email.com").subscriptions()
    assert result.actions[0].data == [
        SubscriptionSummary(
            subscription_id=48110,
            lead_id=4174086,
            lead_email="example@email.com",
            subscription_status=SubscriptionStatus.ACTIVE,
        ),
        SubscriptionSummary(
            subscription_id=48112,
            lead_id=4174086,
            lead_email="example@email.com",
            subscription_status=SubscriptionStatus.PAUSED,
        ),
    ]


@pytest.mark.parametrize(("method", "occurrence", "names"), [
    ("tags", 1, ["Tag name 1", "Tag name 2"]),
    ("lists", 2, ["List name 1", "List name 2"]),
    ("sequences", 3, ["Sequence name 1", "Sequence name 2"]),
    ("pages", 4, ["Page name 1", "Page name 2"]),
])  # fmt: skip
async def test_account_samples(
    kartra: AsyncKartra, api: respx.MockRouter, method: str, occurrence: int, names: list[str]
) -> None:
    reply(api, sample("Example of the returned message:", occurrence))
    assert await getattr(kartra.account, method)() == names


async def test_custom_fields_sample(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, {"status": "Success", "custom_fields": CUSTOM_FIELDS})
    fields = await kartra.account.custom_fields()
    assert fields == [
        CustomField(
            id=1,
            identifier="gender",
            type=CustomFieldType.RADIO_BUTTON,
            options=[FieldOption(1, "male"), FieldOption(2, "female")],
        ),
        CustomField(
            id=2,
            identifier="fruits",
            type=CustomFieldType.CHECKBOX,
            options=[FieldOption(1, "apple"), FieldOption(2, "pear")],
        ),
        CustomField(id=3, identifier="field_3", type=CustomFieldType.INPUT_FIELD, options=[]),
        CustomField(
            id=4,
            identifier="field_4",
            type=CustomFieldType.DROP_DOWN,
            options=[FieldOption(1, "male"), FieldOption(2, "female")],
        ),
        CustomField(id=5, identifier="field_5", type=CustomFieldType.TEXT_AREA, options=[]),
    ]
    assert fields[2].raw == CUSTOM_FIELDS[2]


async def test_refund_and_cancel_samples(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, sample("Success message:", 16))
    assert await kartra.transactions.refund(738474, amount=Decimal("19.95")) == RefundResult(792354)
    reply(api, sample("Success message:", 18))
    assert await kartra.transactions.cancel(transaction_id=234161) == CancelResult(
        "I-EV375R0H61SM", 14833
    )


def test_webhook_lead_sample() -> None:
    lead = structure(WEBHOOK["lead"], Lead)
    assert (lead.id, lead.email, lead.google_plus, lead.lead_deleted) == (
        1,
        "johndoe@gmail.com",
        "google_plus",
        False,
    )
    assert lead.lead_deleted_date == et(2018, 4, 26, 0, 0, 0)
    assert lead.gdpr_lead_status is GdprStatus.NOT_SUBJECT
    assert lead.gdpr_lead_communications is False
    # "source": "0" is not a documented source: kept, not an error
    assert lead.source is not None
    assert not lead.source.is_known
    assert lead.source.value == "0"
    assert lead.custom_fields[2] == CustomFieldValue(
        325, "favorite_dish", CustomFieldType.INPUT_FIELD, "beef lasagna"
    )


# ---- one hook at a time


@pytest.mark.parametrize(
    ("raw", "value"), [("1234", 1234), (1234, 1234), (" 7 ", 7), ("-3", -3), (5.0, 5)]
)
def test_int_hook(raw: Any, value: int) -> None:
    assert structure_int(raw) == value


@pytest.mark.parametrize("raw", ["12a", "", "N/A", True, 1.5, None, [1]])
def test_int_hook_refuses(raw: Any) -> None:
    with pytest.raises(ValueError, match="expected an integer"):
        structure_int(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("300.00", Decimal("300.00")),
        (4, Decimal(4)),
        (19.95, Decimal("19.95")),
        ("1,299.50", Decimal("1299.50")),
    ],
)
def test_money_hook(raw: Any, value: Decimal) -> None:
    money = structure_decimal(raw)
    assert money == value
    assert type(money) is Decimal
    assert str(money) == str(value)


@pytest.mark.parametrize("raw", ["abc", "NaN", "inf", True, None])
def test_money_hook_refuses(raw: Any) -> None:
    with pytest.raises(ValueError, match="amount"):
        structure_decimal(raw)


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("0", False), (1, True), (0, False), (True, True)]
)
def test_bool_hook_is_strict(raw: Any, value: bool) -> None:
    assert structure_bool(raw) is value


@pytest.mark.parametrize("raw", ["yes", "true", "", "2", 2, None, "01"])
def test_bool_hook_refuses(raw: Any) -> None:
    with pytest.raises(ValueError, match="expected 0 or 1"):
        structure_bool(raw)


def test_datetime_hook_is_eastern() -> None:
    summer = structure_datetime("2019-03-26 06:35:31")
    assert summer == et(2019, 3, 26, 6, 35, 31)
    assert summer.utcoffset().total_seconds() == -4 * 3600  # type: ignore[union-attr]
    winter = structure_datetime("2020-12-09 09:00")
    assert winter.utcoffset().total_seconds() == -5 * 3600  # type: ignore[union-attr]
    for bad in ["2019-03-26", "26/03/2019 06:35", "0000-00-00 00:00:00x", 5]:
        with pytest.raises(ValueError, match="expected a date"):
            structure_datetime(bad)


def test_none_sentinels_for_optional_fields() -> None:
    assert converter.structure("N/A", int | None) is None
    assert converter.structure("", int | None) is None
    assert converter.structure("0000-00-00 00:00:00", datetime | None) is None
    assert converter.structure("N/A", Decimal | None) is None
    assert converter.structure("N/A", str | None) is None
    assert converter.structure("", str | None) == ""  # an empty text is a text
    assert converter.structure("5", int | None) == 5


def test_until_cancelled() -> None:
    assert structure_installments("Until cancelled") is UntilCancelled.UNTIL_CANCELLED
    assert structure_installments("until CANCELLED") is UntilCancelled.UNTIL_CANCELLED
    assert structure_installments("3") == 3
    with pytest.raises(ValueError, match="expected an integer"):
        structure_installments("forever")


def test_enums_keep_unknown_values() -> None:
    assert converter.structure("Sale", TransactionType) is TransactionType.SALE
    assert converter.structure("PARTIAL_REFUND", TransactionType) is TransactionType.PARTIAL_REFUND
    unknown = converter.structure("store_credit", TransactionType)
    assert (unknown.name, unknown.value, unknown.is_known) == ("UNKNOWN", "store_credit", False)
    assert converter.structure("2", GdprStatus) is GdprStatus.ACCEPTED
    odd = converter.structure(9, GdprStatus)
    assert (odd.name, odd.value, odd.is_known) == ("UNKNOWN", 9, False)
    assert GdprStatus.ACCEPTED.is_known


def test_str_hook() -> None:
    assert structure_str(60) == "60"
    with pytest.raises(ValueError, match="expected a string"):
        structure_str(["a"])


def test_models_are_frozen_and_leaf_models_hashable() -> None:
    option = FieldOption(1, "red")
    assert hash(option) == hash(FieldOption(1, "red"))
    assert len({LeadRef(1), LeadRef(1), ListMembership("a", True)}) == 2
    with pytest.raises(AttributeError):
        option.value = "blue"  # type: ignore[misc]


def test_structure_failure_names_the_path() -> None:
    bad = copy.deepcopy(GET_LEAD["lead_details"])
    bad["blacklisted"] = "maybe"
    bad["lists"][0]["active"] = "yes"
    with pytest.raises(KartraResponseError) as caught:
        structure(bad, Lead, what="get_lead")
    assert isinstance(caught.value, KartraDecodeError)
    assert caught.value.model == "Lead"
    message = str(caught.value)
    assert message.startswith("get_lead does not fit Lead: ")
    assert "@ $.blacklisted" in message
    assert "@ $.lists[0].active" in message
    assert "expected 0 or 1, got 'maybe'" in message


async def test_structure_failure_through_the_client(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(api, {"status": "Success", "lead_details": {"id": "not-a-number"}})
    with pytest.raises(KartraResponseError) as caught:
        await kartra.get_lead("a@b.co")
    assert "action 0 (get_lead) does not fit Lead" in caught.value.reason
    assert "@ $.id" in caught.value.reason
    assert caught.value.status_code == 200
    assert isinstance(caught.value, KartraDecodeError)
    assert caught.value.model == "Lead"
    assert caught.value.excerpt.startswith('{"status":"Success"')


async def test_an_answer_that_is_not_json_is_not_a_decode_error(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    api.post("").mock(return_value=httpx.Response(200, content=b"<html>"))
    with pytest.raises(KartraResponseError) as caught:
        await kartra.get_lead("a@b.co")
    assert type(caught.value) is KartraResponseError
    assert caught.value.reason == "Kartra's answer is not valid JSON"


# ---- hypothesis: payload variants all structure

_LEAD = GET_LEAD["lead_details"]
_OPTIONAL_NON_TEXT = [
    "date_joined",
    "source_id",
    "referring_id",
    "gdpr_lead_status",
    "gdpr_lead_status_date",
    "gdpr_lead_communications",
]
_DROPPABLE = [k for k in _LEAD if k != "id"]


def _as_ints(value: Any) -> Any:
    """Turn every numeric string into an int (Kartra sends both)."""
    if isinstance(value, dict):
        return {k: _as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_ints(v) for v in value]
    if isinstance(value, str) and value.isdigit() and not value.startswith("0"):
        return int(value)
    return value


@settings(max_examples=150, deadline=None)
@given(
    ints=st.booleans(),
    dropped=st.sets(st.sampled_from(_DROPPABLE)),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in _LEAD),
        st.one_of(st.text(), st.integers(), st.none()),
        max_size=3,
    ),
    not_available=st.sets(st.sampled_from(_OPTIONAL_NON_TEXT)),
)
def test_lead_variants_structure(
    ints: bool, dropped: set[str], extra: dict[str, Any], not_available: set[str]
) -> None:
    data = _as_ints(copy.deepcopy(_LEAD)) if ints else copy.deepcopy(_LEAD)
    for key in dropped:
        data.pop(key, None)
    for key in not_available:
        data[key] = "N/A"
    data.update(extra)
    lead = structure(data, Lead)
    assert lead.id == 1234
    assert lead.raw is data
    for key in not_available:
        assert getattr(lead, key) is None
    if "score" not in dropped:
        assert lead.score == 0
    if "custom_fields" not in dropped:
        assert lead.custom_fields == EXPECTED_LEAD.custom_fields
    if "transactions" not in dropped:
        assert lead.transactions == EXPECTED_LEAD.transactions
    kept = {
        k
        for k in ("tags", "lists", "sequences", "memberships", "calendars", "surveys")
        if k not in dropped
    }
    for key in kept:
        assert getattr(lead, key) == getattr(EXPECTED_LEAD, key)


@settings(max_examples=100, deadline=None)
@given(
    ints=st.booleans(),
    dropped=st.sets(
        st.sampled_from(
            [
                k
                for k in TRANSACTION["get_transaction_details"]["transaction_details"]
                if k not in ("transaction_id", "transaction_type")
            ]
        )
    ),
)
def test_transaction_variants_structure(ints: bool, dropped: set[str]) -> None:
    data = copy.deepcopy(TRANSACTION["get_transaction_details"]["transaction_details"])
    if ints:
        data = _as_ints(data)
    for key in dropped:
        del data[key]
    details = structure(data, TransactionDetails)
    assert type(details) is SaleTransaction
    assert details.transaction_id == 99432
    for key in dropped:
        assert getattr(details, key, None) is None


# ---- one engine: cattrs' generated hooks; detailed validation only to explain a failure

_MODEL_MODULES = ("account", "lead", "payments", "results", "webhooks")


def _model_classes() -> list[type]:
    import importlib

    import attrs

    found: dict[str, type] = {}
    for name in _MODEL_MODULES:
        module = importlib.import_module(f"kartra_async.models.{name}")
        for value in vars(module).values():
            if isinstance(value, type) and attrs.has(value) and value.__module__ == module.__name__:
                found[value.__qualname__] = value
    return list(found.values())


def test_models_are_frozen_and_slotted() -> None:
    import attrs

    classes = _model_classes()
    assert len(classes) >= 65
    for cls in classes:
        assert "__slots__" in cls.__dict__, cls
        blank = object.__new__(cls)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(blank, attrs.fields(cls)[0].name, None)
    lead = structure(_LEAD, Lead)
    assert not hasattr(lead, "__dict__")


def test_no_generated_source_in_the_package() -> None:
    import ast
    from pathlib import Path

    import kartra_async

    root = Path(kartra_async.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("exec", "eval", "compile"), (path, node.lineno)


def test_the_detailed_converter_only_explains_failures() -> None:
    from kartra_async import _convert

    assert converter.detailed_validation is False
    _convert._explaining_converter.cache_clear()
    assert structure(_LEAD, Lead).id == 1234
    assert _convert._explaining_converter.cache_info().currsize == 0
    with pytest.raises(KartraResponseError, match=r"expected an integer, got 'x' @ \$\.id"):
        structure({**_LEAD, "id": "x"}, Lead)
    assert _convert._explaining_converter().detailed_validation is True


@pytest.mark.parametrize(
    ("key", "value", "detail"),
    [
        ("lists", ["x"], "expected an object for ListMembership, got str @ $.lists[0]"),
        ("custom_fields", [7], "expected an object for CustomFieldValue, got int @ $.custom_fields[0]"),
        ("calendars", [{"calendar_id": "1", "hosts": ["abc"]}], "expected an object for CalendarHost, got str @ $.calendars[0].hosts[0]"),
        ("sequences", [{"step": "2"}], "required field missing @ $.sequences[0].name"),
    ],
)  # fmt: skip
def test_nested_errors_name_their_path(key: str, value: Any, detail: str) -> None:
    with pytest.raises(KartraResponseError) as caught:
        structure({**_LEAD, key: value}, Lead)
    assert detail in str(caught.value)


@settings(max_examples=100, deadline=None)
@given(ints=st.booleans(), key=st.sampled_from(sorted(_LEAD)))
def test_a_bad_field_is_named_by_its_path(ints: bool, key: str) -> None:
    """Whatever field is wrong, the fast converter refuses it and the detailed one
    (run only then) names it. [[1]] fits no field of a lead."""
    data = _as_ints(copy.deepcopy(_LEAD)) if ints else copy.deepcopy(_LEAD)
    data[key] = [[1]]
    with pytest.raises(KartraResponseError) as caught:
        structure(data, Lead, what="get_lead")
    assert f"@ $.{key}" in str(caught.value)


# ---- the one integer reader and the one case-insensitive enum lookup


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1234", 1234), (1234, 1234), (" 7 ", 7), ("-3", -3), ("+3", 3), (5.0, 5), ("007", 7)],
)
def test_parse_int_reads(raw: Any, value: int) -> None:
    assert parse_int(raw) == value


@pytest.mark.parametrize(
    "raw", ["12a", "", " ", "-", "N/A", True, False, 1.5, None, [1], "١٢", "²", "1_000", "9" * 5000]
)
def test_parse_int_refuses_without_raising(raw: Any) -> None:
    assert parse_int(raw) is None


@pytest.mark.parametrize(
    ("cls", "raw", "member"),
    [
        (TransactionType, "sale", TransactionType.SALE),
        (TransactionType, " Partial_Refund ", TransactionType.PARTIAL_REFUND),
        (UntilCancelled, "until cancelled", UntilCancelled.UNTIL_CANCELLED),
        (UntilCancelled, " UNTIL CANCELLED", UntilCancelled.UNTIL_CANCELLED),
        (GdprStatus, 2, GdprStatus.ACCEPTED),
        (GdprStatus, "2", GdprStatus.ACCEPTED),
        (TransactionType, "gift", None),
        (TransactionType, None, None),
        (TransactionType, ["sale"], None),
    ],
)
def test_member_of_is_the_one_case_insensitive_lookup(cls: Any, raw: Any, member: Any) -> None:
    assert member_of(cls, raw) is member
    if member is not None:
        assert cls(raw) is member  # the enums' own _missing_ uses it


def test_the_int_enum_reads_what_parse_int_reads() -> None:
    assert GdprStatus(" 3 ") is GdprStatus.NOT_ACCEPTED
    unknown = GdprStatus("+9")
    assert (unknown.name, unknown.value, unknown.is_known) == ("UNKNOWN", 9, False)
    with pytest.raises(ValueError, match="is not a valid GdprStatus"):
        GdprStatus("2.5")
