"""The SDK's own cost per call against the floor, in ONE run, both through the same
httpx MockTransport answering the same canned JSON.

(a) floor: a hand-written call that posts a pre-built bracket-keyed dict with a plain
    httpx.AsyncClient and json.loads the answer;
(b) the SDK: `await kartra.lead(email).create(...).assign_tag(...).subscribe_list(...)`
    with the limiter on (uncontended) and results structured into models.
Also get_lead with the docs' full sample against hand-written call + json.loads.
Targets: chain ratio b/a <= 1.15; get_lead ratio <= 1.6 (see BENCHMARKS.md). Exit status 1
when missed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
from _common import CHAIN_ANSWER, GET_LEAD_BODY, compare, interleaved_async, verdict

from kartra_async import AsyncKartra, Limiter
from kartra_async.models import Lead

URL = "https://app.kartra.com/api"
FORM = {
    "app_id": "AIm863DwsOW",
    "api_key": "QG9GPLW8G",
    "api_password": "kdwFAfwrfVS",
    "lead[email]": "john@example.com",
    "lead[first_name]": "John",
    "lead[last_name]": "Smith",
    "actions[0][cmd]": "create_lead",
    "actions[1][cmd]": "assign_tag",
    "actions[1][tag_name]": "My customer",
    "actions[2][cmd]": "subscribe_lead_to_list",
    "actions[2][list_name]": "Newsletter",
}
GET_LEAD_FORM = {
    "app_id": "AIm863DwsOW",
    "api_key": "QG9GPLW8G",
    "api_password": "kdwFAfwrfVS",
    "get_lead[email]": "john@example.com",
}


def transport(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, content=body))


async def measure() -> dict[str, float]:
    limiter = Limiter(10**9, 1.0)  # on, never reached
    chain_http = httpx.AsyncClient(transport=transport(CHAIN_ANSWER))
    get_http = httpx.AsyncClient(transport=transport(GET_LEAD_BODY))
    credentials = ("AIm863DwsOW", "QG9GPLW8G", "kdwFAfwrfVS")
    async with (
        chain_http,
        get_http,
        AsyncKartra(*credentials, transport=transport(CHAIN_ANSWER), limiter=limiter) as chain_sdk,
        AsyncKartra(*credentials, transport=transport(GET_LEAD_BODY), limiter=limiter) as get_sdk,
    ):

        async def floor_chain() -> object:
            response = await chain_http.post(URL, data=FORM)
            return json.loads(response.content)

        async def sdk_chain() -> object:
            result = await (
                chain_sdk.lead("john@example.com")
                .create(first_name="John", last_name="Smith")
                .assign_tag("My customer")
                .subscribe_list("Newsletter")
            )
            assert result.lead_id == 1234
            return result

        async def floor_get() -> object:
            response = await get_http.post(URL, data=GET_LEAD_FORM)
            return json.loads(response.content)

        async def sdk_get() -> object:
            lead = await get_sdk.get_lead("john@example.com")
            assert isinstance(lead, Lead)
            assert len(lead.surveys) == 2
            return lead

        return await interleaved_async(
            {
                "floor_chain": floor_chain,
                "sdk_chain": sdk_chain,
                "floor_get": floor_get,
                "sdk_get": sdk_get,
            },
            number=1000,
        )


def main() -> int:
    t = asyncio.run(measure())
    (chain,) = compare(
        "The SDK's own cost per call, 3-action chain, httpx MockTransport",
        "us/call",
        ("hand-written post + json.loads", t["floor_chain"]),
        ("kartra_async: lead().create().assign_tag().subscribe_list()", t["sdk_chain"]),
    )
    (get,) = compare(
        "The SDK's own cost per call, get_lead with the docs' full sample",
        "us/call",
        ("hand-written post + json.loads", t["floor_get"]),
        ("kartra_async: get_lead() -> Lead", t["sdk_get"]),
    )
    ok = verdict(chain <= 1.15, f"chain ratio {chain:.2f} <= 1.15")
    ok &= verdict(get <= 1.6, f"get_lead ratio {get:.2f} <= 1.6")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
