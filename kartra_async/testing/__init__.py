"""FakeKartra: a stateful in-memory Kartra for tests, demos and benchmarks.

    from kartra_async.testing import FakeKartra

    fake = FakeKartra()
    fake.seed()                                  # a demo account (tags, lists, leads, sales)
    async with fake.client() as kartra:          # an AsyncKartra wired to the fake
        await kartra.lead("new@example.com").create().assign_tag("Customer")
    assert "Customer" in fake.lead("new@example.com").tags

Also: `fake.transport()` (httpx), `fake.asgi_app()`, `FakeServer(fake)` (a real HTTP
server on loopback), `python -m kartra_async.testing` and the pytest fixtures
`fake_kartra` / `kartra_client`.
"""

from .fake import FAULT_KINDS, FakeKartra, Faults, RecordedRequest, Reply
from .server import FakeServer
from .transport import FakeTransport

__all__ = [
    "FAULT_KINDS",
    "FakeKartra",
    "FakeServer",
    "FakeTransport",
    "Faults",
    "RecordedRequest",
    "Reply",
]
