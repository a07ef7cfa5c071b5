"""Every exception kartra_async raises, and the table of Kartra's message codes.

Hierarchy (Kartra codes in brackets)::

    KartraError
    ├── KartraValidationError (also ValueError)  bad input, raised before anything is sent
    ├── KartraConnectionError                    the request did not complete (httpx transport error)
    │   └── KartraTimeoutError                   httpx timeout, or the per-request deadline passed
    ├── KartraResponseError                      not a Kartra answer (too big, not JSON, too deep,
    │   │                                         wrong shape); HTTP status + safe excerpt
    │   ├── KartraDecodeError                    a Kartra answer whose data does not fit its model
    │   └── KartraServerError                    HTTP 5xx (.retry_after from a 503's Retry-After)
    ├── RateLimitError                           HTTP 429 "Too many requests"
    ├── LimiterUnavailableError                  the shared (Redis) rate limiter did not answer in time
    ├── AmbiguousResultError                     a write may or may not have been applied
    ├── JournalError                             a bulk job's journal is not a journal (empty, foreign)
    │   ├── JournalLockedError                   another job holds the journal
    │   ├── JournalMismatchError                 the journal was written by a different job
    │   └── JournalLostError                     the journal was deleted or replaced under the job
    ├── KartraWebhookError                       a callback body that is not Kartra's (webhooks)
    ├── ChainError                               raise_for_errors(): one or more actions failed
    └── KartraAPIError                           Kartra answered status "Error"; .code, .cmd, .action_index
        ├── AuthenticationError                  [201 202 203 204 233 238 239 240]
        ├── PermissionDeniedError                [242 262]
        ├── RequestFormatError                   [206 223 224 236 254]
        ├── InvalidParameterError                [207 208 211 213 215 217 225 226 227 228 229 255 256
        │                                         260 261 263 265 268 269 270 271 272 273 274 276 277
        │                                         278 280 285 290]
        ├── NotFoundError
        │   ├── LeadNotFoundError                [243 234]
        │   ├── ListNotFoundError                [209 231]
        │   ├── TagNotFoundError                 [212 214]
        │   ├── SequenceNotFoundError            [219 220]
        │   ├── StepNotFoundError                [230]
        │   ├── CalendarNotFoundError            [257]
        │   ├── ClassNotFoundError               [258]
        │   ├── CalendarSubscriptionNotFoundError [259]
        │   ├── TransactionNotFoundError         [247]
        │   ├── SubscriptionNotFoundError        [248]
        │   └── ProductNotFoundError             [283]
        ├── AlreadyExistsError
        │   ├── LeadExistsError                  [244]
        │   └── CustomFieldExistsError           [264]
        ├── LeadDeletedError                     [245]
        └── PaymentStateError                    [249 250 251 252 253 266 267 275 281 282 284]

`ERROR_CODES` maps every error code in Kartra's documentation to its class and the
documented message; `SUCCESS_CODES` does the same for the success message types.
A code Kartra adds later raises plain `KartraAPIError`.

An error's message is built from its attributes when it is read, so a copy made with
`__replace__(**changes)` (`copy.replace` on Python 3.13+) or `KartraAPIError.with_index`
says what the copy holds.

Every exception here pickles and unpickles (multiprocessing, task queues). None holds a
secret: excerpts, messages and `.raw` are redacted, and a transport error's httpx
exception (whose request carries the credentials in its body) is replaced, as
`__cause__`, by a `TransportFailure` holding only its type, message and URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from ._commands import Call
    from .models.results import ChainResult

__all__ = [
    "ERROR_CODES",
    "SUCCESS_CODES",
    "AlreadyExistsError",
    "AmbiguousResultError",
    "AuthenticationError",
    "CalendarNotFoundError",
    "CalendarSubscriptionNotFoundError",
    "ChainError",
    "ClassNotFoundError",
    "CustomFieldExistsError",
    "ErrorCode",
    "InvalidParameterError",
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
    "LeadDeletedError",
    "LeadExistsError",
    "LeadNotFoundError",
    "LimiterUnavailableError",
    "ListNotFoundError",
    "NotFoundError",
    "PaymentStateError",
    "PermissionDeniedError",
    "ProductNotFoundError",
    "RateLimitError",
    "RequestFormatError",
    "SequenceNotFoundError",
    "StepNotFoundError",
    "SubscriptionNotFoundError",
    "TagNotFoundError",
    "TransactionNotFoundError",
    "TransportFailure",
    "error_from_code",
]


_E = TypeVar("_E", bound=BaseException)


def _restore(cls: type[_E], args: tuple[Any, ...], state: dict[str, Any]) -> _E:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class KartraError(Exception):
    """Base class of every error raised by kartra_async."""

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from its attributes, whatever the subclass's __init__ takes
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def __replace__(self: _E, **changes: Any) -> _E:
        """A copy of this error with some attributes changed (`copy.replace(error, ...)`
        on Python 3.13+); its message follows the new values. No traceback or cause is
        copied. TypeError for a name the error does not have."""
        unknown = sorted(set(changes) - set(vars(self)))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no attribute {unknown[0]!r}")
        return _restore(type(self), self.args, {**vars(self), **changes})


class TransportFailure(Exception):
    """What httpx reported when an exchange failed, without the request it carried
    (whose body holds the credentials): the `__cause__` of a KartraConnectionError."""

    def __init__(self, type: str, message: str, url: str) -> None:
        self.type = type  #: e.g. "httpx.ConnectError"
        self.message = message
        self.url = url
        super().__init__(type, message, url)

    def __str__(self) -> str:
        return f"{self.type}: {self.message or 'no detail'} (POST {self.url})"


class KartraValidationError(KartraError, ValueError):
    """Input that breaks a rule Kartra documents; raised before any request is sent."""

    def __init__(self, field: str, rule: str, *, cmd: str | None = None) -> None:
        self.field = field
        self.rule = rule
        self.cmd = cmd
        super().__init__(field, rule)

    def __str__(self) -> str:
        where = f"{self.cmd}: " if self.cmd else ""
        return f"{where}{self.field}: {self.rule}"


class KartraConnectionError(KartraError):
    """The HTTP exchange failed (connect error, dropped connection, protocol error).

    `request_sent` is False when the connection never opened (Kartra never saw the call).
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class KartraTimeoutError(KartraConnectionError):
    """The HTTP exchange timed out (connect, write, read or pool timeout)."""


class KartraResponseError(KartraError):
    """Kartra's answer could not be read: not JSON, not an object, no status, wrong shape."""

    def __init__(self, reason: str, *, status_code: int | None = None, excerpt: str = "") -> None:
        self.reason = reason
        self.status_code = status_code
        self.excerpt = excerpt
        super().__init__(reason)

    def __str__(self) -> str:
        text = self.reason
        if self.status_code is not None:
            text += f" (HTTP {self.status_code})"
        if self.excerpt:
            text += f"; body starts: {self.excerpt!r}"
        return text


class KartraDecodeError(KartraResponseError):
    """Kartra answered in its own envelope, but the data does not fit the model the SDK
    reads it into (a field of the wrong type, a required field missing).

    Not "not JSON" or "wrong shape" (plain KartraResponseError): the answer was read,
    and for a write, Kartra applied it. `.model` names the type that did not fit
    ("Lead", "list[CustomField]"); `.reason` gives each problem with its path, as in
    ``get_lead does not fit Lead: expected an integer, got 'x' @ $.id``. Usually a
    change on Kartra's side: report it with the excerpt.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        excerpt: str = "",
        model: str = "",
    ) -> None:
        self.model = model
        super().__init__(reason, status_code=status_code, excerpt=excerpt)


class KartraServerError(KartraResponseError):
    """Kartra answered with an HTTP 5xx status. `retry_after`: the seconds a 503's
    Retry-After header asked for (None if absent); a retry waits at least that long
    (capped, see `_constants.SERVER_RETRY_AFTER_MAX`)."""

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        excerpt: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(reason, status_code=status_code, excerpt=excerpt)


class RateLimitError(KartraError):
    """Kartra answered HTTP 429 "Too many requests" (20 calls/s per App): nothing was applied."""

    def __init__(self, message: str = "Too many requests", *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class KartraWebhookError(KartraError):
    """A callback body that is not a Kartra event or IPN notification (`.reason` says why)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AmbiguousResultError(KartraError):
    """The request may have reached Kartra and been applied, and sending it again could
    apply it twice, so it was not. `.call` is the request that was sent (its payload
    holds no credentials; None when not known), `.cmds` its cmds in order, `.cause` the
    failure; the message says how to check what happened."""

    def __init__(
        self, message: str, *, call: Call | None = None, cause: BaseException | None = None
    ) -> None:
        self.call = call
        self.cause = cause
        super().__init__(message)

    @property
    def cmds(self) -> tuple[str, ...]:
        """The cmds of the request that may have been applied, in order (() if unknown)."""
        return self.call.cmds if self.call is not None else ()


class JournalError(KartraError):
    """A bulk job's journal (fan_out, `kartra import --journal`) cannot be used: the file
    is empty or not a journal. `.path` is the file."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class JournalLockedError(JournalError):
    """Another job (in this or another process) is using the journal: one job per journal."""


class JournalMismatchError(JournalError):
    """The journal was written by a different job (or for a different chain of this item);
    continuing would skip or repeat the wrong work. `adopt_journal=True` continues anyway."""


class JournalLostError(JournalError):
    """The journal was deleted or replaced while the job was running; the job stops,
    since what it sends could no longer be recorded."""


class KartraAPIError(KartraError):
    """Kartra answered status "Error" for the call or for one action of a chain."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        cmd: str | None = None,
        action_index: int | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.cmd = cmd
        self.action_index = action_index
        self.raw = raw
        super().__init__(message)

    def with_index(self: _API, action_index: int | None) -> _API:
        """This error as the action at `action_index` of a chain (a copy; the message
        names the new index). The client uses it when it answers a chain in parts."""
        return self.__replace__(action_index=action_index)

    def __str__(self) -> str:
        where = ""
        if self.cmd is not None:
            where = self.cmd
            if self.action_index is not None:
                where += f" (action {self.action_index})"
            where += ": "
        code = f" (Kartra {self.code})" if self.code is not None else ""
        return f"{where}{self.message}{code}"


_API = TypeVar("_API", bound=KartraAPIError)


class AuthenticationError(KartraAPIError):
    """App id, API key or API password missing, wrong or inactive, or plain http used."""


class PermissionDeniedError(KartraAPIError):
    """The App may not run this cmd, or the call came from an unauthorized IP."""


class RequestFormatError(KartraAPIError):
    """The request's structure was wrong ('lead', 'actions' or 'get_lead' not an array, ...)."""


class InvalidParameterError(KartraAPIError):
    """Kartra rejected a parameter value (empty name, not a number, bad date, range, ...)."""


class NotFoundError(KartraAPIError):
    """Something the call names does not exist in the account."""


class LeadNotFoundError(NotFoundError):
    """No lead with that id or email."""


class ListNotFoundError(NotFoundError):
    """No list with that name."""


class TagNotFoundError(NotFoundError):
    """No tag with that name."""


class SequenceNotFoundError(NotFoundError):
    """No sequence with that name."""


class StepNotFoundError(NotFoundError):
    """The sequence has no such step."""


class CalendarNotFoundError(NotFoundError):
    """No completed calendar with that name."""


class ClassNotFoundError(NotFoundError):
    """The calendar has no class with that name."""


class CalendarSubscriptionNotFoundError(NotFoundError):
    """The lead has no active or pending subscription to that class."""


class TransactionNotFoundError(NotFoundError):
    """No payment transaction with that id."""


class SubscriptionNotFoundError(NotFoundError):
    """No recurring payment subscription with that id."""


class ProductNotFoundError(NotFoundError):
    """The product id or price point does not exist."""


class AlreadyExistsError(KartraAPIError):
    """The thing to create exists already."""


class LeadExistsError(AlreadyExistsError):
    """A lead with that email exists already (create_lead, or edit_lead's new_email)."""


class CustomFieldExistsError(AlreadyExistsError):
    """The custom field identifier exists already or is reserved."""


class LeadDeletedError(KartraAPIError):
    """The lead was deleted."""


class PaymentStateError(KartraAPIError):
    """The transaction or subscription is in a state that forbids the change."""


class ChainError(KartraError):
    """One or more actions of a chain failed; `.errors` holds one KartraAPIError per failure."""

    def __init__(self, errors: Sequence[KartraAPIError], result: ChainResult | None = None) -> None:
        self.errors = tuple(errors)
        self.result = result
        super().__init__(*(str(e) for e in self.errors))

    def __str__(self) -> str:
        count = len(self.errors)
        failed = "; ".join(str(e) for e in self.errors)
        return f"{count} action{'' if count == 1 else 's'} failed: {failed}"


class ErrorCode(NamedTuple):
    """One documented Kartra message type."""

    code: int
    cls: type[KartraAPIError]
    message: str


_ERRORS: tuple[tuple[int, type[KartraAPIError], str], ...] = (
    (201, AuthenticationError, "Connection not secure"),
    (202, AuthenticationError, "API key cannot be empty. Please get an API key first"),
    (203, AuthenticationError, "API key not valid. Please get an API key first"),
    (204, AuthenticationError, "API Account inactive"),
    (206, RequestFormatError, "email or lead id is required. Nothing done"),
    (207, InvalidParameterError, "List cannot be empty"),
    (208, InvalidParameterError, "List cannot be empty"),
    (209, ListNotFoundError, "List does not exist"),
    (211, InvalidParameterError, "Tag cannot be empty"),
    (212, TagNotFoundError, "Tag does not exist"),
    (213, InvalidParameterError, "Tag cannot be empty"),
    (214, TagNotFoundError, "Tag does not exist"),
    (215, InvalidParameterError, "Points cannot be empty"),
    (217, InvalidParameterError, "Points cannot be empty"),
    (219, SequenceNotFoundError, "Sequence does not exist"),
    (220, SequenceNotFoundError, "Sequence does not exist"),
    (223, RequestFormatError, "'lead' not an array"),
    (224, RequestFormatError, "'actions' not an array"),
    (225, InvalidParameterError, "Step cannot be empty"),
    (226, InvalidParameterError, "Sequence cannot be empty"),
    (227, InvalidParameterError, "Points is not a number"),
    (228, InvalidParameterError, "Points is not a number"),
    (229, InvalidParameterError, "Step has to be alphanumeric"),
    (230, StepNotFoundError, "Step does not exist"),
    (231, ListNotFoundError, "List does not exist"),
    (233, AuthenticationError, "API password not valid. Please get an API password first"),
    (234, LeadNotFoundError, "No lead found"),
    (236, RequestFormatError, "'get_lead' not an array"),
    (238, AuthenticationError, "App Id cannot be empty. Please get an App Id first"),
    (239, AuthenticationError, "App Id is not valid. The app does not exists or is inactive"),
    (240, AuthenticationError, "App Account inactive"),
    (242, PermissionDeniedError, "This API call was sent from an unauthorized IP"),
    (243, LeadNotFoundError, "No lead found"),
    (244, LeadExistsError, "Lead already exists"),
    (245, LeadDeletedError, "Lead is deleted"),
    (247, TransactionNotFoundError, "Transaction doesn't exist"),
    (248, SubscriptionNotFoundError, "Subscription doesn't exist"),
    (249, PaymentStateError, "Transaction not linked to any recurring subscription"),
    (250, PaymentStateError, "Transaction outside refund period"),
    (251, PaymentStateError, "Transaction already refunded"),
    (252, PaymentStateError, "Subscription already cancelled"),
    (253, PaymentStateError, "This type of transaction cannot be refunded or cancelled"),
    (254, RequestFormatError, "'cmd' is required"),
    (255, InvalidParameterError, "Calendar cannot be empty"),
    (256, InvalidParameterError, "Class cannot be empty"),
    (257, CalendarNotFoundError, "Calendar does not exist"),
    (258, ClassNotFoundError, "Class does not exist"),
    (
        259,
        CalendarSubscriptionNotFoundError,
        "No active/pending calendar subscription for this lead",
    ),
    (260, InvalidParameterError, "Invalid date format"),
    (261, InvalidParameterError, "Date is in the past"),
    (262, PermissionDeniedError, "App does not have permission to execute this CMD"),
    (
        263,
        InvalidParameterError,
        "Custom Field name can only contain letters, numbers, dashes or underscores",
    ),
    (264, CustomFieldExistsError, "Custom Field already exists or not allowed"),
    (265, InvalidParameterError, "Custom Field cannot be empty"),
    (266, PaymentStateError, "Refund has failed"),
    (267, PaymentStateError, "Cancellation has failed"),
    (268, InvalidParameterError, "Invalid amount"),
    (269, InvalidParameterError, "Custom Field type not valid"),
    (270, InvalidParameterError, "Options not an array"),
    (271, InvalidParameterError, "Wrong custom field format"),
    (272, InvalidParameterError, "Option cannot be empty"),
    (273, InvalidParameterError, "Options must have two or more elements"),
    (274, InvalidParameterError, "Wrong status"),
    (275, PaymentStateError, "Subscriptions cancelled or terminated cannot be updated"),
    (276, InvalidParameterError, "Quantity must be between 1 and 9,999"),
    (277, InvalidParameterError, "Price must be between 1.00 and 9,999.99"),
    (278, InvalidParameterError, "Invalid number"),
    (280, InvalidParameterError, "Invalid recurring period"),
    (281, PaymentStateError, "Recurrence cannot be changed"),
    (282, PaymentStateError, "Incorrect number of installments"),
    (283, ProductNotFoundError, "Wrong product id or price point"),
    (284, PaymentStateError, "Paypal transactions cannot be modified"),
    (285, InvalidParameterError, "No editable parameters for subscription"),
    (290, InvalidParameterError, "Tax must be between 0 and 100"),
)

ERROR_CODES: Mapping[int, ErrorCode] = MappingProxyType(
    {code: ErrorCode(code, cls, msg) for code, cls, msg in _ERRORS}
)
"""Every error code in Kartra's documentation: code -> (code, class, documented message)."""

SUCCESS_CODES: Mapping[int, str] = MappingProxyType(
    {
        101: "Lead subscribed to list / Lead unsubscribed from list",
        103: "Tag added to lead",
        104: "Tag removed from lead",
        105: "Points added to lead",
        106: "Points removed from lead",
        107: "Lead added to sequence",
        108: "Lead removed from sequence",
        112: "Lead subscribed to class",
        113: "Lead unsubscribed from class",
        114: "Custom Field created",
        115: "Subscription modified",
    }
)
"""The documented success message types."""


def error_from_code(
    code: int | None,
    message: str | None,
    *,
    cmd: str | None = None,
    action_index: int | None = None,
    raw: Mapping[str, Any] | None = None,
) -> KartraAPIError:
    """Build the exception for a Kartra error answer; unknown codes give KartraAPIError."""
    entry = ERROR_CODES.get(code) if code is not None else None
    cls = entry.cls if entry else KartraAPIError
    text = message or (entry.message if entry else "Kartra reported an error")
    return cls(text, code=code, cmd=cmd, action_index=action_index, raw=raw)


class LimiterUnavailableError(KartraError):
    """The shared rate limiter could not be reached in time (Redis down, frozen or
    refusing): no slot was granted and nothing was sent to Kartra."""
