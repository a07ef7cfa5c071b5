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
(`?secret=<secret>`), with a constant-time compare, and keeps it out of every log line
(`kartra_async.webhooks.redact_in_logs`). FastAPI and uvicorn only: these parts run
on asyncio (Starlette itself is anyio-based, so the router also runs under trio).
"""

from __future__ import annotations

import hmac
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from ._client import AsyncKartra
from .models.payments import Transaction
from .webhooks import (
    Claim,
    DeadLetter,
    Event,
    HandlerRetry,
    KartraWebhookError,
    MemorySeenStore,
    SeenStore,
    dedupe_key,
    parse_event,
    parse_ipn,
    redact_in_logs,
)

__all__ = ["KartraWebhookRouter", "get_kartra", "kartra_lifespan"]

logger = logging.getLogger("kartra_async.fastapi")

T = TypeVar("T")
Handler = Callable[[Any], Awaitable[None] | None]
OnFailure = Callable[[DeadLetter], Awaitable[None] | None]
Received = Event | Transaction


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
    and 400 (with the reason) for a body that is not a Kartra callback. Then it runs the
    handlers registered with `@router.on(EventClass)`:

    - by default, before answering: 200 once every handler succeeded, 500 if one
      raised, so a sender that retries delivers the callback again;
    - with `background=True`, after answering 200: a failing handler runs again
      (`retry`: bounded attempts, exponential backoff), and a callback whose handlers
      never succeed goes to `on_failure` as a `DeadLetter` holding the raw body.

    Deduplication (`dedupe=True`): a callback counts as seen only once every handler
    succeeded, and only for `dedupe_window` seconds (0 turns it off). An event's key is
    its whole body, an IPN's its transaction_id and transaction_type
    (`kartra_async.webhooks.dedupe_key`). A seen callback answers 200 with
    `"duplicate": true`; one that another request is handling right now answers 503
    with Retry-After (default mode) or 200 (background mode, which already owns it).
    `seen_store` is where keys live: in memory by default, `RedisSeenStore` to share
    them between workers (entered by the router's lifespan). `lease` is how long one run
    of the handlers may hold a callback before a concurrent duplicate may run it too.
    """

    def __init__(
        self,
        secret: str,
        *,
        path: str = "/kartra/callback",
        max_body: int = 256 * 1024,
        dedupe: bool = True,
        dedupe_window: float = 300.0,
        seen_store: SeenStore | None = None,
        background: bool = False,
        retry: HandlerRetry | None = None,
        on_failure: OnFailure | None = None,
        lease: float = 60.0,
        **kwargs: Any,
    ) -> None:
        if len(secret) < 16:
            raise ValueError(
                "use a secret of at least 16 characters (Kartra does not sign callbacks)"
            )
        if dedupe_window < 0 or lease <= 0:
            raise ValueError("dedupe_window must be >= 0 (0: off) and lease > 0 seconds")
        if background and on_failure is None:
            raise ValueError(
                "background=True needs on_failure: a dead-letter hook that keeps the "
                "callbacks whose handlers kept failing"
            )
        if on_failure is not None and not background:
            raise ValueError(
                "on_failure is for background=True; by default a failing handler answers "
                "500 and the sender delivers the callback again"
            )
        if "lifespan" in kwargs:
            raise TypeError("the router's lifespan connects its seen-store: give yours to the app")
        redact_in_logs(secret)
        super().__init__(lifespan=self._lifespan, **kwargs)
        self._secret = secret.encode()
        self.max_body = max_body
        self.dedupe = dedupe and dedupe_window > 0
        self.dedupe_window = float(dedupe_window)
        self.seen_store: SeenStore = seen_store if seen_store is not None else MemorySeenStore()
        self.background = background
        self.retry = retry if retry is not None else HandlerRetry()
        self.on_failure = on_failure
        self.lease = float(lease)
        self._handlers: list[tuple[tuple[type, ...], Handler]] = []
        self.add_api_route(path, self._receive, methods=["POST"], include_in_schema=False)
        self.add_api_route(
            path + "/{token}", self._receive, methods=["POST"], include_in_schema=False
        )

    def __repr__(self) -> str:
        mode = "background" if self.background else "before-answer"
        return f"KartraWebhookRouter({mode}, dedupe={self.dedupe}, store={self.seen_store!r})"

    @asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        """Connects the seen-store if it is an async context manager (RedisSeenStore)."""
        async with AsyncExitStack() as stack:
            if hasattr(self.seen_store, "__aenter__"):
                await stack.enter_async_context(self.seen_store)  # type: ignore[arg-type]
            yield

    def on(self, *types: type) -> Callable[[T], T]:
        """Register a handler (sync or async) for events or IPN transactions of these
        classes (every callback if none). Sync handlers run in a worker thread. A
        handler may run more than once for one callback (a redelivery after another
        handler failed, a dedupe window that has passed): make it idempotent."""

        def register(handler: T) -> T:
            self._handlers.append((types or (object,), handler))  # type: ignore[arg-type]
            return handler

        return register

    @property
    def _claim_lease(self) -> float:
        if not self.background:
            return self.lease
        return self.lease * (self.retry.attempts + 1) + self.retry.total_delay

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
                received: Received = parse_event(body)
            elif kind == "application/x-www-form-urlencoded":
                received = parse_ipn(body)
            else:
                return JSONResponse(
                    {"error": "expected application/json or a form post"}, status_code=415
                )
        except KartraWebhookError as exc:
            return JSONResponse({"error": exc.reason}, status_code=400)
        key = dedupe_key(received)
        answer: dict[str, Any] = {"status": "ok", "type": type(received).__name__}
        answer["dedupe_key"] = key
        handlers = [h for types, h in self._handlers if isinstance(received, types)]
        if not handlers:
            return JSONResponse(answer)
        claim_token = uuid.uuid4().hex
        if self.dedupe:
            try:
                claim = await self.seen_store.claim(key, claim_token, self._claim_lease)
            except Exception:
                logger.exception("Kartra callback %s: the seen-store failed", key)
                return _later("the seen-store is unavailable; send the callback again later")
            if claim is Claim.SEEN:
                answer["duplicate"] = True
                return JSONResponse(answer)
            if claim is Claim.BUSY:
                if not self.background:
                    return _later("this callback is being handled; send it again later")
                answer.update(duplicate=True, in_progress=True)
                return JSONResponse(answer)
        if self.background:
            background.add_task(
                self._handle_in_background, received, handlers, key, claim_token, body, kind
            )
            answer["status"] = "accepted"
            return JSONResponse(answer)
        done = False
        try:
            failed = await self._run(received, handlers)
            done = True
        finally:
            if not done:  # cancelled: let a redelivery run it
                with anyio.CancelScope(shield=True):
                    await self._forget(key, claim_token)
        if failed:
            await self._forget(key, claim_token)
            answer.update(status="error", error="a handler failed; send the callback again")
            return JSONResponse(answer, status_code=500)
        await self._remember(key)
        return JSONResponse(answer)

    async def _run(
        self, received: Received, handlers: Sequence[Handler], attempt: str = ""
    ) -> list[tuple[Handler, Exception]]:
        """Run every handler; the ones that raised, with their exceptions."""
        failed = []
        for handler in handlers:
            try:
                if inspect.iscoroutinefunction(handler):
                    await handler(received)
                else:
                    result = await anyio.to_thread.run_sync(handler, received)
                    if inspect.isawaitable(result):
                        await result
            except Exception as exc:
                logger.exception(
                    "Kartra callback handler %s failed on %s%s",
                    _name(handler),
                    type(received).__name__,
                    attempt,
                )
                failed.append((handler, exc))
        return failed

    async def _handle_in_background(
        self,
        received: Received,
        handlers: list[Handler],
        key: str,
        claim_token: str,
        body: bytes,
        kind: str,
    ) -> None:
        retry = self.retry
        pending: Sequence[Handler] = handlers
        error: BaseException | None = None
        attempt = 0
        try:
            while True:
                attempt += 1
                failed = await self._run(
                    received, pending, f" (attempt {attempt} of {retry.attempts})"
                )
                if not failed:
                    await self._remember(key)
                    return
                pending, error = [h for h, _ in failed], failed[-1][1]
                if attempt >= retry.attempts:
                    break
                await retry.sleep(retry.delay(attempt))
            reason = f"{len(pending)} handler(s) still failing after {attempt} attempts"
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._forget(key, claim_token)
                await self._dead_letter(
                    DeadLetter(
                        body=body,
                        content_type=kind,
                        received=received,
                        key=key,
                        attempts=attempt,
                        handlers=tuple(map(_name, pending)),
                        error=None,
                        reason="cancelled (the server is shutting down) before its handlers succeeded",
                    )
                )
            raise
        await self._forget(key, claim_token)
        await self._dead_letter(
            DeadLetter(
                body=body,
                content_type=kind,
                received=received,
                key=key,
                attempts=attempt,
                handlers=tuple(map(_name, pending)),
                error=error,
                reason=reason,
            )
        )

    async def _dead_letter(self, letter: DeadLetter) -> None:
        assert self.on_failure is not None
        try:
            if inspect.iscoroutinefunction(self.on_failure):
                await self.on_failure(letter)
            else:
                result = await anyio.to_thread.run_sync(self.on_failure, letter)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            # the hook was the last place to keep it: the log is all that is left
            logger.exception(
                "on_failure failed on Kartra callback %s (%s); its body was %r",
                letter.key,
                letter.reason,
                letter.body,
            )
        else:
            logger.error("Kartra callback %s handed to on_failure: %s", letter.key, letter.reason)

    async def _remember(self, key: str) -> None:
        if not self.dedupe:
            return
        try:
            await self.seen_store.mark_seen(key, self.dedupe_window)
        except Exception:
            logger.exception(
                "Kartra callback %s was handled but the seen-store failed: "
                "a redelivery would run it again",
                key,
            )

    async def _forget(self, key: str, claim_token: str) -> None:
        if not self.dedupe:
            return
        try:
            await self.seen_store.release(key, claim_token)
        except Exception:
            logger.exception(
                "Kartra callback %s: the seen-store failed to release it; until its lease "
                "ends, a redelivery counts as in progress",
                key,
            )


def _later(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=503, headers={"Retry-After": "5"})


def _name(handler: Any) -> str:
    return str(getattr(handler, "__name__", None) or handler)
