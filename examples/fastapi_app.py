"""A small FastAPI app: receives Kartra's callbacks and calls back into Kartra through
the ONE shared client.

    KARTRA_APP_ID=... KARTRA_API_KEY=... KARTRA_API_PASSWORD=... \\
    KARTRA_CALLBACK_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(24))') \\
    uvicorn examples.fastapi_app:app

Point Kartra's outbound API (My Integrations > My API > Outbound API) and each
product's IPN at https://your.host/kartra/callback/<KARTRA_CALLBACK_SECRET>.
Without a Kartra account, serve the fake over HTTP (`python -m kartra_async.testing`,
the demo account) and set KARTRA_APP_ID=fake-app KARTRA_API_KEY=fake-key
KARTRA_API_PASSWORD=fake-password KARTRA_BASE_URL=http://127.0.0.1:8765/api.
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

from fastapi import Depends, FastAPI, HTTPException

from kartra_async import AsyncKartra, KartraValidationError, LeadExistsError
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
async def customers_join_the_list(event: TagAssigned) -> None:
    """Every lead tagged Customer joins the Customers list, through the shared client. A
    failure raises (a lone action's error fails the call): Kartra gets a 500."""
    if event.tag is not None and event.tag.tag_name == "Customer" and event.lead.email:
        kartra: AsyncKartra = app.state.kartra
        await kartra.lead(event.lead.email).subscribe_list("Customers")


@callbacks.on(ProductBought, SaleTransaction)
def log_sale(event: object) -> None:
    logger.info("sale: %r", event)


app.include_router(callbacks)


@app.post("/signup")
async def signup(email: str, kartra: AsyncKartra = Depends(get_kartra)) -> dict[str, object]:
    """Create the lead tagged "Lead Magnet", or tag the lead that already exists."""
    try:
        lead = kartra.lead(email)
    except KartraValidationError as exc:  # nothing was sent
        raise HTTPException(422, str(exc)) from None
    try:
        result = await lead.create().assign_tag("Lead Magnet")
        created = True
    except LeadExistsError:  # create_lead refused the whole call: nothing was applied
        result = await lead.search().assign_tag("Lead Magnet")
        created = False
    if not result.ok:  # an action failed (the tag was deleted in Kartra?)
        raise HTTPException(502, "; ".join(str(error) for error in result.errors))
    return {"lead_id": result.lead_id, "created": created}
