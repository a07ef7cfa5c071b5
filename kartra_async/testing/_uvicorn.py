"""uvicorn, fitted for a fake on loopback: a header timeout, dropped connections on
demand, and a shutdown that never has to cancel a request. Imported only when a server
starts (uvicorn is the `server` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._asgi import ABORT_EXTENSION, FakeApp

__all__ = ["protocol_class", "server"]

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    b"content-length: 55\r\n\r\nthe request's headers did not arrive in time; goodbye.\n"
)


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus:

    - a header timeout: a connection that has not sent a whole request head within
      `header_timeout` seconds (of opening, or of its last answer) is closed, with a 408
      if part of a request came (slowloris);
    - `scope["extensions"][ABORT_EXTENSION]["abort"]`: drop the connection unanswered
      (the fake's drop and timeout faults);
    - at shutdown, a request whose body is still arriving is dropped instead of waited for.
    """

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        inner = self.app
        extension = {"abort": self._abort}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = extension
            await inner(scope, receive, send)

        self.app = app

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        if self.conn.trailing_data[0]:
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:
            self._disarm()  # a whole request head arrived

    def on_response_complete(self) -> None:
        self._arm()  # before uvicorn starts a pipelined request (which disarms)
        super().on_response_complete()

    def shutdown(self) -> None:
        cycle = self.cycle
        if (
            cycle is not None
            and not cycle.response_started
            and self.conn.their_state is h11.SEND_BODY
        ):
            self.transport.abort()
            return
        super().shutdown()


def protocol_class(header_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http=`, with this header timeout (seconds)."""
    return type("FakeKartraH11Protocol", (_Protocol,), {"header_timeout": header_timeout})


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FakeApp) -> None:
        super().__init__(config)
        self.fake_app = app
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.fake_app.close()  # held-back answers end now, so no request must be cancelled
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM: a clean shutdown and exit status 0 (uvicorn would raise the
        signal again once done, for a traceback or a -15)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        before = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def server(app: FakeApp, *, header_timeout: float, log: bool = False) -> _Server:
    """A uvicorn Server for `app` (serve it with `.serve(sockets=[...])`)."""
    config = uvicorn.Config(
        app,
        http=protocol_class(header_timeout),
        ws="none",
        lifespan="off",
        interface="asgi3",
        loop="asyncio",
        log_config=None,
        log_level="warning" if log else None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return _Server(config, app)
