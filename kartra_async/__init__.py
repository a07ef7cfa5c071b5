"""kartra_async: the async Python SDK for Kartra's API."""

import logging as _logging

from ._bulk import FanOut, Journal, Outcome, Summary
from ._chain import AccountCalls, LeadChain, SubscriptionCalls, TransactionCalls
from ._client import AsyncKartra
from ._commands import COMMANDS, UNTIL_CANCELLED, Command, Safety, Scope
from ._retry import RetryEvent, RetryPolicy
from .errors import (
    ERROR_CODES,
    SUCCESS_CODES,
    AlreadyExistsError,
    AmbiguousResultError,
    AuthenticationError,
    CalendarNotFoundError,
    CalendarSubscriptionNotFoundError,
    ChainError,
    ClassNotFoundError,
    CustomFieldExistsError,
    InvalidParameterError,
    KartraAPIError,
    KartraConnectionError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    LeadDeletedError,
    LeadExistsError,
    LeadNotFoundError,
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
from .limits import Limiter
from .models import ActionResult, ChainResult

__version__ = "0.1.0"

# silent unless the application configures logging (no "last resort" output to stderr)
_logging.getLogger("kartra_async").addHandler(_logging.NullHandler())

__all__ = [
    "COMMANDS",
    "ERROR_CODES",
    "SUCCESS_CODES",
    "UNTIL_CANCELLED",
    "AccountCalls",
    "ActionResult",
    "AlreadyExistsError",
    "AmbiguousResultError",
    "AsyncKartra",
    "AuthenticationError",
    "CalendarNotFoundError",
    "CalendarSubscriptionNotFoundError",
    "ChainError",
    "ChainResult",
    "ClassNotFoundError",
    "Command",
    "CustomFieldExistsError",
    "FanOut",
    "InvalidParameterError",
    "Journal",
    "KartraAPIError",
    "KartraConnectionError",
    "KartraError",
    "KartraResponseError",
    "KartraServerError",
    "KartraTimeoutError",
    "KartraValidationError",
    "LeadChain",
    "LeadDeletedError",
    "LeadExistsError",
    "LeadNotFoundError",
    "Limiter",
    "ListNotFoundError",
    "NotFoundError",
    "Outcome",
    "PaymentStateError",
    "PermissionDeniedError",
    "ProductNotFoundError",
    "RateLimitError",
    "RequestFormatError",
    "RetryEvent",
    "RetryPolicy",
    "Safety",
    "Scope",
    "SequenceNotFoundError",
    "StepNotFoundError",
    "SubscriptionCalls",
    "SubscriptionNotFoundError",
    "Summary",
    "TagNotFoundError",
    "TransactionCalls",
    "TransactionNotFoundError",
]
