"""A lead as get_lead (and the outbound webhooks) describe it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from ._base import KartraIntEnum, KartraStrEnum, raw_field, wire

__all__ = [
    "CalendarEvent",
    "CalendarHost",
    "CalendarSubscription",
    "CalendarSubscriptionStatus",
    "CustomFieldType",
    "CustomFieldValue",
    "FieldOption",
    "GdprStatus",
    "Lead",
    "LeadRef",
    "LeadSource",
    "LeadTransaction",
    "ListMembership",
    "Membership",
    "QuestionResult",
    "SequenceMembership",
    "SequenceStatus",
    "SurveyQuestion",
    "SurveyResult",
    "SurveyType",
    "TransactionType",
]


class GdprStatus(KartraIntEnum):
    OFF = 0  #: the account has GDPR deactivated
    NOT_SUBJECT = 1  #: the lead's IP is from a country not subject to GDPR
    ACCEPTED = 2
    NOT_ACCEPTED = 3
    UNKNOWN_LOCATION = 4  #: the lead's location could not be determined
    PENDING = 5


class LeadSource(KartraStrEnum):
    SINGLE_OPTIN = "single-optin"
    DOUBLE_OPTIN = "double-optin"
    HELPDESK = "helpdesk"
    AFFILIATE_SIGNUP = "affiliate-signup"
    CHECKOUT = "checkout"
    CHECKOUT_FIRST = "checkout-first"
    IMPORT = "import"
    API = "api"
    MANUAL = "manual"


class TransactionType(KartraStrEnum):
    SALE = "sale"
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    CHARGEBACK = "chargeback"
    REBILL = "rebill"
    FAILED = "failed"
    CANCELLATION = "cancellation"


class CustomFieldType(KartraStrEnum):
    INPUT_FIELD = "input_field"
    TEXT_AREA = "text_area"
    DROP_DOWN = "drop_down"
    RADIO_BUTTON = "radio_button"
    CHECKBOX = "checkbox"


class SequenceStatus(KartraStrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"


class CalendarSubscriptionStatus(KartraStrEnum):
    ACTIVE = "Active"
    PENDING = "Pending"
    COMPLETED = "Completed"
    DECLINED = "Declined"
    CANCELLED = "Cancelled"


class SurveyType(KartraIntEnum):
    SURVEY = 1
    QUIZ = 2


class QuestionResult(KartraIntEnum):
    NOT_SCORED = 0
    CORRECT = 1
    INCORRECT = 2


@attrs.frozen
class LeadRef:
    """The lead a create_lead, edit_lead or search_lead action found or made."""

    id: int


@attrs.frozen
class FieldOption:
    """One option of a drop_down, radio_button or checkbox field (or a survey answer)."""

    id: int = wire("option_id")
    value: str = wire("option_value")


@attrs.frozen
class ListMembership:
    name: str = wire("list_name")
    active: bool = wire("active", default=True)


@attrs.frozen
class SequenceMembership:
    # the docs' table says sequence_name, their sample sends tree_name: both are read
    name: str = wire("sequence_name", "tree_name")
    step: str | None = wire("step", default=None)
    status: SequenceStatus | None = wire("status", default=None)


@attrs.frozen
class Membership:
    name: str = wire("name")
    level_name: str | None = wire("level_name", default=None)
    active: bool = wire("active", default=True)


@attrs.frozen
class LeadTransaction:
    # the docs' table says id / price_point, their sample sends transaction_id /
    # product_price_point: both are read
    id: int = wire("transaction_id", "id")
    product_name: str | None = wire("product_name", default=None)
    price_point: int | None = wire("product_price_point", "price_point", default=None)
    type: TransactionType | None = wire("transaction_type", default=None)
    amount: Decimal | None = wire("transaction_amount", default=None)
    date: datetime | None = wire("transaction_date", default=None)


@attrs.frozen
class CustomFieldValue:
    """A lead's value in one custom field: text, or the chosen options."""

    id: int = wire("field_id")
    identifier: str = wire("field_identifier")
    type: CustomFieldType = wire("field_type")
    value: str | list[FieldOption] = wire("field_value", default="")

    @property
    def options(self) -> list[FieldOption]:
        """The chosen options ([] for text fields)."""
        return [] if isinstance(self.value, str) else self.value

    @property
    def text(self) -> str:
        """The text value, or the chosen options' values joined by ", "."""
        if isinstance(self.value, str):
            return self.value
        return ", ".join(option.value for option in self.value)


@attrs.frozen
class CalendarHost:
    first_name: str | None = wire("host_first_name", default=None)
    last_name: str | None = wire("host_last_name", default=None)
    email: str | None = wire("host_email_address", default=None)


@attrs.frozen
class CalendarEvent:
    date: datetime = wire("event_date")  #: US Eastern
    duration: int | None = wire("event_duration", default=None)  #: minutes


@attrs.frozen
class CalendarSubscription:
    calendar_id: int = wire("calendar_id")
    calendar_name: str | None = wire("calendar_name", default=None)
    class_id: int | None = wire("class_id", default=None)
    class_name: str | None = wire("class_name", default=None)
    subscription_id: int | None = wire("subscription_id", "calendar_subscription_id", default=None)
    status: CalendarSubscriptionStatus | None = wire("calendar_subscription_status", default=None)
    vendor_id: int | None = wire("vendor_id", default=None)
    vendor_timezone: str | None = wire("vendor_timezone", default=None)
    hosts: list[CalendarHost] = wire("hosts", factory=list)
    events: list[CalendarEvent] = wire("events", factory=list)
    ics_calendar_link: str | None = wire("ics_calendar_link", default=None)


@attrs.frozen
class SurveyQuestion:
    id: int = wire("question_id")
    title: str | None = wire("question_title", default=None)
    correct: QuestionResult | None = wire("question_correct", default=None)
    answers: list[FieldOption] = wire("answers", factory=list)


@attrs.frozen
class SurveyResult:
    id: int = wire("survey_id")
    name: str | None = wire("survey_name", default=None)
    type: SurveyType | None = wire("survey_type", default=None)
    score: int | None = wire("survey_score", default=None)  #: None for "N/A" (surveys)
    completion_time: int | None = wire("survey_completion_time", default=None)  #: seconds
    completion_date: datetime | None = wire("survey_completion_date", default=None)
    questions: list[SurveyQuestion] = wire("questions", factory=list)


@attrs.frozen
class Lead:
    """Everything Kartra returns about one lead (get_lead, webhook events)."""

    id: int
    email: str | None = None
    first_name: str | None = None
    middle_name: str | None = None
    last_name: str | None = None
    last_name2: str | None = None
    company: str | None = None
    sales_tax_id: str | None = None
    username: str | None = None
    date_joined: datetime | None = None  #: US Eastern
    phone_country_code: str | None = None
    phone: str | None = None
    ip: str | None = None
    ip_country: str | None = None
    address: str | None = None
    zip: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    lead_picture: str | None = None
    website: str | None = None
    facebook: str | None = None
    twitter: str | None = None
    linkedin: str | None = None
    google_plus: str | None = None
    lead_preferred_time_zone: str | None = None
    notes: str | None = None
    score: int = 0
    source: LeadSource | None = None
    source_id: int | None = None
    referring_id: int | None = None
    blacklisted: bool = False
    lead_deleted: bool | None = None
    lead_deleted_date: datetime | None = None
    gdpr_lead_status: GdprStatus | None = None
    gdpr_lead_status_date: datetime | None = None
    gdpr_lead_status_ip: str | None = None
    gdpr_lead_communications: bool | None = None
    tags: list[str] = attrs.field(factory=list)
    lists: list[ListMembership] = attrs.field(factory=list)
    sequences: list[SequenceMembership] = attrs.field(factory=list)
    transactions: list[LeadTransaction] = attrs.field(factory=list)
    memberships: list[Membership] = attrs.field(factory=list)
    custom_fields: list[CustomFieldValue] = attrs.field(factory=list)
    calendars: list[CalendarSubscription] = attrs.field(factory=list)
    surveys: list[SurveyResult] = attrs.field(factory=list)
    raw: Mapping[str, Any] = raw_field()

    def custom_field(self, identifier: str) -> CustomFieldValue | None:
        """The lead's value in the custom field with that identifier, or None."""
        for field in self.custom_fields:
            if field.identifier == identifier:
                return field
        return None
