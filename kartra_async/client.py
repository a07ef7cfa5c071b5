"""AsyncKartra: configuration, lifecycle and `send()`. Nothing cmd-specific lives here:
the command table (commands.py) and the builders (chain.py) carry the API's knowledge."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from types import TracebackType
from typing import Any

import httpx

from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    RATE_LIMIT_PAUSE,
    RATE_LIMIT_PAUSE_MAX,
    RATE_LIMIT_RESENDS,
    USER_AGENT,
)
from .chain import AccountCalls, LeadChain, SubscriptionCalls, TransactionCalls, lead_identity
from .commands import COMMANDS
from .errors import (
    KartraConnectionError,
    KartraResponseError,
    KartraServerError,
    KartraTimeoutError,
    KartraValidationError,
    RateLimitError,
)
from .limits import Priority, RateLimiter, shared_limiter
from .models.results import ChainResult
from .wire import Call, encode_form, excerpt, read_response, unknown_command

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


def _mask(value: str) -> str:
    return f"{value[:3]}***" if len(value) > 6 else "***"


class AsyncKartra:
    """Async client for Kartra's inbound API.

    One instance holds one connection pool, shared by every chain it sends; use it
    with `async with` (or call `aclose()`). An `http_client` you pass in is never
    closed by this client; a `transport` (e.g. FakeKartra's) goes into the client's
    own pool.

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
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport
        )
        self._timeout = timeout
        #: the rate limiter every request waits on (None: no limiting)
        self.limiter: RateLimiter | None = shared_limiter(app_id) if limiter is SHARED else limiter
        self._resends = rate_limit_resends
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
        return f"<AsyncKartra app_id={_mask(self.app_id)!r} base_url={self.base_url!r}>"

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

    async def get_lead(self, email: str) -> Any:
        """Everything Kartra knows about one lead (get_lead); LeadNotFoundError if none."""
        command = COMMANDS["get_lead"]
        wire = command.build({"email": email})
        result = await self.send(Call({"get_lead": wire}, (command,)))
        action = result.actions[0]
        if action.error is not None:
            raise action.error
        return action.data

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

    async def send(self, call: Call, *, priority: Priority = "interactive") -> ChainResult:
        """Send one compiled call as ONE POST (after the rate limiter grants a slot) and
        read Kartra's answer. An HTTP 429 pauses the whole App and sends the call again
        (Kartra did not apply it), up to `rate_limit_resends` times, then RateLimitError."""
        if self._closed:
            raise RuntimeError("this AsyncKartra is closed")
        content = f"{self._form_prefix}&{encode_form(call.payload)}".encode()
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

    async def _post(self, content: bytes, call: Call) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._http.post(self._url, content=content, headers=_HEADERS)
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


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
