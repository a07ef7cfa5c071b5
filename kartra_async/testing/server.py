"""A real HTTP/1.1 server for a FakeKartra on loopback, so clients in any language
(PHP, curl, ...) written from Kartra's docs can be pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from .fake import FakeKartra

__all__ = ["FakeServer", "serve"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip
MAX_BODY = 1 << 20


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    keep_alive: bool,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [
        f"Content-Length: {len(body)}",
        "Connection: " + ("keep-alive" if keep_alive else "close"),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


async def _connection(
    fake: FakeKartra, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
    text = (("content-type", "text/plain"),)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = request_line.split(" ")
            if len(parts) != 3:
                await _respond(writer, 400, b"Bad Request", text, False)
                return
            method, target, version = parts
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
            length = headers.get("content-length")
            if method == "POST" and (length is None or not length.isdigit()):
                await _respond(writer, 411, b"Length Required", text, False)
                return
            if length is not None and int(length) > MAX_BODY:
                await _respond(writer, 413, b"Payload Too Large", text, False)
                return
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            body = await reader.readexactly(int(length)) if length else b""
            if method != "POST":
                await _respond(writer, 405, b"Method Not Allowed", text, keep_alive)
                continue
            if target.split("?")[0].rstrip("/") != "/api":
                await _respond(writer, 404, b"Not Found", text, keep_alive)
                continue
            arrival = fake.draw_arrival_delay()  # the one-way delay before the referee counts
            if arrival:
                await asyncio.sleep(arrival)
            reply = fake.handle(body, client_ip=peer[0], secure=False)
            delay = fake.faults.delay()
            if delay:
                await asyncio.sleep(delay)
            if reply.fault in ("drop_before", "drop_after", "refuse"):
                return  # close without an answer
            if reply.fault == "timeout":
                await reader.read()  # never answer; wait for the client to give up
                return
            await _respond(writer, reply.status, reply.body, reply.headers, keep_alive)
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(fake: FakeKartra, host: str = "127.0.0.1", port: int = 8765) -> asyncio.Server:
    """Start serving `fake` on host:port (port 0: any free port); returns the server."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _connection(fake, reader, writer)

    return await asyncio.start_server(handler, host, port)


class FakeServer:
    """Serve a FakeKartra from a background thread: `with FakeServer(fake) as url: ...`."""

    def __init__(self, fake: FakeKartra, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake, self.host, self.port = fake, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def __enter__(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                server = await serve(self.fake, self.host, self.port)
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self.port = server.sockets[0].getsockname()[1]
            self._loop = asyncio.get_running_loop()
            ready.set()
            async with server:
                await self._stop.wait()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="fake-kartra", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
