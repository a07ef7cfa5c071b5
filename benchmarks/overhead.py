"""The SDK's own cost per call against the floor, in ONE run, both through the same
httpx MockTransport answering the same canned JSON.

(a) floor: a hand-written call that posts a pre-built bracket-keyed dict with a plain
    httpx.AsyncClient and json.loads the answer;
(b) the SDK: `await kartra.lead(email).create(...).assign_tag(...).subscribe_list(...)`
    with the limiter on (uncontended) and results structured into models.
Also get_lead with the docs' full sample against hand-written call + json.loads.
Targets: chain ratio b/a <= 1.15; get_lead ratio <= 1.3. Exit status 1 when missed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
from _common import GET_LEAD_BODY, machine, table, verdict

from kartra_async import AsyncKartra, Limiter
from kartra_async.models import Lead

URL = "https://app.kartra.com/api"
CHAIN_ANSWER = json.dumps(
    {
        "status": "Success",
        "lead": {"Status": "Created"},
        "actions": [
            {"create_lead": {"status": "Success", "lead_details": {"id": "1234"}}},
            {"assign_tag": {"status": "Success", "message": "Tag added to lead", "type": "103"}},
            {
                "subscribe_lead_to_list": {
                    "status": "Success",
                    "message": "Lead subscribed to list",
                    "type": "101",
                }
            },
        ],
    }
).encode()
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


async def best(fn: Callable[[], Awaitable[object]], n: int = 3000, repeat: int = 7) -> float:
    for _ in range(300):
        await fn()
    result = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        result = min(result, (time.perf_counter() - start) / n)
    return result


async def measure() -> dict[str, float]:
    out = {}
    async with httpx.AsyncClient(transport=transport(CHAIN_ANSWER)) as plain:

        async def floor_chain() -> object:
            response = await plain.post(URL, data=FORM)
            return json.loads(response.content)

        out["floor_chain"] = await best(floor_chain)
    limiter = Limiter(10**9, 1.0)  # on, never reached
    async with AsyncKartra(
        "AIm863DwsOW",
        "QG9GPLW8G",
        "kdwFAfwrfVS",
        transport=transport(CHAIN_ANSWER),
        limiter=limiter,
    ) as kartra:

        async def sdk_chain() -> object:
            result = await (
                kartra.lead("john@example.com")
                .create(first_name="John", last_name="Smith")
                .assign_tag("My customer")
                .subscribe_list("Newsletter")
            )
            assert result.lead_id == 1234
            return result

        out["sdk_chain"] = await best(sdk_chain)
    async with httpx.AsyncClient(transport=transport(GET_LEAD_BODY)) as plain:

        async def floor_get() -> object:
            response = await plain.post(URL, data=GET_LEAD_FORM)
            return json.loads(response.content)

        out["floor_get"] = await best(floor_get)
    async with AsyncKartra(
        "AIm863DwsOW",
        "QG9GPLW8G",
        "kdwFAfwrfVS",
        transport=transport(GET_LEAD_BODY),
        limiter=limiter,
    ) as kartra:

        async def sdk_get() -> object:
            lead = await kartra.get_lead("john@example.com")
            assert isinstance(lead, Lead)
            assert len(lead.surveys) == 2
            return lead

        out["sdk_get"] = await best(sdk_get)
    return out


def main() -> int:
    t = asyncio.run(measure())
    chain, get = t["sdk_chain"] / t["floor_chain"], t["sdk_get"] / t["floor_get"]
    print(
        table(
            f"The SDK's own cost per call, httpx MockTransport ({machine()})",
            [
                (
                    "floor: hand-written post + json.loads (3-action chain)",
                    f"{t['floor_chain'] * 1e6:.1f}",
                    "1.00",
                ),
                (
                    "kartra_async: lead().create().assign_tag().subscribe_list()",
                    f"{t['sdk_chain'] * 1e6:.1f}",
                    f"{chain:.2f}",
                ),
                (
                    "floor: hand-written get_lead + json.loads (docs' full sample)",
                    f"{t['floor_get'] * 1e6:.1f}",
                    "1.00",
                ),
                ("kartra_async: get_lead() -> Lead", f"{t['sdk_get'] * 1e6:.1f}", f"{get:.2f}"),
            ],
            ("what", "us/call", "ratio"),
        )
    )
    ok = verdict(chain <= 1.15, f"chain ratio {chain:.2f} <= 1.15")
    ok &= verdict(get <= 1.3, f"get_lead ratio {get:.2f} <= 1.3")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
