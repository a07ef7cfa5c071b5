"""Ways in to a FakeKartra: an httpx transport (in process) and an ASGI app."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx

from ._asgi import FakeApp
from .fake import FakeKartra

if TYPE_CHECKING:
    from ..limits import Limiter

__all__ = ["FakeTransport", "asgi_app"]


class FakeTransport(httpx.AsyncBaseTransport):
    """Answers every request from a FakeKartra, acting out its faults:
    dropped connections raise httpx.RemoteProtocolError, a timeout httpx.ReadTimeout.

    A request leaves when it enters the transport (it reports that moment through the
    request's httpx `trace` extension, as httpcore does), reaches the fake after the
    fake's arrival delay, and its answer comes back after the fake's latency."""

    def __init__(self, fake: FakeKartra) -> None:
        self.fake = fake

    def shared_limiter(self, app_id: str) -> Limiter | None:
        """The fake App's limiter (AsyncKartra's default when given this transport)."""
        return self.fake.shared_limiter(app_id)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions.get("trace")
        if trace is not None:
            await trace("fake.send_request_headers.started", {"request": request})
        body = await request.aread()
        arrival = self.fake.draw_arrival_delay()
        if arrival:
            await anyio.sleep(arrival)
        reply = self.fake.handle(body, secure=request.url.scheme == "https")
        # latency: from Kartra receiving the call to the answer arriving
        delay = self.fake.faults.delay()
        if delay:
            await anyio.sleep(delay)
        if reply.fault == "refuse":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if reply.fault in ("drop_before", "drop_after"):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if reply.fault == "timeout":
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        return httpx.Response(
            reply.status, headers=list(reply.headers), content=reply.body, request=request
        )


def asgi_app(fake: FakeKartra) -> FakeApp:
    """An ASGI app answering POST /api from `fake`, with the control API under /_fake/."""
    return FakeApp(fake)
