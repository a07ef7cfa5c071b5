"""AsyncKartra: configuration, lifecycle and `send()`. Nothing cmd-specific lives here:
the command table (commands.py) and the builders (chain.py) carry the API's knowledge."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import logging
import os
import time
import warnings
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from functools import cached_property
from types import TracebackType
from typing import Any

import attrs
import httpx

from ._bulk import FanOut
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
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    RATE_LIMIT_PAUSE,
    RATE_LIMIT_PAUSE_MAX,
    RATE_LIMIT_RESENDS,
    USER_AGENT,
)
from ._form import encode_form
from ._redact import mask
from ._response import excerpt, read_response
from ._retry import Decision, RetryEvent, RetryPolicy, ambiguous_error, decide
from .errors import (
    KartraConnectionError,
    KartraError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    LeadNotFoundError,
    RateLimitError,
    error_from_code,
)
from .limits import Priority, RateLimiter, shared_limiter
from .models.lead import Lead, LeadRef
from .models.results import ActionResult, ChainResult

__all__ = ["AsyncKartra"]

logger = logging.getLogger("kartra_async")

_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
    "User-Agent": USER_AGENT,
}
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


class AsyncKartra:
    """Async client for Kartra's inbound API.

    One instance holds one connection pool, shared by every chain it sends; use it
    with `async with` (or call `aclose()`). An `http_client` you pass in is never
    closed by this client; a `transport` (e.g. FakeKartra's) goes into the client's
    own pool.

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
    ) -> None:
        for field, value in (
            ("app_id", app_id),
            ("api_key", api_key),
            ("api_password", api_password),
        ):
            if not isinstance(value, str) or not value.strip():
                raise KartraValidationError(field, "must be a non-empty string")
        self._url = _check_base_url(base_url)
        self.app_id = app_id
        self._secrets = (api_key, api_password)
        # the credentials' share of every body, encoded once
        self._form_prefix = encode_form(
            {"app_id": app_id, "api_key": api_key, "api_password": api_password}
        )
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        self._owns_http = http_client is None
        self._owns_pool = http_client is None  #: stays True in with_options views
        # our own pool carries the headers; a borrowed one gets them on each request
        self._headers: dict[str, str] | None = None if http_client is None else _HEADERS
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport, headers=_HEADERS
        )
        self._timeout = timeout
        #: the rate limiter every request waits on (None: no limiting)
        self.limiter: RateLimiter | None = shared_limiter(app_id) if limiter is SHARED else limiter
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

    def __repr__(self) -> str:
        return f"<AsyncKartra app_id={mask(self.app_id)!r} base_url={self.base_url!r}>"

    def with_options(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        limiter: RateLimiter | None = SHARED,
    ) -> AsyncKartra:
        """A view of this client with other settings for the calls made through it
        (same pool, credentials and, unless given, limiter), e.g.
        `await kartra.with_options(retry=RetryPolicy(max_attempts=5), timeout=60).account.tags()`."""
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
    ) -> ChainResult:
        """Send one compiled call as ONE POST and read Kartra's answer.

        Waits for the rate limiter first. HTTP 429 pauses the whole App and sends the call
        again (Kartra did not apply it). Failures are sent again only where a repeat
        cannot do harm (see kartra_async._retry); otherwise AmbiguousResultError.
        """
        if self._closed:
            raise RuntimeError("this AsyncKartra is closed")
        policy = retry or self.retry
        content = f"{self._form_prefix}&{encode_form(call.payload)}".encode()
        attempt = 1
        while True:
            try:
                return await self._send_once(content, call, priority)
            except KartraError as error:
                decision = decide(error, call)
                if decision == Decision.RAISE:
                    raise
                if decision == Decision.AMBIGUOUS:
                    if policy.reconcile_create and call.cmds[0] == "create_lead":
                        return await self._reconcile(call, error, priority, policy)
                    raise ambiguous_error(call, error) from error
                if attempt >= policy.max_attempts:
                    raise
                delay = policy.delay(attempt)
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

    async def _send_once(self, content: bytes, call: Call, priority: Priority) -> ChainResult:
        limiter = self.limiter
        resends = 0
        while True:
            if limiter is not None:
                await limiter.acquire(priority)
            response = await self._post(content, call)
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
        self, call: Call, *, priority: Priority = "interactive"
    ) -> ChainResult:
        """Finish a chain that starts with create_lead and may or may not have been applied
        (see `_reconcile`); used by fan_out to resume items in flight at a crash."""
        return await self._reconcile(call, None, priority, self.retry)

    def fan_out(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        build: Callable[[Any], LeadChain],
        **options: Any,
    ) -> FanOut:
        """One chain per item at the limiter's pace (priority "bulk"), with an optional
        resumable journal: see kartra_async._bulk. Options: concurrency, journal, key,
        priority, progress, retry_failed, reconcile."""
        return FanOut(self, items, build, **options)

    async def _reconcile(
        self, call: Call, error: KartraError | None, priority: Priority, policy: RetryPolicy
    ) -> ChainResult:
        """An ambiguous chain that starts with create_lead: search the lead. Not found:
        nothing was applied (every other action needs the lead), so send it all again.
        Found: create_lead was applied; send the rest if every remaining cmd is safe."""
        policy = attrs.evolve(policy, reconcile_create=False)
        email = call.payload["lead"].get("email")
        search = Call(
            {"lead": {"email": email}, "actions": [{"cmd": "search_lead"}]},
            (COMMANDS["search_lead"],),
        )
        try:
            found = await self.send(search, priority=priority, retry=policy)
        except LeadNotFoundError:
            logger.info("create_lead for %s was not applied: sending the chain again", email)
            return await self.send(call, priority=priority, retry=policy)
        lead_id = found.lead_id
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

    async def _post(self, content: bytes, call: Call) -> httpx.Response:
        started = time.perf_counter()
        try:
            if self._owns_pool:
                # our own pool has no cookies, auth or default params to merge: build the
                # request directly (half of httpx's per-request cost is that merging)
                timeout = self._request_timeout or self._http.timeout
                request = httpx.Request(
                    "POST", self._url, content=content, headers=_HEADERS,
                    extensions={"timeout": timeout.as_dict()},
                )  # fmt: skip
                response = await self._http.send(request)
            else:
                response = await self._http.post(
                    self._url,
                    content=content,
                    headers=self._headers,
                    timeout=self._request_timeout or httpx.USE_CLIENT_DEFAULT,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # the connection never opened: Kartra never saw the call
            cls = (
                KartraConnectionError if isinstance(exc, httpx.ConnectError) else KartraTimeoutError
            )
            raise cls(
                f"{type(exc).__name__} calling Kartra ({', '.join(call.cmds)})", request_sent=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise KartraTimeoutError(
                f"{type(exc).__name__} calling Kartra ({', '.join(call.cmds)})"
            ) from exc
        except httpx.TransportError as exc:
            raise KartraConnectionError(
                f"{type(exc).__name__} calling Kartra ({', '.join(call.cmds)})"
            ) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "POST %s cmds=%s -> HTTP %d in %.3fs",
                self._url, ",".join(call.cmds), response.status_code, time.perf_counter() - started,
            )  # fmt: skip
        return response

    def _read(self, response: httpx.Response, call: Call) -> ChainResult:
        status, body = response.status_code, response.content
        if status >= 500:
            raise KartraServerError(
                "Kartra answered a server error",
                status_code=status,
                excerpt=excerpt(body, self._secrets),
            )
        if status >= 400 and not body.lstrip().startswith(b"{"):
            raise KartraResponseError(
                "Kartra refused the request",
                status_code=status,
                excerpt=excerpt(body, self._secrets),
            )
        return read_response(status, body, call, secrets=self._secrets)


def _shifted(action: ActionResult, by: int) -> ActionResult:
    index = action.index + by
    error = action.error
    if error is not None:
        error = error_from_code(
            error.code, error.message, cmd=error.cmd, action_index=index, raw=error.raw
        )
    return attrs.evolve(action, index=index, error=error)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
