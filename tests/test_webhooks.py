"""Kartra's callbacks: every outbound event shape, every IPN variant, unknown actions,
malformed bodies, duplicates; the FastAPI router and the shared client."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kartra_async import AsyncKartra
from kartra_async.models import (
    CancellationTransaction,
    CustomFieldType,
    FailedTransaction,
    GdprStatus,
    RebillTransaction,
    RefundTransaction,
    SaleTransaction,
    TransactionType,
)
from kartra_async.testing import FakeKartra
from kartra_async.webhooks import (
    EVENT_TYPES,
    CalendarSubscribed,
    Event,
    KartraWebhookError,
    ListSubscribed,
    ListUnsubscribed,
    ProductBought,
    ScoreReached,
    SurveyCompleted,
    TagAssigned,
    UnknownEvent,
    dedupe_key,
    parse_event,
    parse_ipn,
)

from .docs_samples import sample
from .test_models import et

pytestmark = pytest.mark.anyio

DOCS_EVENT = sample("Here’s an example of a JSON object sent when a lead is subscribed to a list:")
LEAD = DOCS_EVENT["lead"]


def test_the_docs_full_sample_field_by_field() -> None:
    event = parse_event(json.dumps(DOCS_EVENT).encode())
    assert type(event) is ListSubscribed
    assert event.action == "list_subscription"
    assert (event.list.list_id, event.list.list_name) == (1, "list 1")  # type: ignore[union-attr]
    lead = event.lead
    assert (lead.id, lead.first_name, lead.middle_name, lead.last_name, lead.last_name2) == (
        1,
        "John",
        "Doe",
        "Doe",
        "Doe",
    )
    assert (lead.email, lead.phone_country_code, lead.phone, lead.company) == (
        "johndoe@gmail.com",
        "+1",
        "1234567",
        "company",
    )
    assert (lead.address, lead.city, lead.zip, lead.state, lead.country) == (
        "address",
        "New York",
        "1234",
        "state",
        "United States",
    )
    assert lead.date_joined == et(2018, 4, 26, 0, 0, 0)
    assert (lead.website, lead.ip, lead.ip_country) == (
        "http://www.example.com",
        "127.0.0.1",
        "United States",
    )
    assert (lead.facebook, lead.twitter, lead.linkedin, lead.google_plus) == (
        "facebook",
        "twitter",
        "linkedin",
        "google_plus",
    )
    assert (lead.sales_tax_id, lead.lead_picture, lead.score, lead.referring_id) == (
        "1234",
        "http://www.example.com",
        0,
        0,
    )
    assert (lead.lead_deleted, lead.lead_deleted_date, lead.blacklisted, lead.source_id) == (
        False,
        et(2018, 4, 26, 0, 0, 0),
        False,
        0,
    )
    assert (lead.gdpr_lead_status, lead.gdpr_lead_status_date) == (
        GdprStatus.NOT_SUBJECT,
        et(2018, 4, 26, 0, 0, 0),
    )
    assert (lead.gdpr_lead_status_ip, lead.gdpr_lead_communications) == ("127.0.0.1", False)
    assert [(f.identifier, f.type, f.text) for f in lead.custom_fields] == [
        ("color", CustomFieldType.CHECKBOX, "red, blue"),
        ("gender", CustomFieldType.DROP_DOWN, "male"),
        ("favorite_dish", CustomFieldType.INPUT_FIELD, "beef lasagna"),
    ]
    assert event.raw == DOCS_EVENT


@pytest.mark.parametrize(
    ("action", "details", "cls"),
    [
        ("list_unsubscription", {"list": {"list_id": 2, "list_name": "list 2"}}, ListUnsubscribed),
        ("assign_tag", {"tag": {"tag_id": "7", "tag_name": "VIP"}}, TagAssigned),
    ],
)
def test_the_other_documented_events(action: str, details: dict[str, Any], cls: type) -> None:
    event = parse_event({"lead": LEAD, "action": action, "action_details": details})
    assert type(event) is cls
    key, value = next(iter(details.items()))
    assert attrs_values(getattr(event, key)) == [
        int(v) if str(v).isdigit() else v for v in value.values()
    ]


def attrs_values(model: Any) -> list[Any]:
    import attrs

    return [getattr(model, f.name) for f in attrs.fields(type(model))]


CALENDAR = {
    "calendar_id": "12", "calendar_name": "Coaching", "class_id": "3", "class_name": "Strategy Call",
    "hosts": [{"host_first_name": "Ann", "host_last_name": "Host", "host_email_address": "ann@example.com"}],
    "vendor_timezone": "America/New_York", "calendar_subscription_id": "88",
    "events": [{"event_date": "2026-12-09 09:00", "event_duration": "60"}],
}  # fmt: skip
SURVEY = {
    "survey_id": "5", "survey_name": "Quiz", "survey_type": "2", "survey_score": "80",
    "survey_completion_time": "40",
    "questions": [{"question_id": "1", "question_title": "2+2", "question_correct": "1",
                   "answers": [{"option_id": "9", "option_value": "4"}]}],
}  # fmt: skip
TRANSACTION = {
    "transaction_id": "501", "lead_first_name": "John", "lead_last_name": "Doe", "lead_email": "johndoe@gmail.com",
    "lead_username": "jd", "lead_id": "1", "product_name": "Course", "product_id": "42", "product_price_point": "1",
    "transaction_quantity": "1", "transaction_full_amount": "49.00", "transaction_date": "2026-11-20 10:00:00",
    "transaction_type": "sale",
}  # fmt: skip

OTHER_EVENTS: list[tuple[str, dict[str, Any], str, Any]] = [
    ("unassign_tag", {"tag": {"tag_id": 7, "tag_name": "VIP"}}, "tag", ("tag_name", "VIP")),
    (
        "sequence_subscription",
        {"sequence": {"sequence_id": 3, "sequence_name": "Welcome"}},
        "sequence",
        ("sequence_id", 3),
    ),
    (
        "sequence_unsubscription",
        {"sequence": {"sequence_id": 3, "sequence_name": "Welcome"}},
        "sequence",
        ("sequence_name", "Welcome"),
    ),
    (
        "sequence_completion",
        {"sequence": {"sequence_id": "3", "sequence_name": "Welcome"}},
        "sequence",
        ("sequence_id", 3),
    ),
    (
        "membership_granted",
        {
            "membership": {
                "membership_id": 4,
                "membership_name": "Club",
                "level_id": 2,
                "level_name": "Gold",
            }
        },
        "membership",
        ("level_name", "Gold"),
    ),
    (
        "membership_revoked",
        {
            "membership": {
                "membership_id": "4",
                "membership_name": "Club",
                "level_id": "2",
                "level_name": "Gold",
            }
        },
        "membership",
        ("level_id", 2),
    ),
    (
        "buy_product",
        {"transaction_details": TRANSACTION},
        "transaction_details",
        ("transaction_full_amount", Decimal("49.00")),
    ),
    (
        "cancel_subscription",
        {
            "transaction_details": {
                k: TRANSACTION[k]
                for k in (
                    "transaction_id",
                    "lead_email",
                    "product_name",
                    "product_id",
                    "product_price_point",
                    "transaction_date",
                )
            }
            | {"transaction_type": "cancellation"}
        },
        "transaction_details",
        ("transaction_type", TransactionType.CANCELLATION),
    ),
    (
        "refund",
        {"transaction_details": TRANSACTION | {"transaction_type": "refund"}},
        "transaction_details",
        ("transaction_id", 501),
    ),
    ("calendar_subscribe", {"calendar": CALENDAR}, "calendar", ("subscription_id", 88)),
    ("calendar_cancel", {"calendar": CALENDAR}, "calendar", ("class_name", "Strategy Call")),
    ("calendar_complete", {"calendar": CALENDAR}, "calendar", ("calendar_id", 12)),
    ("survey_complete", {"survey": SURVEY}, "survey", ("score", 80)),
    (
        "filled_form",
        {"form": {"form_id": 9, "form_name": "Opt-in"}},
        "form",
        ("form_name", "Opt-in"),
    ),
    (
        "video_play",
        {"video": {"video_id": 1, "video_name": "Intro"}},
        "video",
        ("video_name", "Intro"),
    ),
    (
        "video_complete",
        {"video": {"video_id": "1", "video_name": "Intro"}},
        "video",
        ("video_id", 1),
    ),
    (
        "kartra_page_visit",
        {"kartra_page": {"kartra_page_id": 5, "kartra_page_name": "Home"}},
        "kartra_page",
        ("kartra_page_name", "Home"),
    ),
    (
        "click_page_split_test_link",
        {"page_split_test_link": {"page_split_test_link_id": 6, "page_split_test_link_name": "B"}},
        "page_split_test_link",
        ("page_split_test_link_id", 6),
    ),
    ("reaches_score", {"points": "100"}, "points", None),
    (
        "affiliate_signup",
        {
            "product": {
                "product_id": 42,
                "product_name": "course",
                "official_product_name": "The Course",
            }
        },
        "product",
        ("official_product_name", "The Course"),
    ),
    (
        "jv_signup",
        {
            "product": {
                "product_id": "42",
                "product_name": "course",
                "official_product_name": "The Course",
            }
        },
        "product",
        ("product_id", 42),
    ),
]


@pytest.mark.parametrize(
    ("action", "details", "field", "check"), OTHER_EVENTS, ids=[e[0] for e in OTHER_EVENTS]
)
def test_every_other_event_shape(
    action: str, details: dict[str, Any], field: str, check: Any
) -> None:
    event = parse_event({"lead": LEAD, "action": action, "action_details": details})
    assert type(event) is EVENT_TYPES[action]
    assert event.lead.id == 1
    value = getattr(event, field)
    if check is None:
        assert value == 100
    else:
        assert getattr(value, check[0]) == check[1]


def test_24_event_types_and_typed_details() -> None:
    assert len(EVENT_TYPES) == 24
    calendar = parse_event(
        {"lead": LEAD, "action": "calendar_subscribe", "action_details": {"calendar": CALENDAR}}
    )
    assert isinstance(calendar, CalendarSubscribed)
    assert calendar.calendar.events[0].date == et(2026, 12, 9, 9, 0)  # type: ignore[union-attr]
    survey = parse_event(
        {"lead": LEAD, "action": "survey_complete", "action_details": {"survey": SURVEY}}
    )
    assert isinstance(survey, SurveyCompleted)
    assert survey.survey.questions[0].answers[0].value == "4"  # type: ignore[union-attr]
    bought = parse_event(
        {
            "lead": LEAD,
            "action": "buy_product",
            "action_details": {"transaction_details": TRANSACTION},
        }
    )
    assert isinstance(bought, ProductBought)
    assert bought.transaction_details.transaction_date == et(2026, 11, 20, 10, 0, 0)  # type: ignore[union-attr]
    assert isinstance(
        parse_event({"lead": LEAD, "action": "reaches_score", "action_details": {"points": 5}}),
        ScoreReached,
    )


def test_unknown_actions_and_extra_keys_are_kept() -> None:
    event = parse_event(
        {
            "lead": {**LEAD, "new_field": "x"},
            "action": "quiz_passed",
            "action_details": {"quiz": {"id": 3}},
            "extra": 1,
        }
    )
    assert isinstance(event, UnknownEvent)
    assert (event.action, event.details) == ("quiz_passed", {"quiz": {"id": 3}})
    assert event.raw["extra"] == 1
    assert event.lead.raw["new_field"] == "x"


def test_dedupe_key() -> None:
    first = parse_event(
        {
            "lead": LEAD,
            "action": "assign_tag",
            "action_details": {"tag": {"tag_id": 7, "tag_name": "VIP"}},
        }
    )
    again = parse_event(
        json.dumps(
            {
                "action": "assign_tag",
                "action_details": {"tag": {"tag_name": "VIP", "tag_id": 7}},
                "lead": LEAD,
            }
        )
    )
    other_tag = parse_event(
        {
            "lead": LEAD,
            "action": "assign_tag",
            "action_details": {"tag": {"tag_id": 8, "tag_name": "X"}},
        }
    )
    other_lead = parse_event(
        {
            "lead": {**LEAD, "id": "2"},
            "action": "assign_tag",
            "action_details": {"tag": {"tag_id": 7, "tag_name": "VIP"}},
        }
    )
    assert first.dedupe_key == again.dedupe_key
    assert len({first.dedupe_key, other_tag.dedupe_key, other_lead.dedupe_key}) == 3
    assert len(first.dedupe_key) == 32


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>", "not valid JSON"),
        (b"[1, 2]", "a JSON list, not an object"),
        (b'{"lead": {"id": 1}}', "no 'action'"),
        (b'{"action": "assign_tag"}', "no 'lead' object"),
        (
            b'{"action": "assign_tag", "lead": {"id": 1}, "action_details": [1]}',
            "'action_details' is not an object",
        ),
        (
            b'{"action": "assign_tag", "lead": {"id": "abc"}}',
            "the assign_tag event's lead does not fit Lead",
        ),
        (
            b'{"action": "assign_tag", "lead": {"id": 1}, "action_details": {"tag": "VIP"}}',
            "the assign_tag event's tag does not fit",
        ),
    ],
)
def test_malformed_events(body: bytes, reason: str) -> None:
    with pytest.raises(KartraWebhookError) as caught:
        parse_event(body)
    assert reason in caught.value.reason


IPN_BASE = {
    "transaction_id": "700", "transaction_full_amount": "49.00", "transaction_base_amount": "49.00",
    "transaction_discount": "N/A", "transaction_shipping": "0.00", "transaction_tax": "N/A",
    "transaction_date": "2026-11-20 10:00:00", "transaction_parent_id": "0", "transaction_affiliate": "N/A",
    "transaction_jv": "N/A", "transaction_quantity": "1", "transaction_subscription_id": "N/A",
    "transaction_internal_subscription_id": "N/A", "transaction_subscription_pay_number": "N/A",
    "transaction_last_4_card_digits": "4242", "original_id": "700", "product_name": "Course", "product_id": "42",
    "product_price_point": "1", "trial": "0", "trial_amount": "N/A", "trial_period": "N/A", "payments_left": "N/A",
    "lead_id": "1", "lead_first_name": "John", "lead_last_name": "Doe", "lead_email": "johndoe@gmail.com",
    "lead_username": "N/A", "lead_phone_country_code": "N/A", "lead_phone_number": "N/A", "lead_address": "N/A",
    "lead_city": "N/A", "lead_zip": "N/A", "lead_state": "N/A", "lead_country": "United States", "lead_country_code_2": "US",
}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("sale", SaleTransaction),
        ("refund", RefundTransaction),
        ("partial_refund", RefundTransaction),
        ("chargeback", RefundTransaction),
        ("rebill", RebillTransaction),
        ("failed", FailedTransaction),
        ("cancellation", CancellationTransaction),
    ],
)
@pytest.mark.parametrize("as_bytes", [True, False])
def test_every_ipn_variant(kind: str, cls: type, as_bytes: bool) -> None:
    form = {**IPN_BASE, "transaction_type": kind}
    ipn = parse_ipn(urlencode(form).encode() if as_bytes else form)
    assert type(ipn) is cls
    assert (ipn.transaction_id, ipn.transaction_type.value, ipn.lead_id, ipn.product_id) == (
        700,
        kind,
        1,
        42,
    )
    assert ipn.transaction_date == et(2026, 11, 20, 10, 0, 0)
    assert ipn.lead_phone_number is None  # "N/A"
    assert ipn.transaction_internal_subscription_id is None
    if cls is not CancellationTransaction:
        assert (
            ipn.transaction_full_amount,
            ipn.transaction_discount,
            ipn.transaction_affiliate,
        ) == (Decimal("49.00"), None, None)  # type: ignore[attr-defined]


def test_malformed_ipn() -> None:
    with pytest.raises(KartraWebhookError, match="no transaction_id"):
        parse_ipn(b"hello=world")
    with pytest.raises(KartraWebhookError, match="does not fit"):
        parse_ipn({"transaction_id": "x1", "transaction_type": "sale"})


def test_fastapi_is_an_optional_import() -> None:
    code = "import sys, kartra_async, kartra_async.webhooks; assert 'fastapi' not in sys.modules, 'fastapi imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- FastAPI

fastapi = pytest.importorskip("fastapi", reason="the [fastapi] extra is part of [test]")
SECRET = "s3cret-callback-token-123"


@pytest.fixture
def app_and_calls() -> tuple[Any, list[Any]]:
    from fastapi import Depends

    from kartra_async.fastapi import KartraWebhookRouter, get_kartra, kartra_lifespan

    fake = FakeKartra(rate_limit=None)
    fake.seed()
    app = fastapi.FastAPI(lifespan=kartra_lifespan(fake.client))
    router = KartraWebhookRouter(secret=SECRET, max_body=2048)
    calls: list[Any] = []

    @router.on(TagAssigned)
    async def on_tag(event: TagAssigned) -> None:
        calls.append(("tag", event.tag.tag_name if event.tag else None))  # type: ignore[union-attr]
        await app.state.kartra.lead(event.lead.email).subscribe_list("Customers")

    @router.on(SaleTransaction)
    def on_sale(ipn: SaleTransaction) -> None:
        calls.append(("sale", ipn.transaction_id))

    @router.on(ListSubscribed)
    def broken(event: ListSubscribed) -> None:
        raise RuntimeError("handler bug")

    app.include_router(router)

    @app.get("/client")
    async def which(kartra: AsyncKartra = Depends(get_kartra)) -> dict[str, int]:
        return {"id": id(kartra)}

    app.state.fake = fake
    return app, calls


async def call(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        return await http.request(method, url, **kwargs)


async def test_router_secret_and_content(
    app_and_calls: tuple[Any, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    app, calls = app_and_calls
    event = {
        "lead": {**LEAD, "email": "alice@example.com"},
        "action": "assign_tag",
        "action_details": {"tag": {"tag_id": 1, "tag_name": "VIP"}},
    }
    async with app.router.lifespan_context(app):
        ok = await call(app, "POST", f"/kartra/callback/{SECRET}", json=event)
        assert ok.status_code == 200
        assert ok.json()["type"] == "TagAssigned"
        assert calls == [("tag", "VIP")]  # ran before the answer
        assert app.state.fake.lead("alice@example.com").lists["Customers"] is True
        duplicate = await call(app, "POST", f"/kartra/callback?secret={SECRET}", json=event)
        assert duplicate.json()["duplicate"] is True
        assert calls == [("tag", "VIP")]
        for url in (
            "/kartra/callback/wrong-secret-xxxxxxxxx",
            "/kartra/callback",
            "/kartra/callback?secret=nope",
        ):
            assert (await call(app, "POST", url, json=event)).status_code == 403
        big = await call(
            app,
            "POST",
            f"/kartra/callback/{SECRET}",
            content=b"{" + b" " * 5000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        bad = await call(
            app,
            "POST",
            f"/kartra/callback/{SECRET}",
            content=b"{oops",
            headers={"content-type": "application/json"},
        )
        assert (bad.status_code, bad.json()["error"]) == (400, "the event body is not valid JSON")
        wrong_type = await call(
            app,
            "POST",
            f"/kartra/callback/{SECRET}",
            content=b"hi",
            headers={"content-type": "text/plain"},
        )
        assert wrong_type.status_code == 415
        ipn = await call(
            app, "POST", f"/kartra/callback/{SECRET}", data={**IPN_BASE, "transaction_type": "sale"}
        )
        assert (ipn.status_code, ipn.json()["type"]) == (200, "SaleTransaction")
        assert calls[-1] == ("sale", 700)
        with caplog.at_level(logging.ERROR, logger="kartra_async.fastapi"):
            failing = await call(app, "POST", f"/kartra/callback/{SECRET}", json=DOCS_EVENT)
        # a failing handler answers 500 so the sender redelivers (the 200 of background
        # mode, with the same log line, is asserted in test_callbacks.py)
        assert failing.status_code == 500
        assert failing.json()["error"] == "a handler failed; send the callback again"
        assert any(
            "handler broken failed on ListSubscribed" in r.getMessage() and r.exc_info
            for r in caplog.records
        )


async def test_one_shared_client_closed_at_shutdown(app_and_calls: tuple[Any, list[Any]]) -> None:
    app, _ = app_and_calls
    async with app.router.lifespan_context(app):
        kartra = app.state.kartra
        first = (await call(app, "GET", "/client")).json()["id"]
        second = (await call(app, "GET", "/client")).json()["id"]
        assert first == second == id(kartra)
    assert kartra._closed
    assert kartra._http.is_closed
    assert not hasattr(app.state, "kartra")


def test_router_wants_a_real_secret() -> None:
    from kartra_async.fastapi import KartraWebhookRouter

    with pytest.raises(ValueError, match="at least 16"):
        KartraWebhookRouter(secret="short")


# ---- hostile input: a KartraWebhookError (400) or a parsed callback, nothing else

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["N/A", "", "1", "-3", "2026-11-20 10:00:00", "1e999", "0x10"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def parsed(parse: Any, body: bytes) -> Any:
    """The parsed callback, or the KartraWebhookError's reason (never another error)."""
    try:
        return parse(body)
    except KartraWebhookError as exc:
        reason = exc.reason
    assert isinstance(reason, str)
    assert reason
    return reason


LEAD_KEYS = st.sampled_from(
    ["id", "email", "score", "date_joined", "custom_fields", "gdpr_lead_status", "lead_deleted"]
)


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from([*EVENT_TYPES, "made_up", ""]),
    lead=st.dictionaries(LEAD_KEYS, JSON_VALUES, max_size=4),
    details=JSON_VALUES,
    detail_key=st.sampled_from(
        ["tag", "list", "transaction_details", "calendar", "survey", "points"]
    ),
)
def test_any_event_json_parses_or_raises_webhook_error(
    action: str, lead: dict[str, Any], details: Any, detail_key: str
) -> None:
    body = json.dumps({"action": action, "lead": lead, "action_details": {detail_key: details}})
    event = parsed(parse_event, body.encode())
    if isinstance(event, Event):
        assert event.action == action
        assert len(dedupe_key(event)) == len("event:") + 32


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_any_bytes_parse_or_raise_webhook_error(body: bytes) -> None:
    for parse in (parse_event, parse_ipn):
        parsed(parse, body)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(sorted(IPN_BASE)),
        st.text(max_size=12) | st.sampled_from(["N/A", "1e999", "-1"]),
        max_size=8,
    ),
    kind=st.sampled_from(["sale", "refund", "rebill", "failed", "cancellation", "weird", "N/A"]),
)
def test_any_ipn_form_parses_or_raises_webhook_error(fields: dict[str, str], kind: str) -> None:
    form = {**IPN_BASE, **fields, "transaction_type": kind}
    ipn = parsed(parse_ipn, urlencode(form).encode())
    if not isinstance(ipn, str):
        assert dedupe_key(ipn) == f"ipn:{ipn.transaction_id}:{ipn.transaction_type.value}"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "the event body is nested deeper than 32"),
        (b'{"a": ' * 33 + b"1" + b"}" * 33, "the event body is nested deeper than 32"),
        (
            b'{"lead": {"id": ' + b"1" * 5000 + b"}}",
            "the event body holds a number too long to read",
        ),
        (b'{"action": "\xc3\x28"}', "the event body is not UTF-8"),
        (
            '{"action": "x"}'.encode("utf-16"),
            "the event has no 'lead' object",
        ),  # JSON may be UTF-16
    ],
    ids=["brackets", "objects", "long-int", "not-utf8", "utf16"],
)
def test_hostile_event_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(KartraWebhookError) as caught:
        parse_event(body)
    assert caught.value.reason == reason


def test_depth_32_is_allowed() -> None:
    nested: Any = {"leaf": 1}
    for _ in range(29):
        nested = {"n": nested}
    event = parse_event({"lead": LEAD, "action": "quiz", "action_details": nested})  # 32 deep
    assert isinstance(event, UnknownEvent)
