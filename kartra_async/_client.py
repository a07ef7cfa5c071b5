"""AsyncKartra: configuration, lifecycle and `send()`. Nothing cmd-specific lives here:
the command table (_commands.py: including how an ambiguous call is reconciled) and the
builders (_chain.py) carry the API's knowledge."""

from __future__ import annotations

import asyncio
import contextlib
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
from datetime import datetime, timezone
from functools import cached_property
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import anyio
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
from ._commands import COMMANDS, Call, unknown_command
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_DEADLINE,
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    MAX_ANSWER_BYTES,
    MAX_FORM_VARS,
    USER_AGENT,
)
from ._form import encode_form
from ._redact import mask
from ._response import excerpt, read_response, retry_after
from ._retry import Decision, RetryEvent, RetryPolicy, ambiguous_error, decide
from ._scrub import Redactor
from ._types import NOT_GIVEN, NotGiven
from .errors import (
    KartraConnectionError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    RateLimitError,
    TransportFailure,
)
from .limits import Grant, Priority, RateLimiter, shared_limiter
from .models.lead import Lead
from .models.results import ChainResult

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
_CREDENTIAL_VARS = 3  #: app_id, api_key and api_password: the form variables of every body
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


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise KartraValidationError(field, f"must be True or False (got {value!r})")
    return value


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
        limiter: RateLimiter | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        reconcile: bool = False,
        deadline: float = DEFAULT_DEADLINE,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_form_vars: int = MAX_FORM_VARS,
        tenant: str | None = None,
    ) -> None:
        """`limiter`: not given, the App's shared in-process limiter
        (`kartra_async.limits.shared_limiter`, or the fake's when `transport` serves a
        FakeKartra); None: no limiting. `retry`: when and how patiently failed and
        429-refused calls are sent again (default `RetryPolicy()`). `reconcile`: settle an
        ambiguous call with its first cmd's strategy in the command table (a chain that
        creates its lead: look the lead up) instead of raising AmbiguousResultError."""
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
        url = _check_base_url(base_url)
        timeout = _check_timeout(timeout)
        deadline = _seconds("deadline", deadline, finite=True)
        max_answer_bytes = _count("max_answer_bytes", max_answer_bytes, 1)
        max_form_vars = _count("max_form_vars", max_form_vars, _CREDENTIAL_VARS + 1)
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        if isinstance(limiter, NotGiven):
            # a transport that serves a fake Kartra brings the limiter of the fake's App
            own = getattr(transport, "shared_limiter", None)
            limiter = own(app_id) if own is not None else shared_limiter(app_id)
        http = http_client or httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport, headers=_HEADERS
        )
        self._configure(
            app_id=app_id,
            secrets=(api_key, api_password),
            url=url,
            http=http,
            owns_http=http_client is None,
            owns_pool=http_client is None,
            timeout=timeout,
            request_timeout=None,
            limiter=limiter,
            retry=retry or RetryPolicy(),
            reconcile=_flag("reconcile", reconcile),
            deadline=deadline,
            max_answer_bytes=max_answer_bytes,
            max_form_vars=max_form_vars,
            clock=_utc_now,
            tenant=_tenant(tenant, api_key),
        )

    def _configure(
        self,
        *,
        app_id: str,
        secrets: tuple[str, str],
        url: httpx.URL,
        http: httpx.AsyncClient,
        owns_http: bool,
        owns_pool: bool,
        timeout: httpx.Timeout | float | None,
        request_timeout: httpx.Timeout | None,
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        reconcile: bool,
        deadline: float,
        max_answer_bytes: int,
        max_form_vars: int,
        clock: Callable[[], datetime],
        tenant: str,
    ) -> None:
        """Set every field of the instance (the constructor and `with_options` both come here)."""
        self.app_id = app_id
        #: the account this client's calls count for in the App's fair share (limits)
        self.tenant = tenant
        self._url = url
        self._secrets = secrets
        self._redact = Redactor(secrets)
        api_key, api_password = secrets
        # the credentials' share of every body, encoded once
        self._form_prefix = encode_form(
            {"app_id": app_id, "api_key": api_key, "api_password": api_password}
        )
        self._prefix_vars = self._form_prefix.count("&") + 1
        self._deadline = deadline
        self._max_answer_bytes = max_answer_bytes
        self._max_form_vars = _count("max_form_vars", max_form_vars, self._prefix_vars + 1)
        self._clock = clock  #: wall clock (a reconcile's send time)
        self._http = http
        self._owns_http = owns_http  #: aclose() closes the pool
        self._owns_pool = owns_pool  #: the pool is ours (views included): no merging needed
        # our own pool carries the headers; a borrowed one gets them on each request
        self._headers: dict[str, str] | None = None if owns_pool else _BORROWED_HEADERS
        self._timeout = timeout
        self._request_timeout = request_timeout
        #: the rate limiter every request waits on (None: no limiting)
        self.limiter: RateLimiter | None = limiter
        #: when and how patiently failed and 429-refused calls are sent again
        self.retry: RetryPolicy = retry
        #: whether an ambiguous call is reconciled with its first cmd's strategy
        self.reconcile: bool = reconcile
        self._closed = False

    @classmethod
    def from_env(
        cls,
        *,
        app_id: str | None = None,
        api_key: str | None = None,
        api_password: str | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        limiter: RateLimiter | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        reconcile: bool = False,
        deadline: float = DEFAULT_DEADLINE,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_form_vars: int = MAX_FORM_VARS,
        tenant: str | None = None,
    ) -> AsyncKartra:
        """A client configured from the environment, with keyword overrides.

        The credentials come from `KARTRA_APP_ID`, `KARTRA_API_KEY` and
        `KARTRA_API_PASSWORD` and the URL from `KARTRA_BASE_URL` (optional), unless
        given here: a keyword that is not None wins over its variable, and a variable
        is required only when its keyword is not given. Every other keyword goes to the
        constructor as it is.

        Raises:
            KartraValidationError: a required variable is missing or empty (its name is
                the error's `field`), or a value breaks the constructor's rules.
        """
        given = {"app_id": app_id, "api_key": api_key, "api_password": api_password}
        credentials: dict[str, str] = {}
        for field, name in _ENV.items():
            value = given[field]
            if value is None:
                value = os.environ.get(name, "")
                if not value.strip():
                    raise KartraValidationError(name, "environment variable is missing or empty")
            credentials[field] = value
        if base_url is None:
            base_url = os.environ.get("KARTRA_BASE_URL", "").strip() or DEFAULT_BASE_URL
        return cls(
            credentials["app_id"],
            credentials["api_key"],
            credentials["api_password"],
            base_url=base_url,
            http_client=http_client,
            transport=transport,
            timeout=timeout,
            limits=limits,
            limiter=limiter,
            retry=retry,
            reconcile=reconcile,
            deadline=deadline,
            max_answer_bytes=max_answer_bytes,
            max_form_vars=max_form_vars,
            tenant=tenant,
        )

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
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        reconcile: bool | NotGiven = NOT_GIVEN,
        timeout: httpx.Timeout | float | NotGiven | None = NOT_GIVEN,
        limiter: RateLimiter | NotGiven | None = NOT_GIVEN,
        deadline: float | NotGiven = NOT_GIVEN,
        max_answer_bytes: int | NotGiven = NOT_GIVEN,
        max_form_vars: int | NotGiven = NOT_GIVEN,
        tenant: str | NotGiven = NOT_GIVEN,
    ) -> AsyncKartra:
        """A new client for the calls made through it, with other settings and the same
        connection pool and credentials, e.g.
        `await kartra.with_options(retry=RetryPolicy(max_attempts=5), timeout=60).account.tags()`.
        What is not given stays as it is (`limiter=None`: no limiting, `timeout=None`: no
        httpx timeouts, the deadline still applies). Closing it never closes the pool."""
        request_timeout = self._request_timeout
        if not isinstance(timeout, NotGiven):
            checked = _check_timeout(timeout)
            request_timeout = (
                checked if isinstance(checked, httpx.Timeout) else httpx.Timeout(checked)
            )
        return self._clone(
            retry=self.retry if isinstance(retry, NotGiven) else retry,
            reconcile=self.reconcile
            if isinstance(reconcile, NotGiven)
            else _flag("reconcile", reconcile),
            request_timeout=request_timeout,
            limiter=self.limiter if isinstance(limiter, NotGiven) else limiter,
            deadline=self._deadline
            if isinstance(deadline, NotGiven)
            else _seconds("deadline", deadline, finite=True),
            max_answer_bytes=self._max_answer_bytes
            if isinstance(max_answer_bytes, NotGiven)
            else _count("max_answer_bytes", max_answer_bytes, 1),
            max_form_vars=self._max_form_vars
            if isinstance(max_form_vars, NotGiven)
            else _count("max_form_vars", max_form_vars, _CREDENTIAL_VARS + 1),
            tenant=self.tenant if isinstance(tenant, NotGiven) else _tenant(tenant, ""),
        )

    def _clone(
        self,
        *,
        retry: RetryPolicy,
        reconcile: bool,
        request_timeout: httpx.Timeout | None,
        limiter: RateLimiter | None,
        deadline: float,
        max_answer_bytes: int,
        max_form_vars: int,
        tenant: str,
    ) -> AsyncKartra:
        """A new instance on this one's pool, credentials and clock, never owning the pool."""
        view = type(self).__new__(type(self))
        view._configure(
            app_id=self.app_id,
            secrets=self._secrets,
            url=self._url,
            http=self._http,
            owns_http=False,
            owns_pool=self._owns_pool,
            timeout=self._timeout,
            request_timeout=request_timeout,
            limiter=limiter,
            retry=retry,
            reconcile=reconcile,
            deadline=deadline,
            max_answer_bytes=max_answer_bytes,
            max_form_vars=max_form_vars,
            clock=self._clock,
            tenant=tenant,
        )
        view._closed = self._closed  # a view of a closed client is closed too
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
        call = Call({command.params_in: wire}, (command,), wire.get("id"))
        return await send_single(self, call, Lead)

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
        reconcile: bool | NotGiven = NOT_GIVEN,
        on_send: Callable[[], None] | None = None,
        tenant: str | None = None,
    ) -> ChainResult:
        """Send one compiled call as ONE POST and read Kartra's answer.

        Waits for the rate limiter first. HTTP 429 pauses the whole App and sends the call
        again (Kartra did not apply it). Failures are sent again only where a repeat
        cannot do harm (see kartra_async._retry); otherwise AmbiguousResultError, or, with
        `reconcile` (default: the client's), the call's first cmd's strategy settles it.
        `retry` overrides the client's RetryPolicy for this call. `on_send` is called once
        per attempt, after the limiter's grant, right before the request leaves; what it
        raises stops the attempt unsent. `tenant` overrides the client's account in the
        limiter's fair share for this call.
        """
        if self._closed:
            raise RuntimeError("this AsyncKartra is closed")
        policy = retry or self.retry
        content = self._encode(call)
        wanted = self.reconcile if isinstance(reconcile, NotGiven) else reconcile
        strategy = call.commands[0].reconcile if wanted and call.commands else None
        sent_at = self._clock() if strategy is not None else None
        attempt = 1
        while True:
            try:
                return await self._send_once(
                    content,
                    call,
                    priority,
                    policy,
                    on_send,
                    self.tenant if tenant is None else tenant,
                )
            except KartraError as error:
                decision = decide(error, call)
                if decision is Decision.RAISE:
                    raise
                if decision is Decision.AMBIGUOUS:
                    if strategy is not None:
                        return await self._settle(
                            call, error, priority, policy, sent_at, None, tenant
                        )
                    raise ambiguous_error(call, error) from error
                if attempt >= policy.max_attempts:
                    raise
                delay = policy.delay(attempt)
                if isinstance(error, KartraServerError) and error.retry_after is not None:
                    delay = max(delay, min(error.retry_after, policy.server_retry_after_max))
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

    async def reconcile_ambiguous(
        self,
        call: Call,
        *,
        priority: Priority = "interactive",
        on_send: Callable[[], None] | None = None,
        sent_at: datetime | None = None,
    ) -> ChainResult:
        """Settle `call`, which may or may not have been applied, with its first cmd's
        strategy in the command table (`Command.reconcile`; a chain that creates its
        lead looks the lead up); used by fan_out to resume items in flight at a crash.
        ValueError if the first cmd has none. `on_send` is called before each request
        it makes (lookups included).

        `sent_at` (aware) is when the call was first sent: a lead found that joined
        before it (allowing RECONCILE_CLOCK_SKEW and date_joined's minute precision)
        was not made by the call. None means unknown: the lead found is taken as made
        by the call, as nothing can prove otherwise."""
        if call.commands[0].reconcile is None:
            raise ValueError(f"{call.cmds[0]} has no reconcile strategy in the command table")
        return await self._settle(call, None, priority, self.retry, sent_at, on_send)

    async def _settle(
        self,
        call: Call,
        error: KartraError | None,
        priority: Priority,
        policy: RetryPolicy,
        sent_at: datetime | None,
        on_send: Callable[[], None] | None,
        tenant: str | None = None,
    ) -> ChainResult:
        strategy = call.commands[0].reconcile
        assert strategy is not None

        async def send(again: Call) -> ChainResult:
            return await self.send(
                again,
                priority=priority,
                retry=policy,
                reconcile=False,
                on_send=on_send,
                tenant=tenant,
            )

        return await strategy(call, error, send=send, sent_at=sent_at, clock=self._clock)

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
        policy: RetryPolicy,
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
                await limiter.backoff(policy.rate_limit_delay(retry_after))
            if limiter is None or resends >= policy.rate_limit_resends:
                raise RateLimitError(
                    f"Kartra answered 429 Too many requests ({resends} resends)",
                    retry_after=retry_after,
                )
            resends += 1

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
        request.stream = _Body(content)  # headers (Content-Length) and .content stay
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


class _Body(httpx.AsyncByteStream):
    """A request body of one chunk, iterated without an async generator: httpx's own
    (`ByteStream.__aiter__`) is left suspended when a send is cancelled mid-write, and
    its finalizer then runs from the garbage collector, after the trio run or the
    asyncio loop that owned it may be gone ("Exception ignored in ...")."""

    __slots__ = ("_content",)

    def __init__(self, content: bytes) -> None:
        self._content = content

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _OneChunk(self._content)


class _OneChunk:
    __slots__ = ("_chunk",)

    def __init__(self, chunk: bytes) -> None:
        self._chunk: bytes | None = chunk

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            raise StopAsyncIteration
        return chunk


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
