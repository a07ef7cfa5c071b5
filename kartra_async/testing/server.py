"""A real HTTP server for a FakeKartra on loopback, so clients in any language (PHP,
curl, Node, ...) written from Kartra's docs can be pointed at it.

The fake's ASGI app (`POST /api` and the control API under `/_fake/`) is served by
uvicorn (the `server` extra: `pip install kartra-async[server]`), which handles
keep-alive and malformed requests (400); a header timeout and a body timeout bound
what a slow client can hold.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from typing import TYPE_CHECKING, Any

from ._asgi import FakeApp
from .fake import FakeKartra

if TYPE_CHECKING:
    from ._uvicorn import _Server

__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "FakeServer", "PortInUseError", "listen"]

HEADER_TIMEOUT = 10.0  #: seconds a connection may take to send a request's head
BODY_TIMEOUT = 30.0  #: seconds a request may take to send its body


class PortInUseError(OSError):
    """Another server already listens on the host and port asked for."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        super().__init__(
            errno.EADDRINUSE,
            f"{host}:{port} is already in use (another server listens there)",
        )

    def __str__(self) -> str:
        return str(self.strerror)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: a free port); PortInUseError if that is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from None
        raise
    return sock


def _uvicorn() -> Any:
    try:
        from . import _uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the fake's HTTP server needs uvicorn: pip install 'kartra-async[server]'"
        ) from exc
    return _uvicorn


class FakeServer:
    """Serve a FakeKartra over HTTP from a background thread, on uvicorn:

        fake = FakeKartra()
        with FakeServer(fake) as url:      # "http://127.0.0.1:<free port>/api"
            ...

    Leaving the block stops the server without errors: idle connections are closed,
    answers held back by latency go out at once, connections held by the timeout fault
    or still sending their request are dropped.
    `header_timeout` / `body_timeout` (seconds) bound slow clients; `POST /_fake/reset`
    restores the fake's state as it was when the server started.
    """

    def __init__(
        self,
        fake: FakeKartra,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.fake, self.host, self.port = fake, host, port
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.app: FakeApp | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: list[BaseException] = []

    @property
    def url(self) -> str:
        """Kartra's endpoint on this server."""
        return f"http://{self._host_in_url}:{self.port}/api"

    @property
    def control_url(self) -> str:
        """The control API's root (`.../_fake/`)."""
        return f"http://{self._host_in_url}:{self.port}/_fake/"

    @property
    def _host_in_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self) -> str:
        """Start serving; returns the URL. PortInUseError if the port is taken."""
        module = _uvicorn()
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.app = FakeApp(self.fake, body_timeout=self.body_timeout)
        self._server = server = module.server(self.app, header_timeout=self.header_timeout)

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()
                self._failure.append(exc)
                server.ready.set()
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="fake-kartra-server", daemon=True)
        self._thread.start()
        if not server.ready.wait(30) or self._failure:
            self.stop()
            if self._failure:
                raise self._failure[0]
            raise TimeoutError("the fake Kartra server did not start within 30 s")
        return self.url

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        server = self._server
        if server is not None:
            server.should_exit = True  # uvicorn looks at it every 0.1 s
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
