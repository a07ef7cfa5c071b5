"""kartra_async: the async Python SDK for Kartra's API.

Everything a program usually needs is importable from here: the client, chains and
their results, the models its calls return, every exception, the retry policy, the rate
limiters and the bulk job's types. The full set of models is in `kartra_async.models`,
callback parsing in `kartra_async.webhooks`, the fake server in `kartra_async.testing`.
"""

from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING, Any

from ._bulk import FanOut, ItemState, Outcome, Summary
from ._chain import LeadChain
from ._client import AsyncKartra
from ._commands import UNTIL_CANCELLED
from ._retry import RetryEvent, RetryPolicy
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__ as __version__
from .errors import (
    ERROR_CODES,
    AlreadyExistsError,
    AmbiguousResultError,
    AuthenticationError,
    CalendarNotFoundError,
    CalendarSubscriptionNotFoundError,
    ChainError,
    ClassNotFoundError,
    CustomFieldExistsError,
    InvalidParameterError,
    JournalError,
    JournalLockedError,
    JournalLostError,
    JournalMismatchError,
    KartraAPIError,
    KartraConnectionError,
    KartraDecodeError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    KartraWebhookError,
    LeadDeletedError,
    LeadExistsError,
    LeadNotFoundError,
    LimiterUnavailableError,
    ListNotFoundError,
    NotFoundError,
    PaymentStateError,
    PermissionDeniedError,
    ProductNotFoundError,
    RateLimitError,
    RequestFormatError,
    SequenceNotFoundError,
    StepNotFoundError,
    SubscriptionNotFoundError,
    TagNotFoundError,
    TransactionNotFoundError,
)
from .limits import Limiter, Priority
from .models import (
    ActionResult,
    CancelResult,
    ChainResult,
    CustomField,
    Lead,
    LeadRef,
    RefundResult,
    SubscriptionDetails,
    SubscriptionSummary,
    Transaction,
    TransactionSummary,
)

if TYPE_CHECKING:
    from .limits.redis import RedisLimiter

# silent unless the application configures logging (no "last resort" output to stderr)
_logging.getLogger("kartra_async").addHandler(_logging.NullHandler())

__all__ = [
    "ERROR_CODES",
    "NOT_GIVEN",
    "UNTIL_CANCELLED",
    "ActionResult",
    "AlreadyExistsError",
    "AmbiguousResultError",
    "AsyncKartra",
    "AuthenticationError",
    "CalendarNotFoundError",
    "CalendarSubscriptionNotFoundError",
    "CancelResult",
    "ChainError",
    "ChainResult",
    "ClassNotFoundError",
    "CustomField",
    "CustomFieldExistsError",
    "FanOut",
    "InvalidParameterError",
    "ItemState",
    "JournalError",
    "JournalLockedError",
    "JournalLostError",
    "JournalMismatchError",
    "KartraAPIError",
    "KartraConnectionError",
    "KartraDecodeError",
    "KartraError",
    "KartraResponseError",
    "KartraServerError",
    "KartraTimeoutError",
    "KartraValidationError",
    "KartraWebhookError",
    "Lead",
    "LeadChain",
    "LeadDeletedError",
    "LeadExistsError",
    "LeadNotFoundError",
    "LeadRef",
    "Limiter",
    "LimiterUnavailableError",
    "ListNotFoundError",
    "NotFoundError",
    "NotGiven",
    "Outcome",
    "PaymentStateError",
    "PermissionDeniedError",
    "Priority",
    "ProductNotFoundError",
    "RateLimitError",
    "RedisLimiter",
    "RefundResult",
    "RequestFormatError",
    "RetryEvent",
    "RetryPolicy",
    "SequenceNotFoundError",
    "StepNotFoundError",
    "SubscriptionDetails",
    "SubscriptionNotFoundError",
    "SubscriptionSummary",
    "Summary",
    "TagNotFoundError",
    "Transaction",
    "TransactionNotFoundError",
    "TransactionSummary",
]


def __getattr__(name: str) -> Any:
    """`RedisLimiter` is imported on first use, so its extra stays optional."""
    if name == "RedisLimiter":
        from .limits.redis import RedisLimiter

        globals()[name] = RedisLimiter
        return RedisLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
