"""A small FastAPI app: receives Kartra's callbacks and calls back into Kartra through
the ONE shared client.

    KARTRA_APP_ID=... KARTRA_API_KEY=... KARTRA_API_PASSWORD=... \\
    KARTRA_CALLBACK_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(24))') \\
    uvicorn examples.fastapi_app:app

Point Kartra's outbound API (My Integrations > My API > Outbound API) and each
product's IPN at https://your.host/kartra/callback/<KARTRA_CALLBACK_SECRET>.
It refuses to start without KARTRA_CALLBACK_SECRET: a default secret would be a
published one. With several workers, set KARTRA_SEEN_REDIS_URL (redis://...) so they
share which callbacks were handled (`pip install 'kartra-async[redis]'`).

Each handler runs before the answer: if it raises, Kartra gets a 500 and a redelivery
runs it again. For acknowledge-at-once with local retries, pass `background=True` and an
`on_failure` hook that stores the DeadLetter somewhere durable.
"""

from __future__ import annotations

import logging
import os

from fastapi import Depends, FastAPI

from kartra_async import AsyncKartra
from kartra_async.fastapi import KartraWebhookRouter, get_kartra, kartra_lifespan
from kartra_async.models import SaleTransaction
from kartra_async.webhooks import MemorySeenStore, ProductBought, RedisSeenStore, TagAssigned

logger = logging.getLogger("example")

SECRET = os.environ.get("KARTRA_CALLBACK_SECRET", "")
if len(SECRET) < 16:
    raise SystemExit(
        "KARTRA_CALLBACK_SECRET is not set (or shorter than 16 characters): set it to a "
        "random secret, e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
    )
REDIS_URL = os.environ.get("KARTRA_SEEN_REDIS_URL")

app = FastAPI(lifespan=kartra_lifespan())
callbacks = KartraWebhookRouter(
    secret=SECRET,
    seen_store=RedisSeenStore(REDIS_URL) if REDIS_URL else MemorySeenStore(),
)


@callbacks.on(TagAssigned)
async def welcome_vips(event: TagAssigned) -> None:
    """Every lead tagged VIP joins the VIP list (the shared client, priority interactive)."""
    if event.tag is not None and event.tag.tag_name == "VIP" and event.lead.email:
        kartra: AsyncKartra = app.state.kartra
        await kartra.lead(event.lead.email).subscribe_list("VIP Newsletter")


@callbacks.on(ProductBought, SaleTransaction)
def log_sale(event: object) -> None:
    logger.info("sale: %r", event)


app.include_router(callbacks)


@app.post("/signup")
async def signup(email: str, kartra: AsyncKartra = Depends(get_kartra)) -> dict[str, object]:
    result = await kartra.lead(email).create().assign_tag("Lead Magnet")
    return {"ok": result.ok, "lead_id": result.lead_id}
