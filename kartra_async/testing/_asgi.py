"""The fake's ASGI app: Kartra's endpoint (`POST /api`) and a control API under `/_fake/`.

The control API lets a test suite in any language arrange and inspect the fake over
HTTP, as moto's server mode and stripe-mock do:

    GET  /_fake/state     the state, in seed form (no passwords)
    POST /_fake/seed      add a seed (JSON body, the form in `_seed`); 400 names the error
    POST /_fake/reset     back to the state the app started with, log and faults cleared;
                          body {"empty": true}: every account emptied instead
    POST /_fake/faults    {"inject": [{"kind": "http_5xx", "times": 2}], "latency": 0.2,
                          "clear": true}, each key optional; answers the faults in force
    GET  /_fake/faults    the faults in force
    GET  /_fake/requests  the calls received (credentials removed)

Answers are JSON; errors are `{"error": "..."}` with HTTP 400, 404, 405 or 413.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from ._seed import SeedError
from .fake import FAULT_KINDS, FakeKartra

__all__ = ["ABORT_EXTENSION", "FakeApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: scope["extensions"] key under which a server offers {"abort": callable} to drop the
#: connection without an answer (kartra_async.testing.server's uvicorn protocol does)
ABORT_EXTENSION = "kartra_async.abort"
MAX_BODY = 1 << 20  #: bytes; a larger body is answered 413
_CREDENTIALS = ("app_id", "api_key", "api_password")
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class FakeApp:
    """An ASGI app serving a FakeKartra: `POST /api` as Kartra, `/_fake/...` to control it.

    `body_timeout` (seconds) bounds the wait for a request's body (408 after it);
    `baseline` is the seed `POST /_fake/reset` restores (default: the fake's state now).
    """

    def __init__(
        self,
        fake: FakeKartra,
        *,
        body_timeout: float = 30.0,
        max_body: int = MAX_BODY,
        baseline: dict[str, Any] | None = None,
    ) -> None:
        self.fake = fake
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.baseline = fake.state() if baseline is None else baseline
        self._closing: anyio.Event | None = None
        self._closed = False

    def close(self) -> None:
        """Stop waiting: answers held back (latency, timeout faults) end now, unanswered.
        Call it from the app's event loop."""
        self._closed = True
        if self._closing is not None:
            self._closing.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the app is closing."""
        if self._closed:
            return
        if self._closing is None:
            self._closing = anyio.Event()
        with anyio.move_on_after(seconds):
            await self._closing.wait()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        try:
            if path.rstrip("/") == "/api":
                if scope["method"] != "POST":
                    raise _HTTPError(405, "Method Not Allowed", ((b"allow", b"POST"),))
                await self._kartra(scope, receive, send)
                return
            if path == "/_fake" or path.startswith("/_fake/"):
                status, answer = await self._control(scope, receive)
                await _respond(send, status, json.dumps(answer).encode(), [_JSON])
                return
            raise _HTTPError(404, "Not Found")
        except _HTTPError as exc:
            close = [(b"connection", b"close")] if exc.status in (408, 413) else []
            if path.startswith("/_fake"):
                body = json.dumps({"error": exc.message}).encode()
                await _respond(send, exc.status, body, [_JSON, *exc.headers, *close])
            else:
                await _respond(
                    send, exc.status, exc.message.encode(), [_TEXT, *exc.headers, *close]
                )

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.body_timeout) as scope:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _HTTPError(400, "the client went away")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise _HTTPError(413, f"the body is over {self.max_body} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if scope.cancelled_caught:
            raise _HTTPError(408, f"the body did not arrive within {self.body_timeout:g} s")
        return b"".join(chunks)

    # ---- Kartra

    async def _kartra(self, scope: Scope, receive: Receive, send: Send) -> None:
        fake = self.fake
        body = await self._body(receive)
        client = scope.get("client") or ("127.0.0.1", 0)
        arrival = fake.draw_arrival_delay()  # the one-way trip before the referee counts
        if arrival:
            await self._pause(arrival)
        reply = fake.handle(body, client_ip=client[0], secure=scope.get("scheme") == "https")
        delay = fake.faults.delay()
        if delay:
            await self._pause(delay)
        if reply.fault is not None:
            abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION, {}).get("abort")
            if abort is None:  # a server that cannot drop a connection (httpx.ASGITransport)
                raise ConnectionResetError(f"fake Kartra fault: {reply.fault}")
            if reply.fault == "timeout":
                await self._until_gone(receive)
            abort()
            await receive()  # http.disconnect, once the server saw the connection go
            return
        headers = [(k.encode(), v.encode()) for k, v in reply.headers]
        await _respond(send, reply.status, reply.body, headers)

    async def _until_gone(self, receive: Receive) -> None:
        """Hold the answer back until the client gives up (or the app closes)."""
        if self._closed:
            return
        if self._closing is None:
            self._closing = anyio.Event()
        closing = self._closing
        async with anyio.create_task_group() as group:

            async def closed() -> None:
                await closing.wait()
                group.cancel_scope.cancel()

            group.start_soon(closed)
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

    # ---- control API

    async def _control(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        route = scope["path"][len("/_fake") :].strip("/")
        method = scope["method"]
        routes: dict[str, dict[str, Callable[[Any], Any]]] = {
            "": {"GET": lambda _: {"endpoints": sorted(f"/_fake/{r}" for r in routes if r)}},
            "state": {"GET": lambda _: self.fake.state()},
            "seed": {"POST": self._seed},
            "reset": {"POST": self._reset},
            "faults": {"GET": lambda _: self._faults_now(), "POST": self._faults},
            "requests": {"GET": lambda _: self._requests()},
        }
        handlers = routes.get(route)
        if handlers is None:
            raise _HTTPError(404, f"no such control endpoint: /_fake/{route}")
        handler = handlers.get(method)
        if handler is None:
            allow = ", ".join(handlers).encode()
            raise _HTTPError(
                405, f"/_fake/{route} takes {', '.join(handlers)}", ((b"allow", allow),)
            )
        data: Any = None
        if method == "POST":
            body = await self._body(receive)
            if body.strip():
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise _HTTPError(400, f"the body is not valid JSON ({exc})") from None
        try:
            return 200, handler(data)
        except (SeedError, ValueError, TypeError) as exc:
            raise _HTTPError(400, str(exc)) from None

    def _seed(self, data: Any) -> dict[str, Any]:
        if data is None:
            raise ValueError("POST a seed as a JSON object")
        self.fake.load_seed(data)
        return {"ok": True}

    def _reset(self, data: Any) -> dict[str, Any]:
        if data is not None and not isinstance(data, dict):
            raise ValueError('the body is empty or {"empty": true}')
        empty = bool(data and data.get("empty"))
        self.fake.reset()
        if not empty:
            self.fake.load_seed(self.baseline)
        return {"ok": True}

    def _faults(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValueError('POST {"inject": [...], "latency": ..., "clear": true}')
        unknown = sorted(set(data) - {"inject", "latency", "clear"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: clear, inject, latency)")
        faults = self.fake.faults
        rules = data.get("inject", [])
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ValueError('"inject" is a list of {"kind": ..., "times": N | "share": 0.1}')
        for rule in rules:
            extra = sorted(set(rule) - {"kind", "times", "share", "status"})
            if extra or not isinstance(rule.get("kind"), str):
                raise ValueError(
                    f"a fault is {{kind, times | share, status}}; kinds: {', '.join(FAULT_KINDS)}"
                )
            _number(rule, "times", int)
            _number(rule, "share", float)
            _number(rule, "status", int)
            faults.check(
                rule["kind"],
                times=rule.get("times"),
                share=rule.get("share"),
                status=rule.get("status", 500),
            )
        latency = data.get("latency")
        if "latency" in data and latency is not None:
            if isinstance(latency, list) and len(latency) == 2:
                latency = (_seconds(latency[0]), _seconds(latency[1]))
            else:
                latency = _seconds(latency)
        if data.get("clear"):
            faults.clear()
        for rule in rules:
            faults.inject(
                rule["kind"],
                times=rule.get("times"),
                share=rule.get("share"),
                status=rule.get("status", 500),
            )
        if "latency" in data:
            faults.latency = latency
        return self._faults_now()

    def _faults_now(self) -> dict[str, Any]:
        faults = self.fake.faults
        latency = faults.latency
        return {
            "rules": faults.rules(),
            "latency": list(latency) if isinstance(latency, tuple) else latency,
            "counts": dict(faults.counts),
        }

    def _requests(self) -> list[dict[str, Any]]:
        return [
            {
                "at": r.at,
                "cmds": list(r.cmds),
                "status": r.status,
                "applied": r.applied,
                "fault": r.fault,
                "form": {k: v for k, v in r.form.items() if k not in _CREDENTIALS},
                "app_id": r.form.get("app_id"),
            }
            for r in self.fake.requests
        ]


def _number(rule: dict[str, Any], key: str, kind: type) -> None:
    value = rule.get(key)
    if value is None:
        return
    ok = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if not ok or isinstance(value, bool):
        raise ValueError(f"fault {key} must be a number (got {value!r})")


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ValueError(f"latency is seconds between 0 and 3600, or [low, high] (got {value!r})")
    return float(value)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
