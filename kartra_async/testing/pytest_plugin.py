"""pytest fixtures (registered through the `pytest11` entry point):

- `fake_kartra`: a fresh, empty FakeKartra per test (rate limit off; `.seed()` for a demo);
- `kartra_client`: an AsyncKartra wired to it, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .._client import AsyncKartra
from .fake import FakeKartra


@pytest.fixture
def fake_kartra() -> FakeKartra:
    return FakeKartra(rate_limit=None)


@pytest.fixture
async def kartra_client(fake_kartra: FakeKartra) -> AsyncIterator[AsyncKartra]:
    async with fake_kartra.client() as client:
        yield client
