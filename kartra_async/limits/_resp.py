"""A minimal Redis client on anyio (asyncio and trio): RESP2 over a blocking pool.

redis-py's asyncio client runs on asyncio only; the limiter needs a handful of
commands (EVALSHA, SCRIPT LOAD, LREM, DEL) on both backends, so it speaks RESP itself.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc

__all__ = ["RedisError", "RespPool"]


class RedisError(Exception):
    """An error reply from Redis."""


def _encode(*args: Any) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            self.buffer += await self.stream.receive()

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self.buffer += await self.stream.receive()
        data = bytes(self.buffer[:size])
        del self.buffer[: size + 2]
        return data

    async def reply(self) -> Any:
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else await self._exactly(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [await self.reply() for _ in range(count)]
        raise RedisError(f"unexpected reply {line[:40]!r}")

    async def call(self, *args: Any) -> Any:
        await self.stream.send(_encode(*args))
        return await self.reply()


class RespPool:
    """Connections to one Redis (redis://[:password@]host:port/db); waits, never fails,
    when all `max_connections` are busy."""

    def __init__(self, url: str, max_connections: int = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, got {parts.scheme!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.db = int(parts.path.strip("/") or 0)
        self._idle: deque[_Connection] = deque()
        self._slots = anyio.Semaphore(max_connections, fast_acquire=True)
        self._scripts: dict[str, str] = {}

    async def _connect(self) -> _Connection:
        connection = _Connection(await anyio.connect_tcp(self.host, self.port))
        if self.password is not None:
            await connection.call("AUTH", self.password)
        if self.db:
            await connection.call("SELECT", self.db)
        return connection

    async def call(self, *args: Any) -> Any:
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                result = await connection.call(*args)
            except RedisError:
                self._idle.append(connection)
                raise
            except BaseException:
                await anyio.aclose_forcefully(connection.stream)
                raise
            self._idle.append(connection)
            return result

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it first when Redis does not know it."""
        sha = self._scripts.get(script) or hashlib.sha1(script.encode()).hexdigest()
        self._scripts[script] = sha
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.call("SCRIPT", "LOAD", script)
        return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        while self._idle:
            await anyio.aclose_forcefully(self._idle.pop().stream)
