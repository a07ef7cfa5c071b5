"""FastAPI integration (`pip install 'kartra-async[fastapi]'`).

    from kartra_async.fastapi import KartraWebhookRouter, get_kartra, kartra_lifespan

    app = FastAPI(lifespan=kartra_lifespan())          # ONE AsyncKartra, from the env
    callbacks = KartraWebhookRouter(secret=os.environ["KARTRA_CALLBACK_SECRET"])

    @callbacks.on(TagAssigned)
    async def tagged(event: TagAssigned) -> None: ...

    app.include_router(callbacks)

    @app.post("/signup")
    async def signup(email: str, kartra: AsyncKartra = Depends(get_kartra)): ...

Kartra signs neither its events nor its IPN posts, so the router checks a secret of
your own, carried in the URL path (`/kartra/callback/<secret>`) or a query parameter
(`?secret=<secret>`), with a constant-time compare.
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from ._client import AsyncKartra
from .webhooks import Event, KartraWebhookError, parse_event, parse_ipn

__all__ = ["KartraWebhookRouter", "get_kartra", "kartra_lifespan"]

logger = logging.getLogger("kartra_async.fastapi")

T = TypeVar("T")
Handler = Callable[[Any], Awaitable[None] | None]


def kartra_lifespan(
    factory: Callable[[], AsyncKartra] = AsyncKartra.from_env,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that opens ONE AsyncKartra at startup (its connection pool and
    rate limiter shared by every request) and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with factory() as kartra:
            app.state.kartra = kartra
            try:
                yield
            finally:
                del app.state.kartra

    return lifespan


def get_kartra(request: Request) -> AsyncKartra:
    """Dependency: the app's shared AsyncKartra (`kartra: AsyncKartra = Depends(get_kartra)`)."""
    kartra = getattr(request.app.state, "kartra", None)
    if not isinstance(kartra, AsyncKartra):
        raise RuntimeError(
            "no AsyncKartra on app.state: create the app with FastAPI(lifespan=kartra_lifespan())"
        )
    return kartra


class KartraWebhookRouter(APIRouter):
    """POST endpoint for Kartra's outbound events (JSON) and IPN posts (form fields).

    Checks the secret (403), caps the body (413), answers 415 for another content type
    and 400 for a body that is not a Kartra callback; otherwise answers 200 at once and
    runs the handlers registered with `@router.on(EventClass)` in the background, logging
    their exceptions. With `dedupe=True` an event seen recently (by `dedupe_key`) is
    acknowledged but not handled again.
    """

    def __init__(
        self,
        secret: str,
        *,
        path: str = "/kartra/callback",
        max_body: int = 256 * 1024,
        dedupe: bool = True,
        dedupe_window: int = 10_000,
        **kwargs: Any,
    ) -> None:
        if len(secret) < 16:
            raise ValueError(
                "use a secret of at least 16 characters (Kartra does not sign callbacks)"
            )
        super().__init__(**kwargs)
        self._secret = secret.encode()
        self.max_body = max_body
        self.dedupe = dedupe
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._window = dedupe_window
        self._handlers: list[tuple[tuple[type, ...], Handler]] = []
        self.add_api_route(path, self._receive, methods=["POST"], include_in_schema=False)
        self.add_api_route(
            path + "/{token}", self._receive, methods=["POST"], include_in_schema=False
        )

    def on(self, *types: type) -> Callable[[T], T]:
        """Register a handler (sync or async) for events or IPN transactions of these classes."""

        def register(handler: T) -> T:
            self._handlers.append((types or (object,), handler))  # type: ignore[arg-type]
            return handler

        return register

    async def _body(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _receive(
        self, request: Request, background: BackgroundTasks, token: str | None = None
    ) -> JSONResponse:
        supplied = (token or request.query_params.get("secret") or "").encode()
        if not hmac.compare_digest(supplied, self._secret):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        body = await self._body(request)
        if body is None:
            return JSONResponse({"error": f"body over {self.max_body} bytes"}, status_code=413)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if kind == "application/json":
                received: Any = parse_event(body)
            elif kind == "application/x-www-form-urlencoded":
                received = parse_ipn(body)
            else:
                return JSONResponse(
                    {"error": "expected application/json or a form post"}, status_code=415
                )
        except KartraWebhookError as exc:
            return JSONResponse({"error": exc.reason}, status_code=400)
        answer: dict[str, Any] = {"status": "ok", "type": type(received).__name__}
        if isinstance(received, Event):
            key = received.dedupe_key
            answer["dedupe_key"] = key
            if self.dedupe and self._remember(key):
                answer["duplicate"] = True
                return JSONResponse(answer)
        for types, handler in self._handlers:
            if isinstance(received, types):
                background.add_task(_run, handler, received)
        return JSONResponse(answer)

    def _remember(self, key: str) -> bool:
        """True if the key was seen already; remembers the last `dedupe_window` keys."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)
        return False


async def _run(handler: Handler, received: Any) -> None:
    try:
        result = handler(received)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception(
            "Kartra callback handler %s failed on %s",
            getattr(handler, "__name__", handler),
            type(received).__name__,
        )
