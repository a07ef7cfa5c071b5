"""A throwaway redis-server on 127.0.0.1 for tests and benchmarks of RedisLimiter."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["redis_server"]


@contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """Start `redis-server` on a free loopback port (no persistence), yield its URL, stop it.
    Raises FileNotFoundError if redis-server is not installed, RuntimeError if it won't start."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(
            "redis-server is not installed (Debian: apt-get install redis-server)"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
