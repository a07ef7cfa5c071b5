"""The app test_callbacks_uvicorn.py serves with a real uvicorn (in a subprocess): a
router whose handler fails once, a middleware that logs each request's full URL (as
careless app code would), and GET /calls to read what the handlers saw."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from kartra_async.fastapi import KartraWebhookRouter
from kartra_async.models import SaleTransaction
from kartra_async.webhooks import TagAssigned

logging.basicConfig(level=logging.INFO, format="APP %(levelname)s %(name)s: %(message)s")
logger = logging.getLogger("callback_app")

SECRET = os.environ["KARTRA_CALLBACK_SECRET"]
app = FastAPI()
router = KartraWebhookRouter(SECRET)
calls: list[str] = []


@app.middleware("http")
async def log_urls(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    logger.info("request to %s", request.url)
    return await call_next(request)


@router.on(TagAssigned)
async def tagged(event: TagAssigned) -> None:
    calls.append(f"tag {event.tag.tag_name if event.tag else None}")
    if calls.count("tag FLAKY") == 1 and event.tag and event.tag.tag_name == "FLAKY":
        raise RuntimeError(f"could not reach https://partner.example/hook/{SECRET}")


@router.on(SaleTransaction)
def sale(ipn: SaleTransaction) -> None:
    calls.append(f"sale {ipn.transaction_id}")


app.include_router(router)


@app.get("/calls")
def read_calls() -> list[str]:
    return calls
