"""The outbound API's events: one frozen class per action (structured by convert.py),
with the lead as the same Lead model get_lead gives. Parsing lives in kartra_async.webhooks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from ._base import raw_field
from .lead import CalendarSubscription, Lead, SurveyResult, TransactionType
from .payments import Transaction

__all__ = [
    "EVENT_TYPES",
    "AffiliateSignup",
    "CalendarCancelled",
    "CalendarCompleted",
    "CalendarSubscribed",
    "DeadLetter",
    "Event",
    "EventTransaction",
    "FormFilled",
    "JvSignup",
    "ListSubscribed",
    "ListUnsubscribed",
    "MembershipGranted",
    "MembershipRevoked",
    "PageVisited",
    "ProductBought",
    "ScoreReached",
    "SequenceCompleted",
    "SequenceSubscribed",
    "SequenceUnsubscribed",
    "SplitTestLinkClicked",
    "SubscriptionCancelled",
    "SurveyCompleted",
    "TagAssigned",
    "TagUnassigned",
    "TransactionRefunded",
    "UnknownEvent",
    "VideoCompleted",
    "VideoPlayed",
    "WebhookForm",
    "WebhookList",
    "WebhookMembership",
    "WebhookPage",
    "WebhookProduct",
    "WebhookSequence",
    "WebhookSplitTestLink",
    "WebhookTag",
    "WebhookVideo",
]


# ---- what action_details hold


@attrs.frozen
class WebhookList:
    list_id: int | None = None
    list_name: str | None = None


@attrs.frozen
class WebhookTag:
    tag_id: int | None = None
    tag_name: str | None = None


@attrs.frozen
class WebhookSequence:
    sequence_id: int | None = None
    sequence_name: str | None = None


@attrs.frozen
class WebhookMembership:
    membership_id: int | None = None
    membership_name: str | None = None
    level_id: int | None = None
    level_name: str | None = None


@attrs.frozen
class WebhookForm:
    form_id: int | None = None
    form_name: str | None = None


@attrs.frozen
class WebhookVideo:
    video_id: int | None = None
    video_name: str | None = None


@attrs.frozen
class WebhookPage:
    kartra_page_id: int | None = None
    kartra_page_name: str | None = None


@attrs.frozen
class WebhookSplitTestLink:
    page_split_test_link_id: int | None = None
    page_split_test_link_name: str | None = None


@attrs.frozen
class WebhookProduct:
    product_id: int | None = None
    product_name: str | None = None
    official_product_name: str | None = None


@attrs.frozen(kw_only=True)
class EventTransaction(Transaction):
    """The transaction of buy_product / cancel_subscription / refund events; the type
    may be absent in events, and amounts are Decimal."""

    transaction_type: TransactionType | None = None  # type: ignore[assignment]
    transaction_full_amount: Decimal | None = None
    transaction_quantity: int | None = None


# ---- the events


@attrs.frozen(kw_only=True)
class Event:
    """One outbound API event: what happened (`action`) to which `lead`."""

    ACTION: ClassVar[str] = ""
    action: str
    lead: Lead
    raw: Mapping[str, Any] = raw_field()

    @property
    def dedupe_key(self) -> str:
        """A hash of the whole body: equal for two deliveries exactly when their JSON is
        equal (key order and whitespace aside). Kartra sends no event id, so a genuine
        repeat with an identical body (same lead fields, same details) has this key too."""
        canonical = json.dumps(self.raw, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# One class per action, so each has a name users import, match on and type-check.


@attrs.frozen(kw_only=True)
class ListSubscribed(Event):
    """list_subscription"""

    ACTION: ClassVar[str] = "list_subscription"
    list: WebhookList | None = None


@attrs.frozen(kw_only=True)
class ListUnsubscribed(Event):
    """list_unsubscription"""

    ACTION: ClassVar[str] = "list_unsubscription"
    list: WebhookList | None = None


@attrs.frozen(kw_only=True)
class TagAssigned(Event):
    """assign_tag"""

    ACTION: ClassVar[str] = "assign_tag"
    tag: WebhookTag | None = None


@attrs.frozen(kw_only=True)
class TagUnassigned(Event):
    """unassign_tag"""

    ACTION: ClassVar[str] = "unassign_tag"
    tag: WebhookTag | None = None


@attrs.frozen(kw_only=True)
class SequenceSubscribed(Event):
    """sequence_subscription"""

    ACTION: ClassVar[str] = "sequence_subscription"
    sequence: WebhookSequence | None = None


@attrs.frozen(kw_only=True)
class SequenceUnsubscribed(Event):
    """sequence_unsubscription"""

    ACTION: ClassVar[str] = "sequence_unsubscription"
    sequence: WebhookSequence | None = None


@attrs.frozen(kw_only=True)
class SequenceCompleted(Event):
    """sequence_completion"""

    ACTION: ClassVar[str] = "sequence_completion"
    sequence: WebhookSequence | None = None


@attrs.frozen(kw_only=True)
class MembershipGranted(Event):
    """membership_granted"""

    ACTION: ClassVar[str] = "membership_granted"
    membership: WebhookMembership | None = None


@attrs.frozen(kw_only=True)
class MembershipRevoked(Event):
    """membership_revoked"""

    ACTION: ClassVar[str] = "membership_revoked"
    membership: WebhookMembership | None = None


@attrs.frozen(kw_only=True)
class ProductBought(Event):
    """buy_product"""

    ACTION: ClassVar[str] = "buy_product"
    transaction_details: EventTransaction | None = None


@attrs.frozen(kw_only=True)
class SubscriptionCancelled(Event):
    """cancel_subscription"""

    ACTION: ClassVar[str] = "cancel_subscription"
    transaction_details: EventTransaction | None = None


@attrs.frozen(kw_only=True)
class TransactionRefunded(Event):
    """A refund. Kartra does not publish this event's action name; "refund" is assumed."""

    ACTION: ClassVar[str] = "refund"
    transaction_details: EventTransaction | None = None


@attrs.frozen(kw_only=True)
class CalendarSubscribed(Event):
    """calendar_subscribe"""

    ACTION: ClassVar[str] = "calendar_subscribe"
    calendar: CalendarSubscription | None = None


@attrs.frozen(kw_only=True)
class CalendarCancelled(Event):
    """calendar_cancel"""

    ACTION: ClassVar[str] = "calendar_cancel"
    calendar: CalendarSubscription | None = None


@attrs.frozen(kw_only=True)
class CalendarCompleted(Event):
    """calendar_complete"""

    ACTION: ClassVar[str] = "calendar_complete"
    calendar: CalendarSubscription | None = None


@attrs.frozen(kw_only=True)
class SurveyCompleted(Event):
    """survey_complete"""

    ACTION: ClassVar[str] = "survey_complete"
    survey: SurveyResult | None = None


@attrs.frozen(kw_only=True)
class FormFilled(Event):
    """filled_form"""

    ACTION: ClassVar[str] = "filled_form"
    form: WebhookForm | None = None


@attrs.frozen(kw_only=True)
class VideoPlayed(Event):
    """video_play"""

    ACTION: ClassVar[str] = "video_play"
    video: WebhookVideo | None = None


@attrs.frozen(kw_only=True)
class VideoCompleted(Event):
    """video_complete"""

    ACTION: ClassVar[str] = "video_complete"
    video: WebhookVideo | None = None


@attrs.frozen(kw_only=True)
class PageVisited(Event):
    """kartra_page_visit"""

    ACTION: ClassVar[str] = "kartra_page_visit"
    kartra_page: WebhookPage | None = None


@attrs.frozen(kw_only=True)
class SplitTestLinkClicked(Event):
    """click_page_split_test_link"""

    ACTION: ClassVar[str] = "click_page_split_test_link"
    page_split_test_link: WebhookSplitTestLink | None = None


@attrs.frozen(kw_only=True)
class ScoreReached(Event):
    """reaches_score"""

    ACTION: ClassVar[str] = "reaches_score"
    points: int | None = None


@attrs.frozen(kw_only=True)
class AffiliateSignup(Event):
    """affiliate_signup"""

    ACTION: ClassVar[str] = "affiliate_signup"
    product: WebhookProduct | None = None


@attrs.frozen(kw_only=True)
class JvSignup(Event):
    """jv_signup"""

    ACTION: ClassVar[str] = "jv_signup"
    product: WebhookProduct | None = None


@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """An action this SDK does not know (Kartra adds events without notice)."""

    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A callback the router acknowledged (background mode) but could not handle: what
    its `on_failure` hook receives. Keep `body` and `content_type` somewhere durable;
    to replay, POST the body with that content type to the callback URL again."""

    body: bytes  #: the raw POST body, byte for byte
    content_type: str  #: "application/json" (an event) or a form post (an IPN)
    received: Event | Transaction  #: the parsed callback
    key: str  #: its dedupe key (see kartra_async.webhooks.dedupe_key)
    attempts: int  #: how many times the failing handlers ran
    handlers: tuple[str, ...]  #: the names of the handlers that never succeeded
    error: BaseException | None  #: the last handler exception (None: cancelled at shutdown)
    reason: str  #: why it ended here, for humans


EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.ACTION: cls
    for cls in (
        ListSubscribed, ListUnsubscribed, TagAssigned, TagUnassigned, SequenceSubscribed,
        SequenceUnsubscribed, SequenceCompleted, MembershipGranted, MembershipRevoked,
        ProductBought, SubscriptionCancelled, TransactionRefunded, CalendarSubscribed,
        CalendarCancelled, CalendarCompleted, SurveyCompleted, FormFilled, VideoPlayed,
        VideoCompleted, PageVisited, SplitTestLinkClicked, ScoreReached, AffiliateSignup,
        JvSignup,
    )
}  # fmt: skip
"""action -> Event class, for the 24 events of OUTBOUND_EVENTS.md."""

for _cls in (*EVENT_TYPES.values(), UnknownEvent, EventTransaction):
    attrs.resolve_types(_cls)
