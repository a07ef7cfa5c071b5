"""Reading Kartra's answers: every documented shape, every error code, partial
failures and bodies that are not Kartra answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from kartra_async import (
    ERROR_CODES,
    AsyncKartra,
    AuthenticationError,
    ChainError,
    KartraAPIError,
    KartraResponseError,
    KartraServerError,
    KartraValidationError,
    LeadExistsError,
    LeadNotFoundError,
    RateLimitError,
    TagNotFoundError,
    TransactionNotFoundError,
)
from kartra_async import errors as errors_module
from kartra_async.models import (
    CancelResult,
    Lead,
    LeadRef,
    RebillTransaction,
    RefundResult,
    SubscriptionDetails,
    TransactionSummary,
    TransactionType,
)
from kartra_async.testing import RESPONSE_STYLES
from kartra_async.testing.fake import envelope

pytestmark = pytest.mark.anyio

# a copy of ../shared/kartra-api/kartra-api-docs.txt, so the suite runs from a bare clone
DOCS = (Path(__file__).parent / "data" / "kartra-api-docs.txt").read_text(encoding="utf-8")


def reply(api: respx.MockRouter, body: Any, status: int = 200) -> respx.Route:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return api.post("").mock(return_value=httpx.Response(status, content=content))


# ---- the error table


def test_error_codes_cover_every_code_in_the_docs() -> None:
    documented = {int(c) for c in re.findall(r'"type":\s*"?(2\d\d)"?', DOCS)}
    documented |= {int(c) for c in re.findall(r"^(2\d\d) ", DOCS, flags=re.MULTILINE)}
    assert len(documented) > 60
    assert set(ERROR_CODES) == documented, sorted(documented ^ set(ERROR_CODES))
    assert len(ERROR_CODES) == 74
    for code, entry in ERROR_CODES.items():
        assert entry.code == code
        assert issubclass(entry.cls, KartraAPIError)
        assert entry.message


EXPECTED_CLASSES = {
    "AuthenticationError": {201, 202, 203, 204, 233, 238, 239, 240},
    "PermissionDeniedError": {242, 262},
    "LeadNotFoundError": {243, 234},
    "LeadExistsError": {244},
    "CustomFieldExistsError": {264},
    "LeadDeletedError": {245},
    "RequestFormatError": {206, 223, 224, 236, 254},
    "ListNotFoundError": {209, 231},
    "TagNotFoundError": {212, 214},
    "SequenceNotFoundError": {219, 220},
    "StepNotFoundError": {230},
    "CalendarNotFoundError": {257},
    "ClassNotFoundError": {258},
    "CalendarSubscriptionNotFoundError": {259},
    "TransactionNotFoundError": {247},
    "SubscriptionNotFoundError": {248},
    "ProductNotFoundError": {283},
    "PaymentStateError": {249, 250, 251, 252, 253, 266, 267, 275, 281, 282, 284},
}


def test_codes_map_to_the_documented_classes() -> None:
    for name, codes in EXPECTED_CLASSES.items():
        got = {c for c, e in ERROR_CODES.items() if e.cls.__name__ == name}
        assert got == codes, name
    rest = {c for c, e in ERROR_CODES.items() if e.cls.__name__ == "InvalidParameterError"}
    assert rest == set(ERROR_CODES) - set().union(*EXPECTED_CLASSES.values())


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
@pytest.mark.parametrize("as_int", [False, True], ids=["type-str", "type-int"])
async def test_every_code_raises_its_class_from_a_sample_body(
    kartra: AsyncKartra, api: respx.MockRouter, code: int, as_int: bool
) -> None:
    entry = ERROR_CODES[code]
    reply(api, {"status": "Error", "message": entry.message, "type": code if as_int else str(code)})
    with pytest.raises(entry.cls) as caught:
        await kartra.lead("a@b.co").assign_tag("T")
    err = caught.value
    assert type(err) is entry.cls
    assert (err.code, err.message) == (code, entry.message)
    # a one-action call's error is about that action
    assert (err.cmd, err.action_index) == ("assign_tag", 0)
    assert str(err) == f"assign_tag (action 0): {entry.message} (Kartra {code})"


async def test_unknown_code_is_a_plain_api_error(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(api, {"status": "Error", "message": "Something new", "type": "299"})
    with pytest.raises(KartraAPIError) as caught:
        await kartra.account.tags()
    assert type(caught.value) is KartraAPIError
    assert caught.value.code == 299


async def test_call_level_error_is_attributed_to_the_action_documenting_it(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(api, {"status": "Error", "message": "Lead already exists", "type": "244"})
    with pytest.raises(LeadExistsError) as caught:
        await kartra.lead("a@b.co").create().assign_tag("T")
    assert (caught.value.cmd, caught.value.action_index) == ("create_lead", 0)
    reply(api, {"status": "Error", "message": "API key not valid", "type": "203"})
    with pytest.raises(AuthenticationError) as auth:
        await kartra.lead("a@b.co").create().assign_tag("T")
    assert (auth.value.cmd, auth.value.action_index) == (None, None)
    assert str(auth.value) == "API key not valid (Kartra 203)"


def test_error_pickles() -> None:
    import pickle

    err = errors_module.error_from_code(212, "Tag does not exist", cmd="assign_tag", action_index=1)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is TagNotFoundError
    assert (again.code, again.cmd, again.action_index, str(again)) == (
        212, "assign_tag", 1, str(err),
    )  # fmt: skip


# ---- partial failure inside a Success (the docs' PHP sample answer)


async def test_partial_failure_inside_success(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(
        api,
        {
            "status": "Success",
            "lead": {"Status": "Found"},
            "actions": [
                {
                    "subscribe_lead_to_list": {
                        "status": "Success",
                        "message": "Lead subscribed in list My customers list",
                        "type": "101",
                    }
                },
                {
                    "assign_tag": {
                        "status": "Error",
                        "message": "tag does not exist. Nothing done",
                        "type": "212",
                    }
                },
                {
                    "give_points_to_lead": {
                        "status": "Error",
                        "message": "points is not a number. Nothing done",
                        "type": "227",
                    }
                },
            ],
        },
    )
    result = (
        await kartra.lead("JoeSmith@domain.com")
        .subscribe_list("My customers newsletter")
        .assign_tag("My customer")
        .give_points(12)
    )
    assert not result.ok
    assert [(a.index, a.cmd, a.ok, a.code) for a in result.actions] == [
        (0, "subscribe_lead_to_list", True, 101),
        (1, "assign_tag", False, 212),
        (2, "give_points_to_lead", False, 227),
    ]
    assert result.actions[0].message == "Lead subscribed in list My customers list"
    assert isinstance(result.actions[1].error, TagNotFoundError)
    with pytest.raises(ChainError) as caught:
        result.raise_for_errors()
    assert [(e.action_index, e.code) for e in caught.value.errors] == [(1, 212), (2, 227)]
    assert str(caught.value) == (
        "2 actions failed: assign_tag (action 1): tag does not exist. Nothing done (Kartra 212); "
        "give_points_to_lead (action 2): points is not a number. Nothing done (Kartra 227)"
    )
    assert caught.value.result is result


async def test_raise_for_errors_returns_the_result_when_ok(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(api, {"status": "Success", "message": "Tag added to lead", "type": "103"})
    result = await kartra.lead("a@b.co").assign_tag("T")
    assert result.raise_for_errors() is result
    assert (result.ok, result.actions[0].code, result.actions[0].message) == (
        True,
        103,
        "Tag added to lead",
    )


# ---- the documented success shapes


async def test_actions_as_php_object_with_numeric_keys(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(
        api,
        {
            "status": "Success",
            "actions": {
                "1": {"unassign_tag": {"status": "Success", "type": 104}},
                "0": {"assign_tag": {"status": "Success", "type": "103"}},
            },
        },
    )
    result = await kartra.lead("a@b.co").assign_tag("A").unassign_tag("B")
    assert [(a.cmd, a.code) for a in result.actions] == [("assign_tag", 103), ("unassign_tag", 104)]


async def test_search_lead_flat_form(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, {"status": "Success", "message": "Lead found", "lead_details": {"id": "39260"}})
    result = await kartra.lead("test@kartra.com").search()
    assert result.lead_id == 39260
    assert result.actions[0].data == LeadRef(id=39260)
    assert result.actions[0].message == "Lead found"


async def test_create_lead_wrapped_form(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(
        api,
        {
            "status": "Success",
            "actions": [{"create_lead": {"status": "Success", "lead_details": {"id": "1234"}}}],
        },
    )
    result = await kartra.lead("John@kartra.com").create()
    assert (result.ok, result.lead_id) == (True, 1234)


async def test_refund_without_actions_wrapper(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, {"refund_transaction": {"status": "Success", "transaction_refunded": "792354"}})
    assert await kartra.transactions.refund(738474) == RefundResult(transaction_refunded=792354)


async def test_cancel_transaction_without_wrapper(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(
        api,
        {
            "cancel_transaction": {
                "status": "Success",
                "transaction_subscription_id": "I-EV375R0H61SM",
                "transaction_internal_subscription_id": "14833",
            }
        },
    )
    assert await kartra.transactions.cancel(transaction_id=234161) == CancelResult(
        transaction_subscription_id="I-EV375R0H61SM", transaction_internal_subscription_id=14833
    )


async def test_details_without_status(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(
        api, {"get_subscription_details": {"subscription_details": {"subscription_id": "993037"}}}
    )
    assert await kartra.subscriptions.get(993037) == SubscriptionDetails(subscription_id=993037)
    reply(
        api,
        {
            "get_transaction_details": {
                "transaction_details": {"transaction_id": "99432", "transaction_type": "rebill"}
            }
        },
    )
    assert await kartra.transactions.get(99432) == RebillTransaction(
        transaction_id=99432, transaction_type=TransactionType.REBILL
    )


async def test_edit_subscription_wrapped(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(
        api,
        {
            "status": "Success",
            "actions": [
                {
                    "edit_subscription": {
                        "status": "Success",
                        "message": "Subscription modified",
                        "type": "115",
                    }
                }
            ],
        },
    )
    assert await kartra.subscriptions.edit(1, quantity=2) is None


@pytest.mark.parametrize(
    ("method", "key"),
    [
        ("tags", "account_tags"),
        ("lists", "account_lists"),
        ("sequences", "account_sequences"),
        ("pages", "account_pages"),
    ],
)
@pytest.mark.parametrize("wrapped", [False, True])
async def test_account_lists_both_forms(
    kartra: AsyncKartra, api: respx.MockRouter, method: str, key: str, wrapped: bool
) -> None:
    names = ["Name 1", "Name 2"]
    cmd = "retrieve_" + key
    if wrapped:
        reply(api, {"status": "Success", "actions": [{cmd: {"status": "Success", key: names}}]})
    else:
        reply(api, {"status": "Success", key: names})
    assert await getattr(kartra.account, method)() == names


async def test_retrieve_transactions_from_lead(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    rows = [
        {
            "transaction_id": "48110",
            "lead_id": "4174086",
            "lead_email": "example@email.com",
            "transaction_type": "sale",
        }
    ]
    reply(api, {"retrieve_transactions_from_lead": {"transaction_list": rows}})
    result = await kartra.lead("example@email.com").transactions()
    assert result.actions[0].data == [
        TransactionSummary(
            transaction_id=48110,
            transaction_type=TransactionType.SALE,
            lead_id=4174086,
            lead_email="example@email.com",
        )
    ]


async def test_search_transaction_true_or_not_found(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    reply(api, {"status": "Success", "message": "Transaction exists"})
    assert await kartra.transactions.search(1) is True
    reply(api, {"status": "Error", "message": "Transaction doesn't exist", "type": "247"})
    with pytest.raises(TransactionNotFoundError):
        await kartra.transactions.search(1)


async def test_get_lead_and_not_found(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, {"status": "Success", "lead_details": {"id": "1234", "email": "test@test.co"}})
    assert await kartra.get_lead("test@test.co") == Lead(id=1234, email="test@test.co")
    reply(api, {"status": "Error", "message": "No lead found", "type": "234"})
    with pytest.raises(LeadNotFoundError) as caught:
        await kartra.get_lead("nobody@test.co")
    assert (caught.value.code, caught.value.cmd) == (234, "get_lead")


# ---- bodies that are not Kartra answers


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not valid JSON"),
        (b'{"status": "Success", "actions": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b'["status", "Success"]', "JSON list, not an object"),
        (b'"Success"', "JSON str, not an object"),
        (b'{"message": "hello"}', "no 'status'"),
        (b'{"status": "Maybe"}', "unknown status 'Maybe'"),
        (b'{"status": "Success", "actions": "nope"}', "'actions' in Kartra's answer is not a list"),
        (b'{"status": "Success", "actions": []}', "answered 0 action results for 2 actions"),
        (
            b'{"status": "Success", "actions": [{"assign_tag": {}}, {"other": {}}]}',
            "action 1 of Kartra's answer is not a result of unassign_tag",
        ),
        (
            b'{"status": "Success", "actions": [{"assign_tag": 5}, {"unassign_tag": {}}]}',
            "action 0 (assign_tag) is not an object",
        ),
        (
            b'{"status": "Success", "actions": [{"assign_tag": {"type": "abc"}}, {"unassign_tag": {}}]}',
            "action 0 (assign_tag) has type 'abc'",
        ),
        (b'{"status": "Error", "type": [1]}', "Kartra's error has type [1]"),
        (b'{"status": "Success"}', "no per-action results for 2 actions"),
    ],
)
async def test_malformed_bodies(
    kartra: AsyncKartra, api: respx.MockRouter, body: bytes, reason: str
) -> None:
    reply(api, body)
    with pytest.raises(KartraResponseError) as caught:
        await kartra.lead("a@b.co").assign_tag("A").unassign_tag("B")
    err = caught.value
    assert reason in err.reason
    assert err.status_code == 200
    assert err.excerpt == body[:200].decode("utf-8", "replace")


async def test_json_body_with_wrong_content_type_is_read(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    api.post("").mock(
        return_value=httpx.Response(
            200,
            text='{"status":"Success","account_tags":["A"]}',
            headers={"content-type": "text/html"},
        )
    )
    assert await kartra.account.tags() == ["A"]


async def test_long_body_excerpt_is_short(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, b"x" * 5000)
    with pytest.raises(KartraResponseError) as caught:
        await kartra.account.tags()
    assert caught.value.excerpt == "x" * 200


async def test_http_errors(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    reply(api, b"Too many requests", status=429)
    with pytest.raises(RateLimitError):
        await kartra.account.tags()
    api.post("").mock(return_value=httpx.Response(429, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimitError) as limited:
        await kartra.account.tags()
    assert limited.value.retry_after == 2.0
    reply(api, b"<h1>Service Unavailable</h1>", status=503)
    with pytest.raises(KartraServerError) as server:
        await kartra.account.tags()
    assert (server.value.status_code, server.value.excerpt) == (503, "<h1>Service Unavailable</h1>")
    reply(api, b"Forbidden", status=403)
    with pytest.raises(KartraResponseError) as forbidden:
        await kartra.account.tags()
    assert type(forbidden.value) is KartraResponseError
    assert forbidden.value.status_code == 403


# ---- get_lead by id or by email


async def test_get_lead_by_id(kartra: AsyncKartra, api: respx.MockRouter) -> None:
    route = reply(
        api,
        {
            "status": "Success",
            "lead_details": {
                "id": "1027",
                "email": "wp@example.com",
                "notes": "Called on Monday",
                "score": 12,
                "blacklisted": 1,
                "tags": [{"tag_name": "Member"}],
            },
        },
    )
    lead = await kartra.get_lead(id=1027)
    request = route.calls.last.request
    assert request.content.decode().endswith("&get_lead%5Bid%5D=1027")
    assert lead == Lead(
        id=1027,
        email="wp@example.com",
        notes="Called on Monday",
        score=12,
        blacklisted=True,
        tags=["Member"],
    )
    await kartra.get_lead("wp@example.com")
    assert route.calls.last.request.content.decode().endswith(
        "&get_lead%5Bemail%5D=wp%40example.com"
    )


async def test_get_lead_reads_the_docs_strings_and_the_table_integers(
    kartra: AsyncKartra, api: respx.MockRouter
) -> None:
    """The docs' sample sends "0" strings, their field table says integer: both read."""
    for score, blacklisted in (("7", "1"), (7, 1), ("0", "0"), (0, 0)):
        reply(
            api,
            {
                "status": "Success",
                "lead_details": {"id": 1, "score": score, "blacklisted": blacklisted},
            },
        )
        lead = await kartra.get_lead(id=1)
        assert (lead.score, lead.blacklisted) == (int(score), bool(int(blacklisted)))


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({}, "email", "one of email or id is required"),
        ({"email": "a@b.co", "id": 5}, "email", "give only one of email or id"),
        ({"id": 0}, "id", "must be >= 1 (got 0)"),
        ({"id": "x"}, "id", "must be an integer (got 'x')"),
        ({"id": True}, "id", "must be an integer (got a bool)"),
        ({"email": "nope"}, "email", "must be an email address like name@example.com (got 'nope')"),
    ],
)
async def test_get_lead_needs_exactly_one_of_email_or_id(
    kartra: AsyncKartra, api: respx.MockRouter, kwargs: dict[str, Any], field: str, rule: str
) -> None:
    route = reply(api, {"status": "Success", "lead_details": {"id": "1"}})
    with pytest.raises(KartraValidationError) as caught:
        await kartra.get_lead(**kwargs)
    assert (caught.value.cmd, caught.value.field, caught.value.rule) == ("get_lead", field, rule)
    assert route.call_count == 0


# ---- every answer shape the fake can give reads the same


def _style_body(
    style: str,
    cmds: list[str],
    results: list[dict[str, Any]],
    lead_status: str | None,
) -> dict[str, Any]:
    lead_scoped = lead_status is not None
    return envelope(style, cmds, results, lead_status, lead_scoped=lead_scoped)


TAG_OK = {"status": "Success", "message": "Tag added to lead", "type": "103"}
TAG_MISSING = {"status": "Error", "message": "Tag does not exist", "type": "212"}
LIST_OK = {"status": "Success", "message": "Lead subscribed to list", "type": "101"}
CALENDAR_OK = {"status": "Success", "message": "Lead subscribed to class", "type": "112"}


@pytest.mark.parametrize("style", RESPONSE_STYLES)
async def test_single_lead_action_in_every_style(
    kartra: AsyncKartra, api: respx.MockRouter, style: str
) -> None:
    reply(api, _style_body(style, ["assign_tag"], [TAG_OK], "Found"))
    result = await kartra.lead("a@b.co").assign_tag("VIP")
    assert [(a.cmd, a.ok, a.code, a.message) for a in result.actions] == [
        ("assign_tag", True, 103, "Tag added to lead")
    ]
    reply(api, _style_body(style, ["calendar_subscribe"], [CALENDAR_OK], "Found"))
    result = await kartra.lead("a@b.co").subscribe_calendar("Coaching", "Call")
    assert [(a.cmd, a.ok, a.code) for a in result.actions] == [("calendar_subscribe", True, 112)]


@pytest.mark.parametrize("style", RESPONSE_STYLES)
async def test_single_failing_action_raises_in_every_style(
    kartra: AsyncKartra, api: respx.MockRouter, style: str
) -> None:
    reply(api, _style_body(style, ["assign_tag"], [TAG_MISSING], "Found"))
    with pytest.raises(TagNotFoundError) as caught:
        await kartra.lead("a@b.co").assign_tag("Nope")
    assert (caught.value.cmd, caught.value.action_index, caught.value.code) == (
        "assign_tag",
        0,
        212,
    )
    assert str(caught.value) == "assign_tag (action 0): Tag does not exist (Kartra 212)"


@pytest.mark.parametrize("style", RESPONSE_STYLES)
async def test_partial_failure_in_every_style(
    kartra: AsyncKartra, api: respx.MockRouter, style: str
) -> None:
    reply(
        api,
        _style_body(
            style, ["subscribe_lead_to_list", "assign_tag"], [LIST_OK, TAG_MISSING], "Found"
        ),
    )
    result = await kartra.lead("a@b.co").subscribe_list("News").assign_tag("Nope")
    assert [(a.cmd, a.ok, a.code) for a in result.actions] == [
        ("subscribe_lead_to_list", True, 101),
        ("assign_tag", False, 212),
    ]
    assert [type(e) for e in result.errors] == [TagNotFoundError]


@pytest.mark.parametrize("style", RESPONSE_STYLES)
async def test_lead_cmds_in_every_style(
    kartra: AsyncKartra, api: respx.MockRouter, style: str
) -> None:
    reply(
        api,
        _style_body(
            style, ["create_lead"], [{"status": "Success", "lead_details": {"id": "77"}}], "Created"
        ),
    )
    created = await kartra.lead("a@b.co").create()
    assert (created.ok, created.lead_id, created.actions[0].data) == (True, 77, LeadRef(77))
    found = {"status": "Success", "message": "Lead found", "lead_details": {"id": "78"}}
    reply(api, _style_body(style, ["search_lead"], [found], "Found"))
    searched = await kartra.lead("a@b.co").search()
    assert (searched.lead_id, searched.actions[0].data, searched.actions[0].message) == (
        78,
        LeadRef(78),
        "Lead found",
    )
    rows = [
        {"transaction_id": "5", "lead_id": "78", "lead_email": "a@b.co", "transaction_type": "sale"}
    ]
    reply(
        api,
        _style_body(
            style, ["retrieve_transactions_from_lead"], [{"transaction_list": rows}], "Found"
        ),
    )
    listed = await kartra.lead("a@b.co").transactions()
    assert listed.actions[0].data == [
        TransactionSummary(
            transaction_id=5,
            transaction_type=TransactionType.SALE,
            lead_id=78,
            lead_email="a@b.co",
        )
    ]


@pytest.mark.parametrize("style", RESPONSE_STYLES)
async def test_account_calls_in_every_style(
    kartra: AsyncKartra, api: respx.MockRouter, style: str
) -> None:
    reply(api, _style_body(style, ["retrieve_account_tags"], [{"account_tags": ["A", "B"]}], None))
    assert await kartra.account.tags() == ["A", "B"]
    refunded = {"status": "Success", "transaction_refunded": "792354"}
    reply(api, _style_body(style, ["refund_transaction"], [refunded], None))
    assert await kartra.transactions.refund(738474) == RefundResult(transaction_refunded=792354)
    modified = {"status": "Success", "message": "Subscription modified", "type": "115"}
    reply(api, _style_body(style, ["edit_subscription"], [modified], None))
    assert await kartra.subscriptions.edit(1, quantity=2) is None
    details = {"subscription_details": {"subscription_id": "993037"}}
    reply(api, _style_body(style, ["get_subscription_details"], [details], None))
    assert await kartra.subscriptions.get(993037) == SubscriptionDetails(subscription_id=993037)
    missing = {"status": "Error", "message": "Transaction doesn't exist", "type": "247"}
    reply(api, _style_body(style, ["search_transaction"], [missing], None))
    with pytest.raises(TransactionNotFoundError):
        await kartra.transactions.search(1)
