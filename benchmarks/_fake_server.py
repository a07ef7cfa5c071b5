"""`python -m kartra_async.testing` with a record of what its rate referee saw.

usage: python benchmarks/_fake_server.py RECORD_FILE [python -m kartra_async.testing args]

Runs the testing server's own `main()` with the same arguments; every call the fake
answers appends "<time.monotonic()> <HTTP status>" to RECORD_FILE at the moment the
referee counted it (after the arrival delay).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from kartra_async.testing import fake as fake_module
from kartra_async.testing.__main__ import main

record = open(sys.argv[1], "w", buffering=1)  # noqa: SIM115 (open for the process's life)
answer = fake_module.FakeKartra.handle


def handle(self: fake_module.FakeKartra, body: bytes, **kwargs: Any) -> fake_module.Reply:
    at = time.monotonic()
    reply = answer(self, body, **kwargs)
    record.write(f"{at:.6f} {reply.status}\n")
    return reply


fake_module.FakeKartra.handle = handle  # type: ignore[method-assign]
sys.exit(main(sys.argv[2:]))
