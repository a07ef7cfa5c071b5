"""AsyncKartra: configuration, lifecycle and `send()`. Nothing cmd-specific lives here:
the command table (commands.py) and the builders (chain.py) carry the API's knowledge."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import hashlib
import ipaddress
import logging
import math
import os
import time
import warnings
import zlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta, timezone
from functools import cached_property
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import anyio
import attrs
import httpx

from ._bulk import FanOut, Journal, Reconciler, Summary
from ._chain import (
    AccountCalls,
    LeadChain,
    SubscriptionCalls,
    TransactionCalls,
    lead_identity,
    send_single,
)
from ._commands import COMMANDS, Call, Safety, unknown_command
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_DEADLINE,
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    MAX_ANSWER_BYTES,
    MAX_FORM_VARS,
    RATE_LIMIT_PAUSE,
    RATE_LIMIT_PAUSE_MAX,
    RATE_LIMIT_RESENDS,
    RECONCILE_CLEARLY_BEFORE,
    RECONCILE_CLOCK_SKEW,
    SERVER_RETRY_AFTER_MAX,
    USER_AGENT,
)
from ._form import encode_form
from ._redact import mask
from ._response import excerpt, read_response, retry_after
from ._retry import Decision, RetryEvent, RetryPolicy, ambiguous_error, decide
from ._scrub import Redactor
from .errors import (
    ERROR_CODES,
    AmbiguousResultError,
    KartraConnectionError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    LeadExistsError,
    LeadNotFoundError,
    RateLimitError,
    TransportFailure,
    error_from_code,
)
from .limits import Grant, Priority, RateLimiter, shared_limiter
from .models.lead import Lead, LeadRef
from .models.results import ActionResult, ChainResult

__all__ = ["AsyncKartra"]

T = TypeVar("T")
_T = TypeVar("_T")

logger = logging.getLogger("kartra_async")

_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
    "User-Agent": USER_AGENT,
}
#: a borrowed httpx client would offer br and zstd too if installed: offer only what the
#: body reader decodes with bounded memory (our own pool sends no Accept-Encoding)
_BORROWED_HEADERS = {**_HEADERS, "Accept-Encoding": "gzip, deflate"}
_ENV = {
    "app_id": "KARTRA_APP_ID",
    "api_key": "KARTRA_API_KEY",
    "api_password": "KARTRA_API_PASSWORD",
}


def _check_base_url(base_url: str) -> httpx.URL:
    url = httpx.URL(base_url)
    if url.scheme == "https":
        return url
    host = url.host
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if url.scheme == "http" and loopback:
        return url
    raise ValueError(
        f"base_url must use https (Kartra answers plain http with error 201 and credentials "
        f"would travel in clear text); plain http is allowed only for loopback hosts, "
        f"got {base_url!r}"
    )


class _Shared:
    def __repr__(self) -> str:
        return "SHARED"


SHARED: Any = _Shared()
"""limiter=SHARED (the default): the in-process limiter of the App (limits.shared_limiter)."""

#: the on_send of a reconcile_create in progress, for the sends _reconcile makes
_ON_SEND: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "kartra_async_on_send", default=None
)


def _seconds(field: str, value: Any, *, finite: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KartraValidationError(field, f"must be a number of seconds (got {value!r})")
    if not value > 0 or (finite and not math.isfinite(value)):
        kind = "a positive, finite" if finite else "a positive"
        raise KartraValidationError(field, f"must be {kind} number of seconds (got {value!r})")
    return float(value)


def _check_timeout(value: Any) -> httpx.Timeout | float | None:
    """httpx's per-operation timeouts: seconds, an httpx.Timeout or None (no limit); a
    negative, zero or NaN value is refused (httpx would take it silently)."""
    if value is None:
        return None
    if isinstance(value, httpx.Timeout):
        for name, seconds in value.as_dict().items():
            if seconds is not None:
                _seconds(f"timeout.{name}", seconds)
        return value
    return _seconds("timeout", value)


def _count(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise KartraValidationError(field, f"must be an integer >= {minimum} (got {value!r})")
    return value


class _Answer:
    """An HTTP answer read within the bounds: status, headers and the decoded body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content


class _Deadline(Generic[_T]):
    """Await a coroutine on asyncio within `seconds`, else raise TimeoutError.

    What `asyncio.timeout` does, but the timer is armed only when the coroutine first
    has to wait: an exchange that never waits (an in-memory transport) costs no timer
    and leaves no cancelled one in the loop's heap. Cancellation from elsewhere passes
    through untouched (Task.cancelling/uncancel tell ours apart, as asyncio.timeout does).
    """

    __slots__ = ("_coro", "_when")

    def __init__(self, coro: Coroutine[Any, Any, _T], seconds: float) -> None:
        self._coro = coro
        self._when = asyncio.get_running_loop().time() + seconds

    def __await__(self) -> Generator[Any, Any, _T]:
        coro = self._coro
        try:
            signal = coro.send(None)
        except StopIteration as stop:
            return cast(_T, stop.value)
        task: Any = asyncio.current_task()  # Task.cancelling/uncancel: 3.11+ (_TASK_UNCANCEL)
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_at(self._when, expire)
        try:
            while True:
                try:
                    value = yield signal
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    try:
                        signal = coro.throw(exc)
                    except StopIteration as stop:
                        return cast(_T, stop.value)
                else:
                    try:
                        signal = coro.send(value)
                    except StopIteration as stop:
                        return cast(_T, stop.value)
        except asyncio.CancelledError:
            if expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Inflate:
    """A gzip or deflate decoder whose output never exceeds what it is given room for."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        wbits = zlib.MAX_WBITS | 16 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)
        self._started = False

    def decode(self, data: bytes, room: int) -> bytes:
        """At most `room` (>= 1) bytes of output; more is left unread (the caller's
        limit is then passed)."""
        try:
            out = self._zlib.decompress(data, room)
        except zlib.error:
            if self._started or self.encoding != "deflate":
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
            out = self._zlib.decompress(data, room)
        self._started = True
        if self._zlib.unconsumed_tail:
            return out + b"\0"  # one byte past the room: the answer is too big
        return out

    def flush(self) -> bytes:
        return self._zlib.flush()


def _decoder(value: str | None) -> _Inflate | None:
    codings = [c.strip().lower() for c in (value or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflate(codings[0])
    raise ValueError(f"has Content-Encoding {value!r}; only gzip or deflate were asked for")


def _detail(exc: BaseException, redactor: Redactor) -> str:
    """The exception's message and, if it says more, its root cause's."""
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text:
            messages.append(text)
        # httpx chains httpcore's error as the cause, httpcore the OS error as the
        # context; anyio and trio put the refused attempts in an exception group
        group = getattr(current, "exceptions", None)
        if isinstance(group, tuple) and group and isinstance(group[0], BaseException):
            current = group[0]
        else:
            current = current.__cause__ or current.__context__
    if not messages:
        return "no detail"
    first, root = messages[0], messages[-1]
    text = first if root in first else f"{first} ({root})"
    return redactor.text(text)[:500]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AsyncKartra:
    """Async client for Kartra's inbound API.

    One instance holds one connection pool, shared by every chain it sends; use it
    with `async with` (or call `aclose()`). An `http_client` you pass in is never
    closed by this client; a `transport` (e.g. FakeKartra's) goes into the client's
    own pool.

    `tenant` names the account whose calls these are in the App's shared rate limit
    (the limiter queues fairly between accounts); by default a short hash of the api_key,
    which never reveals the key.

    Examples:
        >>> async with AsyncKartra(app_id, api_key, api_password) as kartra:
        ...     result = await kartra.lead("john@example.com").create(first_name="John").assign_tag("VIP")
    """

    def __init__(
        self,
        app_id: str,
        api_key: str,
        api_password: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        limiter: RateLimiter | None = SHARED,
        rate_limit_resends: int = RATE_LIMIT_RESENDS,
        retry: RetryPolicy | None = None,
        deadline: float = DEFAULT_DEADLINE,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_form_vars: int = MAX_FORM_VARS,
        tenant: str | None = None,
    ) -> None:
        for field, value in (
            ("app_id", app_id),
            ("api_key", api_key),
            ("api_password", api_password),
        ):
            if not isinstance(value, str) or not value.strip():
                raise KartraValidationError(field, "must be a non-empty string")
            try:
                value.encode()
            except UnicodeEncodeError:
                raise KartraValidationError(field, "is not encodable as UTF-8") from None
        #: the account this client's calls count for in the App's fair share (limits)
        self.tenant = _tenant(tenant, api_key)
        self._url = _check_base_url(base_url)
        timeout = _check_timeout(timeout)
        self.app_id = app_id
        self._secrets = (api_key, api_password)
        self._redact = Redactor(self._secrets)
        # the credentials' share of every body, encoded once
        self._form_prefix = encode_form(
            {"app_id": app_id, "api_key": api_key, "api_password": api_password}
        )
        self._prefix_vars = self._form_prefix.count("&") + 1
        self._deadline = _seconds("deadline", deadline, finite=True)
        self._max_answer_bytes = _count("max_answer_bytes", max_answer_bytes, 1)
        self._max_form_vars = _count("max_form_vars", max_form_vars, self._prefix_vars + 1)
        self._clock: Callable[[], datetime] = _utc_now  #: wall clock (reconcile)
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        self._owns_http = http_client is None
        self._owns_pool = http_client is None  #: stays True in with_options views
        # our own pool carries the headers; a borrowed one gets them on each request
        self._headers: dict[str, str] | None = None if http_client is None else _BORROWED_HEADERS
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport, headers=_HEADERS
        )
        self._timeout = timeout
        if limiter is SHARED:
            # a transport that serves a fake Kartra brings the limiter of the fake's App
            own = getattr(transport, "shared_limiter", None)
            limiter = own(app_id) if own is not None else shared_limiter(app_id)
        #: the rate limiter every request waits on (None: no limiting)
        self.limiter: RateLimiter | None = limiter
        self._resends = rate_limit_resends
        #: how failed calls are sent again (never when a repeat could do harm)
        self.retry = retry or RetryPolicy()
        self._request_timeout: httpx.Timeout | None = None
        self._closed = False

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncKartra:
        """Read KARTRA_APP_ID, KARTRA_API_KEY, KARTRA_API_PASSWORD (required) and
        KARTRA_BASE_URL (optional); keyword arguments go to the constructor."""
        values: dict[str, Any] = {}
        for field, name in _ENV.items():
            value = os.environ.get(name, "")
            if not value.strip():
                raise KartraValidationError(name, "environment variable is missing or empty")
            values[field] = value
        base_url = os.environ.get("KARTRA_BASE_URL", "").strip()
        if base_url and "base_url" not in kwargs:
            values["base_url"] = base_url
        return cls(**values, **kwargs)

    @property
    def base_url(self) -> str:
        return str(self._url)

    @property
    def deadline(self) -> float:
        """Seconds one HTTP exchange may take in all (connect, send, headers, body)."""
        return self._deadline

    @property
    def max_answer_bytes(self) -> int:
        """The longest answer read, on the wire and decoded."""
        return self._max_answer_bytes

    @property
    def max_form_vars(self) -> int:
        """The most form variables one request may carry (PHP's max_input_vars)."""
        return self._max_form_vars

    def __repr__(self) -> str:
        return f"<AsyncKartra app_id={mask(self.app_id)!r} base_url={self.base_url!r}>"

    def with_options(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        limiter: RateLimiter | None = SHARED,
        deadline: float | None = None,
        max_answer_bytes: int | None = None,
        max_form_vars: int | None = None,
    ) -> AsyncKartra:
        """A view of this client with other settings for the calls made through it
        (same pool, credentials and, unless given, limiter), e.g.
        `await kartra.with_options(retry=RetryPolicy(max_attempts=5), timeout=60).account.tags()`.
        None leaves a setting as it is."""
        if timeout is not None:
            timeout = _check_timeout(timeout)
        if deadline is not None:
            deadline = _seconds("deadline", deadline, finite=True)
        if max_answer_bytes is not None:
            max_answer_bytes = _count("max_answer_bytes", max_answer_bytes, 1)
        if max_form_vars is not None:
            max_form_vars = _count("max_form_vars", max_form_vars, self._prefix_vars + 1)
        view = copy.copy(self)
        for name in ("account", "transactions", "subscriptions"):
            view.__dict__.pop(name, None)  # cached views bound to the original
        view._owns_http = False
        if retry is not None:
            view.retry = retry
        if timeout is not None:
            view._request_timeout = (
                timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
            )
        if limiter is not SHARED:
            view.limiter = limiter
        if deadline is not None:
            view._deadline = deadline
        if max_answer_bytes is not None:
            view._max_answer_bytes = max_answer_bytes
        if max_form_vars is not None:
            view._max_form_vars = max_form_vars
        return view

    def __del__(self) -> None:
        if getattr(self, "_owns_http", False) and not getattr(self, "_closed", True):
            warnings.warn(
                f"unclosed {self!r}: use 'async with AsyncKartra(...)' or 'await kartra.aclose()'",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    # ---- lifecycle

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncKartra:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- builders

    def lead(self, email: str | None = None, *, id: int | None = None) -> LeadChain:
        """Start a chain of actions on one lead, named by email or id."""
        return LeadChain(self, lead_identity(email, id))

    @cached_property
    def account(self) -> AccountCalls:
        """Account-wide reads and custom field creation."""
        return AccountCalls(self)

    @cached_property
    def transactions(self) -> TransactionCalls:
        """Payment transactions: search, get, refund, cancel."""
        return TransactionCalls(self)

    @cached_property
    def subscriptions(self) -> SubscriptionCalls:
        """Recurring payment subscriptions: search, get, edit, pause, unpause, cancel."""
        return SubscriptionCalls(self)

    async def get_lead(self, email: str | None = None, *, id: int | None = None) -> Lead:
        """Everything Kartra knows about one lead, named by email or by id (exactly one;
        sent as `get_lead[email]` or `get_lead[id]`). LeadNotFoundError if none;
        KartraValidationError, before sending, for neither, both or a bad value."""
        command = COMMANDS["get_lead"]
        wire = command.build({"id": id, "email": email})
        return await send_single(self, Call({"get_lead": wire}, (command,), wire.get("id")), Lead)

    async def call(
        self, actions: Sequence[Mapping[str, Any]], lead: Mapping[str, Any] | None = None
    ) -> ChainResult:
        """Escape hatch: send `actions` (dicts with a "cmd") as they are, for a lead or not.

        Nothing is checked; cmds the table does not know are treated as unsafe to repeat.
        """
        if not actions:
            raise KartraValidationError("actions", "a call needs at least one action")
        commands = []
        for i, action in enumerate(actions):
            cmd = action.get("cmd")
            if not isinstance(cmd, str) or not cmd:
                raise KartraValidationError(f"actions[{i}].cmd", "is required")
            commands.append(unknown_command(cmd))
        payload: dict[str, Any] = {}
        if lead is not None:
            payload["lead"] = dict(lead)
        payload["actions"] = [dict(a) for a in actions]
        lead_id = lead.get("id") if lead is not None else None
        return await self.send(
            Call(payload, tuple(commands), lead_id if isinstance(lead_id, int) else None)
        )

    # ---- sending

    async def send(
        self,
        call: Call,
        *,
        priority: Priority = "interactive",
        retry: RetryPolicy | None = None,
        on_send: Callable[[], None] | None = None,
        tenant: str | None = None,
    ) -> ChainResult:
        """Send one compiled call as ONE POST and read Kartra's answer.

        Waits for the rate limiter first. HTTP 429 pauses the whole App and sends the call
        again (Kartra did not apply it). Failures are sent again only where a repeat
        cannot do harm (see kartra_async._retry); otherwise AmbiguousResultError.
        `on_send` is called once per attempt, after the limiter's grant, right before the
        request leaves; what it raises stops the attempt unsent. `tenant` overrides the
        client's account in the limiter's fair share for this call.
        """
        if self._closed:
            raise RuntimeError("this AsyncKartra is closed")
        policy = retry or self.retry
        on_send = on_send or _ON_SEND.get()
        content = self._encode(call)
        reconcile = policy.reconcile_create and call.cmds[:1] == ("create_lead",)
        sent_at = self._clock() if reconcile else None
        attempt = 1
        while True:
            try:
                return await self._send_once(
                    content, call, priority, on_send, self.tenant if tenant is None else tenant
                )
            except KartraError as error:
                decision = decide(error, call)
                if decision == Decision.RAISE:
                    raise
                if decision == Decision.AMBIGUOUS:
                    if reconcile:
                        return await self._reconcile(call, error, priority, policy, sent_at)
                    raise ambiguous_error(call, error) from error
                if attempt >= policy.max_attempts:
                    raise
                delay = policy.delay(attempt)
                if isinstance(error, KartraServerError) and error.retry_after is not None:
                    delay = max(delay, min(error.retry_after, SERVER_RETRY_AFTER_MAX))
                attempt += 1
                logger.info(
                    "%s failed (%s); attempt %d in %.2fs",
                    ",".join(call.cmds),
                    error,
                    attempt,
                    delay,
                )
                if policy.on_retry is not None:
                    policy.on_retry(RetryEvent(attempt, delay, error, call.cmds))
                await policy.sleep(delay)

    def _encode(self, call: Call) -> bytes:
        """The request body: credentials, then the call, PHP-encoded, within max_form_vars."""
        try:
            form = encode_form(call.payload)
            content = f"{self._form_prefix}&{form}".encode()
        except UnicodeEncodeError:
            where = _unencodable(call.payload) or "payload"
            rule = "holds text that cannot be encoded as UTF-8 (a lone surrogate)"
            raise KartraValidationError(where, rule) from None
        if "%00" in form:  # only a NUL encodes so ("%" itself becomes %25)
            where = _unencodable(call.payload, nul=True) or "payload"
            raise KartraValidationError(where, "contains a NUL character")
        count = self._prefix_vars + form.count("&") + 1
        if count > self._max_form_vars:
            raise KartraValidationError(
                "payload",
                f"the request would carry {count:,} form variables, more than max_form_vars="
                f"{self._max_form_vars:,} (PHP's default max_input_vars is 1,000 and PHP drops "
                "the variables past it without an error, so the last actions would be lost): "
                "split the chain, or raise AsyncKartra(max_form_vars=...) if Kartra allows more",
                cmd=",".join(call.cmds),
            )
        return content

    async def _send_once(
        self,
        content: bytes,
        call: Call,
        priority: Priority,
        on_send: Callable[[], None] | None = None,
        tenant: str | None = None,
    ) -> ChainResult:
        limiter = self.limiter
        take = getattr(limiter, "take", None)
        if take is not None and getattr(limiter, "per_tenant", False):
            take = functools.partial(take, tenant=tenant or self.tenant)
        resends = 0
        while True:
            grant: Grant | None = None
            if take is not None:
                grant = await take(priority)
            elif limiter is not None:
                await limiter.acquire(priority)
            if on_send is not None:
                try:
                    on_send()
                except BaseException:
                    if grant is not None:
                        grant.finish(sent=False)
                    raise
            response = await self._post(content, call, grant)
            if response.status_code != 429:
                return self._read(response, call)
            retry_after = _retry_after(response.headers.get("retry-after"))
            if limiter is not None:
                await limiter.backoff(min(retry_after or RATE_LIMIT_PAUSE, RATE_LIMIT_PAUSE_MAX))
            if limiter is None or resends >= self._resends:
                raise RateLimitError(
                    f"Kartra answered 429 Too many requests ({resends} resends)",
                    retry_after=retry_after,
                )
            resends += 1

    async def reconcile_create(
        self,
        call: Call,
        *,
        priority: Priority = "interactive",
        on_send: Callable[[], None] | None = None,
        sent_at: datetime | None = None,
    ) -> ChainResult:
        """Finish a chain that starts with create_lead and may or may not have been applied
        (see `_reconcile`); used by fan_out to resume items in flight at a crash.
        `on_send` is called before each request it makes (lookups included).

        `sent_at` (aware) is when the call was first sent: a lead found that joined
        before it (allowing RECONCILE_CLOCK_SKEW and date_joined's minute precision)
        was not made by the call. None means unknown: the lead found is taken as made
        by the call, as nothing can prove otherwise."""
        token = _ON_SEND.set(on_send)
        try:
            return await self._reconcile(call, None, priority, self.retry, sent_at)
        finally:
            _ON_SEND.reset(token)

    def fan_out(
        self,
        items: Iterable[T] | AsyncIterable[T],
        build: Callable[[T], LeadChain],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        key: Callable[[T], object] | None = None,
        priority: Priority = "bulk",
        progress: Callable[[Summary], None] | None = None,
        retry_failed: bool = False,
        retry_ambiguous: bool = False,
        reconcile: bool | Reconciler = True,
        job: str | None = None,
        adopt_journal: bool = False,
    ) -> FanOut[T]:
        """One chain per item at the limiter's pace, `concurrency` in flight (default:
        two seconds of the limit), with an optional resumable `journal` (a path, or an
        open Journal). `key(item)` names an item in the journal (default: its position).
        On resume: `retry_failed` sends failed actions again, `retry_ambiguous` sends
        again what may or may not have been applied, `reconcile` (default True) looks up
        a chain that creates its lead, or is your async function (item, chain) -> bool
        | None. `job` names the job in the journal (default: the first item's actions);
        `adopt_journal` continues a journal another job wrote. See kartra_async._bulk."""
        return FanOut(
            self,
            items,
            build,
            concurrency=concurrency,
            journal=journal,
            key=key,
            priority=priority,
            progress=progress,
            retry_failed=retry_failed,
            retry_ambiguous=retry_ambiguous,
            reconcile=reconcile,
            job=job,
            adopt_journal=adopt_journal,
        )

    async def _reconcile(
        self,
        call: Call,
        error: KartraError | None,
        priority: Priority,
        policy: RetryPolicy,
        sent_at: datetime | None,
    ) -> ChainResult:
        """An ambiguous chain that starts with create_lead: look the lead up (get_lead).

        Not found: nothing was applied (every other action needs the lead), so the chain
        is sent again. Found: create_lead counts as applied only if the lead joined at or
        after the send (`_joined_since`); a lead that clearly predates the call raises
        the LeadExistsError the call would have met, and one that cannot be told apart
        raises AmbiguousResultError: the rest of the chain is never applied to a lead
        that may have existed before. Then the rest is sent if every remaining cmd is
        safe to repeat."""
        policy = attrs.evolve(policy, reconcile_create=False)
        email = call.payload["lead"].get("email")
        get_lead = COMMANDS["get_lead"]
        lookup = Call({"get_lead": get_lead.build({"email": email})}, (get_lead,))
        try:
            found = await self.send(lookup, priority=priority, retry=policy)
        except LeadNotFoundError:
            logger.info("create_lead for %s was not applied: sending the chain again", email)
            return await self.send(call, priority=priority, retry=policy)
        except KartraError as exc:
            raise ambiguous_error(
                call,
                KartraError(
                    f"{error or 'the call was interrupted'}; looking the lead up failed: {exc}"
                ),
            ) from error
        lead = found.actions[0].data
        lead_id = found.lead_id
        joined = getattr(lead, "date_joined", None)
        verdict = _joined_since(joined, sent_at, self._clock())
        if verdict is False:
            exists = LeadExistsError(
                ERROR_CODES[244].message, code=244, cmd="create_lead", action_index=0
            )
            logger.info(
                "create_lead for %s was not applied: lead %s joined %s, before the call",
                email, lead_id, joined,
            )  # fmt: skip
            raise exists from error
        if verdict is None:
            raise AmbiguousResultError(
                f"create_lead for lead {email} may or may not have been applied: "
                f"{error or 'the call was interrupted'}. Lead {lead_id} exists, but its "
                f"date_joined ({joined or 'unknown'}) does not tell whether this call created "
                f"it or it existed before (first sent {sent_at:%Y-%m-%d %H:%M:%S %Z}, allowing "
                f"{RECONCILE_CLOCK_SKEW:g} s of clock skew), so the rest of the chain was not "
                "applied to it. "
                "To find out: look at the lead in Kartra.",
                call=call,
                cause=error,
            ) from error
        rest, actions = call.commands[1:], list(call.payload["actions"][1:])
        if any(c.safety is Safety.UNSAFE for c in rest):
            cause = error or KartraError(
                f"create_lead was applied (lead {lead_id}); the rest may not have been"
            )
            raise ambiguous_error(call, cause) from error
        created = ActionResult(
            index=0, cmd="create_lead", ok=True, code=None,
            message="reconciled: the lead exists after an ambiguous create_lead",
            data=LeadRef(lead_id) if lead_id is not None else None,
        )  # fmt: skip
        if not rest:
            return ChainResult(actions=(created,), lead_id=lead_id, raw=found.raw)
        remaining = await self.send(
            Call({"lead": {"id": lead_id}, "actions": actions}, rest, lead_id),
            priority=priority,
            retry=policy,
        )
        return ChainResult(
            actions=(created, *(_shifted(a, 1) for a in remaining.actions)),
            lead_id=lead_id,
            raw=remaining.raw,
        )

    async def _post(self, content: bytes, call: Call, grant: Grant | None = None) -> _Answer:
        """One HTTP exchange within the deadline and the answer size cap. An httpx error
        becomes a KartraConnectionError whose cause is a TransportFailure (type, message,
        URL): httpx's own exception holds the request, credentials and all. With a limiter
        grant, the transport's trace tells the limiter the moment the request leaves (after
        the pool found or opened a connection), and the outcome is reported at the end."""
        started = time.perf_counter()
        failure: KartraError | None = None
        cause: TransportFailure | None = None
        sent = True
        extensions: dict[str, Any] = {} if grant is None else {"trace": _tracer(grant)}
        try:
            if _TASK_UNCANCEL and _on_asyncio():
                answer = await _Deadline(self._exchange(content, extensions), self._deadline)
            else:
                with anyio.fail_after(self._deadline):
                    answer = await self._exchange(content, extensions)
        except TimeoutError:
            failure = KartraTimeoutError(
                f"no complete answer within the {self._deadline:g} s deadline calling Kartra "
                f"({', '.join(call.cmds)}): connecting, sending and reading the answer took "
                "longer (httpx's timeouts are per read; the deadline bounds the whole exchange)"
            )
        except httpx.RequestError as exc:
            name = type(exc).__name__
            detail = _detail(exc, self._redact)
            message = f"{name} calling Kartra ({', '.join(call.cmds)}): {detail}"
            if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
                # the connection never opened: Kartra never saw the call
                cls = (
                    KartraConnectionError
                    if isinstance(exc, httpx.ConnectError)
                    else KartraTimeoutError
                )
                failure = cls(message, request_sent=False)
                sent = False
            elif isinstance(exc, httpx.TimeoutException):
                failure = KartraTimeoutError(message)
            else:
                failure = KartraConnectionError(message)
            cause = TransportFailure(f"httpx.{name}", detail, str(self._url))
        except BaseException:
            if grant is not None:
                grant.finish(None)  # cancelled or refused mid-exchange: it may have left
            raise
        if failure is not None:
            if grant is not None:
                grant.finish(None, sent=sent)
            # raised outside the except blocks: no __context__ leads back to httpx's request
            raise failure from cause
        if grant is not None:
            grant.finish(answer.status_code)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "POST %s cmds=%s -> HTTP %d in %.3fs",
                self._url, ",".join(call.cmds), answer.status_code, time.perf_counter() - started,
            )  # fmt: skip
        return answer

    async def _exchange(self, content: bytes, extensions: dict[str, Any]) -> _Answer:
        if self._owns_pool:
            # our own pool has no cookies, auth or default params to merge: build the
            # request directly (half of httpx's per-request cost is that merging)
            timeout = self._request_timeout or self._http.timeout
            request = httpx.Request(
                "POST", self._url, content=content, headers=_HEADERS,
                extensions={**extensions, "timeout": timeout.as_dict()},
            )  # fmt: skip
        else:
            request = self._http.build_request(
                "POST", self._url, content=content, headers=self._headers,
                timeout=self._request_timeout or httpx.USE_CLIENT_DEFAULT,
                extensions=extensions,
            )  # fmt: skip
        response = await self._http.send(request, stream=True)
        if response.is_stream_consumed:  # built in memory (a mock transport): already read
            body = response.content
            if len(body) > self._max_answer_bytes:
                raise self._too_big(response.status_code, body, f"{len(body):,} bytes")
            return _Answer(response.status_code, response.headers, body)
        try:
            body = await self._read_body(response)
        except BaseException:
            with anyio.move_on_after(_CLOSE_GRACE, shield=True):
                await response.aclose()
            raise
        return _Answer(response.status_code, response.headers, body)

    async def _read_body(self, response: httpx.Response) -> bytes:
        """The body, decoded, refused as soon as it passes max_answer_bytes on the wire or
        decoded (a gzip bomb is stopped after that many bytes of output)."""
        limit = self._max_answer_bytes
        status = response.status_code
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            raise self._too_big(status, b"", f"Content-Length {declared[:20]}")
        try:
            decoder = _decoder(response.headers.get("content-encoding"))
        except ValueError as exc:
            raise KartraResponseError(f"Kartra's answer {exc}", status_code=status) from None
        stream = response.aiter_raw()
        try:
            return await self._collect(stream, decoder, status)
        except KartraResponseError:
            await _abandon(response, stream)
            raise

    async def _collect(
        self, stream: AsyncIterator[bytes], decoder: _Inflate | None, status: int
    ) -> bytes:
        limit = self._max_answer_bytes
        if decoder is None:
            chunks: list[bytes] = []
            size = 0
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise self._too_big(status, b"".join(chunks[:16]), f"over {limit:,} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        out = bytearray()
        wire = 0
        try:
            async for chunk in stream:
                wire += len(chunk)
                if wire > limit:
                    raise self._too_big(
                        status, out, f"over {limit:,} bytes {decoder.encoding}-encoded"
                    )
                out += decoder.decode(chunk, limit + 1 - len(out))
                if len(out) > limit:
                    raise self._too_big(status, out, f"over {limit:,} bytes decoded")
            out += decoder.flush()
        except zlib.error:
            raise KartraResponseError(
                f"Kartra's answer is not valid {decoder.encoding} data",
                status_code=status,
                excerpt=excerpt(bytes(out), self._redact),
            ) from None
        if len(out) > limit:
            raise self._too_big(status, out, f"over {limit:,} bytes decoded")
        return bytes(out)

    def _too_big(self, status: int, start: bytes | bytearray, size: str) -> KartraResponseError:
        return KartraResponseError(
            f"Kartra's answer is too big ({size}; max_answer_bytes={self._max_answer_bytes:,})",
            status_code=status,
            excerpt=excerpt(bytes(start[:4096]), self._redact),
        )

    def _read(self, response: _Answer, call: Call) -> ChainResult:
        status, body = response.status_code, response.content
        if status >= 500:
            raise KartraServerError(
                "Kartra answered a server error",
                status_code=status,
                excerpt=excerpt(body, self._redact),
                retry_after=retry_after(response.headers.get("retry-after"))
                if status == 503
                else None,
            )
        if status >= 400 and not body.lstrip().startswith(b"{"):
            raise KartraResponseError(
                "Kartra refused the request",
                status_code=status,
                excerpt=excerpt(body, self._redact),
            )
        return read_response(status, body, call, secrets=self._redact)


_CLOSE_GRACE = 5.0  #: seconds an unread answer's connection gets to close


async def _abandon(response: httpx.Response, stream: AsyncIterator[bytes]) -> None:
    """Stop reading an answer: close its connection, then run the body's generators
    (httpx's and httpcore's, nested) into the closed socket's error, so that each one
    finishes instead of being collected half-way (which trio reports as a leak)."""
    with anyio.move_on_after(_CLOSE_GRACE, shield=True):
        await response.aclose()
        with contextlib.suppress(Exception):
            for _ in range(64):  # what h11 had buffered, then the error
                await stream.__anext__()


#: asyncio 3.11+ tells a cancellation of its own from others' (Task.uncancel); before
#: that, and on trio, the deadline is anyio's (a cancel scope costs more on asyncio)
_TASK_UNCANCEL = hasattr(asyncio.Task, "uncancel")


def _unencodable(payload: Any, path: str = "", *, nul: bool = False) -> str | None:
    """The path of the first string in `payload` that UTF-8 cannot encode (or, with
    `nul`, that holds a NUL character)."""
    if isinstance(payload, str):
        if nul:
            return (path or "payload") if "\x00" in payload else None
        try:
            payload.encode()
        except UnicodeEncodeError:
            return path or "payload"
        return None
    items: Iterable[tuple[Any, Any]]
    if isinstance(payload, Mapping):
        items = payload.items()
    elif isinstance(payload, (list, tuple)):
        items = enumerate(payload)
    else:
        return None
    for key, value in items:
        where = f"{path}[{key}]" if path else str(key)
        if isinstance(key, str) and _unencodable(key, nul=nul) is not None:
            return ascii(where)
        found = _unencodable(value, where, nul=nul)
        if found is not None:
            return found
    return None


def _joined_since(joined: datetime | None, sent_at: datetime | None, now: datetime) -> bool | None:
    """Whether a lead with this date_joined was created by a call first sent at
    `sent_at`: True, False (it clearly predates the call) or None (cannot tell).

    Kartra's clock may differ from ours by up to RECONCILE_CLOCK_SKEW and date_joined
    may be cut to the minute, so the bound is `sent_at - skew`, floored to the minute;
    "clearly predates" means more than RECONCILE_CLEARLY_BEFORE before that bound. A
    naive time of the hour repeated when US Eastern time falls back reads two ways:
    both must agree. A date_joined past `now` (plus the same allowance) means the
    clocks are further apart than allowed: cannot tell. With no `sent_at`, the lead
    is taken as the call's (nothing can prove otherwise)."""
    if sent_at is None:
        return True
    if joined is None or joined.tzinfo is None:
        return None
    skew = timedelta(seconds=RECONCILE_CLOCK_SKEW)
    bound = (sent_at - skew).astimezone(timezone.utc).replace(second=0, microsecond=0)
    early = joined.replace(fold=0).astimezone(timezone.utc)
    late = joined.replace(fold=1).astimezone(timezone.utc)
    if late < bound - timedelta(seconds=RECONCILE_CLEARLY_BEFORE):
        return False
    if early < bound or early > now + skew + timedelta(minutes=1):
        return None
    return True


def _shifted(action: ActionResult, by: int) -> ActionResult:
    index = action.index + by
    error = action.error
    if error is not None:
        error = error_from_code(
            error.code, error.message, cmd=error.cmd, action_index=index, raw=error.raw
        )
    return attrs.evolve(action, index=index, error=error)


def _tracer(grant: Grant) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpx/httpcore `trace` extension that marks the grant sent when the request's
    headers start going out on a connection ("http11.send_request_headers.started",
    "http2...."; a transport without httpcore may send the same event)."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            grant.sent()

    return trace


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# ---- tenants (the limiter's fair share between the accounts of one App)


def _tenant(tenant: str | None, api_key: str) -> str:
    """The tenant given, or one derived from the api_key that does not reveal it."""
    if tenant is None:
        return "key-" + hashlib.sha256(b"kartra-tenant:" + api_key.encode()).hexdigest()[:12]
    if not isinstance(tenant, str) or not tenant.strip():
        raise KartraValidationError("tenant", "must be a non-empty string")
    return tenant
