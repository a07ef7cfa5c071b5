"""Structuring the docs' full get_lead sample: our cattrs converter vs pydantic v2
models of the same shape with the same normalisation, in one run.

Target: cattrs <= 2.0 x pydantic v2 (see BENCHMARKS.md for why). Also shown, not a
target: the detailed-validation converter that explains a failure. Needs pydantic (v2).
Exit status 1 when the target is missed or a result is wrong.
"""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from _common import GET_LEAD_SAMPLE, compare, interleaved, verdict

from kartra_async._convert import converter, make_converter
from kartra_async.models import Lead

try:
    from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field
except ImportError:  # pragma: no cover
    sys.exit("benchmarks/models.py needs pydantic v2: pip install pydantic")

NY = ZoneInfo("America/New_York")


def _none(v: Any) -> Any:
    return None if v in ("N/A", "", "0000-00-00 00:00:00") else v


def _date(v: Any) -> Any:
    v = _none(v)
    return None if v is None else datetime.fromisoformat(v).replace(tzinfo=NY)


def _tags(v: Any) -> Any:
    return [t["tag_name"] if isinstance(t, dict) else t for t in v]


OptInt = Annotated[int | None, BeforeValidator(_none)]
OptDate = Annotated[datetime | None, BeforeValidator(_date)]
Date = Annotated[datetime, BeforeValidator(_date)]
OptText = Annotated[str | None, BeforeValidator(lambda v: None if v == "N/A" else v)]


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class PFieldOption(_M):
    id: int = Field(alias="option_id")
    value: str = Field(alias="option_value")


class PList(_M):
    name: str = Field(alias="list_name")
    active: bool = True


class PSequence(_M):
    name: str = Field(validation_alias=AliasChoices("sequence_name", "tree_name"))
    step: str | None = None
    status: str | None = None


class PMembership(_M):
    name: str
    level_name: str | None = None
    active: bool = True


class PTransaction(_M):
    id: int = Field(validation_alias=AliasChoices("transaction_id", "id"))
    product_name: str | None = None
    price_point: OptInt = Field(
        None, validation_alias=AliasChoices("product_price_point", "price_point")
    )
    type: str | None = Field(None, alias="transaction_type")
    amount: Decimal | None = Field(None, alias="transaction_amount")
    date: OptDate = Field(None, alias="transaction_date")


class PCustomField(_M):
    id: int = Field(alias="field_id")
    identifier: str = Field(alias="field_identifier")
    type: str = Field(alias="field_type")
    value: str | list[PFieldOption] = Field("", alias="field_value")


class PHost(_M):
    first_name: str | None = Field(None, alias="host_first_name")
    last_name: str | None = Field(None, alias="host_last_name")
    email: str | None = Field(None, alias="host_email_address")


class PEvent(_M):
    date: Date = Field(alias="event_date")
    duration: OptInt = Field(None, alias="event_duration")


class PCalendar(_M):
    calendar_id: int
    calendar_name: str | None = None
    class_id: OptInt = None
    class_name: str | None = None
    subscription_id: OptInt = None
    status: str | None = Field(None, alias="calendar_subscription_status")
    vendor_id: OptInt = None
    vendor_timezone: str | None = None
    hosts: list[PHost] = []
    events: list[PEvent] = []
    ics_calendar_link: str | None = None


class PQuestion(_M):
    id: int = Field(alias="question_id")
    title: str | None = Field(None, alias="question_title")
    correct: OptInt = Field(None, alias="question_correct")
    answers: list[PFieldOption] = []


class PSurvey(_M):
    id: int = Field(alias="survey_id")
    name: str | None = Field(None, alias="survey_name")
    type: OptInt = Field(None, alias="survey_type")
    score: OptInt = Field(None, alias="survey_score")
    completion_time: OptInt = Field(None, alias="survey_completion_time")
    completion_date: OptDate = Field(None, alias="survey_completion_date")
    questions: list[PQuestion] = []


class PLead(_M):
    id: int
    email: OptText = None
    first_name: OptText = None
    middle_name: OptText = None
    last_name: OptText = None
    last_name2: OptText = None
    company: OptText = None
    sales_tax_id: OptText = None
    username: OptText = None
    date_joined: OptDate = None
    phone_country_code: OptText = None
    phone: OptText = None
    ip: OptText = None
    ip_country: OptText = None
    address: OptText = None
    zip: OptText = None
    city: OptText = None
    state: OptText = None
    country: OptText = None
    lead_picture: OptText = None
    website: OptText = None
    facebook: OptText = None
    twitter: OptText = None
    linkedin: OptText = None
    google_plus: OptText = None
    lead_preferred_time_zone: OptText = None
    notes: OptText = None
    score: int = 0
    source: str | None = None
    source_id: OptInt = None
    referring_id: OptInt = None
    blacklisted: bool = False
    lead_deleted: bool | None = None
    lead_deleted_date: OptDate = None
    gdpr_lead_status: OptInt = None
    gdpr_lead_status_date: OptDate = None
    gdpr_lead_status_ip: OptText = None
    gdpr_lead_communications: bool | None = None
    tags: Annotated[list[str], BeforeValidator(_tags)] = []
    lists: list[PList] = []
    sequences: list[PSequence] = []
    transactions: list[PTransaction] = []
    memberships: list[PMembership] = []
    custom_fields: list[PCustomField] = []
    calendars: list[PCalendar] = []
    surveys: list[PSurvey] = []


def main() -> int:
    data = GET_LEAD_SAMPLE["lead_details"]
    explaining = make_converter(detailed_validation=True)
    ours = converter.structure(data, Lead)
    theirs = PLead.model_validate(data)
    correct = (
        ours.id == theirs.id == 1234
        and ours.date_joined == theirs.date_joined
        and [t.amount for t in ours.transactions] == [t.amount for t in theirs.transactions]
        and ours.tags == theirs.tags == ["test"]
        and len(ours.calendars[1].events) == len(theirs.calendars[1].events) == 2
        and ours.surveys[0].score is None
        and theirs.surveys[0].score is None
        and explaining.structure(data, Lead) == ours
    )
    times = interleaved(
        {
            "pydantic": lambda: PLead.model_validate(data),
            "cattrs": lambda: converter.structure(data, Lead),
            "detailed": lambda: explaining.structure(data, Lead),
        },
        number=1000,
    )
    ratio, _ = compare(
        "Structuring the docs' get_lead sample",
        "us/lead",
        ("pydantic v2", times["pydantic"]),
        ("kartra_async (cattrs generated hooks)", times["cattrs"]),
        ("same, detailed validation (error path only)", times["detailed"]),
    )
    ok = verdict(correct, "both give the same lead")
    ok &= verdict(ratio <= 2.0, f"cattrs/pydantic ratio {ratio:.2f} <= 2.0")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
