"""FakeKartra: a stateful in-memory Kartra for tests, demos and benchmarks.

    from kartra_async.testing import FakeKartra

    fake = FakeKartra()
    fake.seed()                                  # a demo account (tags, lists, leads, sales)
    async with fake.client() as kartra:          # an AsyncKartra wired to the fake
        await kartra.lead("new@example.com").create().assign_tag("Customer")
    assert "Customer" in fake.lead("new@example.com").tags

Also: `fake.transport()` (httpx), `fake.asgi_app()` (with the control API under
/_fake/), `FakeServer(fake)` (a real HTTP server on loopback, on uvicorn),
`fake.load_seed(...)` / `fake.state()` (JSON seeds, see `demo_seed_path()`),
`python -m kartra_async.testing` (a server for test suites in any language) and the
pytest fixtures `fake_kartra`, `kartra_client`, `fake_kartra_server`,
`kartra_response_style`.
"""

from ._asgi import FakeApp
from ._seed import SeedError, demo_seed_path
from .fake import FAULT_KINDS, RESPONSE_STYLES, FakeKartra, Faults, RecordedRequest, Reply
from .server import FakeServer, PortInUseError
from .transport import FakeTransport

__all__ = [
    "FAULT_KINDS",
    "RESPONSE_STYLES",
    "FakeApp",
    "FakeKartra",
    "FakeServer",
    "FakeTransport",
    "Faults",
    "PortInUseError",
    "RecordedRequest",
    "Reply",
    "SeedError",
    "demo_seed_path",
]
