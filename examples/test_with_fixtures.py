"""A pytest suite for examples/service.py, written with the fixtures kartra_async's
pytest plugin registers (installing kartra-async is all it takes):

- `fake_kartra`: a fresh FakeKartra per test, EMPTY (seed it), rate limit off;
- `kartra_client`: an AsyncKartra wired to it;
- `fake_kartra_server`: the same fake over HTTP, for a program run as a subprocess;
- `kartra_response_style`: the shape of the fake's answers.

    python -m pytest examples/test_with_fixtures.py

Async tests need `@pytest.mark.anyio` (here for the whole module); the anyio_backend
fixture below runs each on asyncio and on trio (`pip install trio`, or keep "asyncio"
only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from service import SignUp, SignUpService

from kartra_async import ChainError
from kartra_async.testing import RESPONSE_STYLES

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


async def started(kartra_client) -> SignUpService:
    service = SignUpService(kartra_client)
    await service.start()
    return service


async def test_a_new_lead_is_created_tagged_and_subscribed(fake_kartra, kartra_client):
    fake_kartra.seed()  # the demo account: tags, lists, the "interests" field, leads
    service = await started(kartra_client)

    outcome = await service.sign_up(SignUp("ada@example.com", "Ada", ("Marketing", "Sales")))

    lead = fake_kartra.lead("ada@example.com")
    assert (outcome.lead_id, outcome.existed) == (lead.id, False)
    assert lead.fields["first_name"] == "Ada"
    assert lead.tags == ["Customer"]
    assert lead.lists == {"Newsletter": True}
    marketing, sales = service.interest_ids["Marketing"], service.interest_ids["Sales"]
    assert sorted(lead.custom["interests"]) == sorted([marketing, sales])
    # one request for the lookup, ONE for the whole chain
    assert [request.cmds for request in fake_kartra.requests] == [
        ("retrieve_custom_fields",),
        ("create_lead", "assign_tag", "subscribe_lead_to_list"),
    ]


async def test_an_existing_lead_is_tagged(fake_kartra, kartra_client):
    fake_kartra.seed()  # alice@example.com exists
    service = await started(kartra_client)

    outcome = await service.sign_up(SignUp("alice@example.com", "Alice"))

    assert outcome.existed
    assert fake_kartra.lead("alice@example.com").tags == ["Customer"]
    assert [request.cmds for request in fake_kartra.requests[1:]] == [
        ("create_lead", "assign_tag", "subscribe_lead_to_list"),  # refused as a whole (244)
        ("search_lead", "assign_tag", "subscribe_lead_to_list"),
    ]


async def test_on_an_empty_account_the_actions_fail(fake_kartra, kartra_client):
    # nothing seeded: no "Customer" tag, no "Newsletter" list
    service = await started(kartra_client)

    with pytest.raises(ChainError, match="Tag does not exist") as caught:
        await service.sign_up(SignUp("ada@example.com", "Ada"))

    assert len(caught.value.errors) == 2  # the tag and the list
    # nothing is rolled back: the lead was created, without tag or list
    assert fake_kartra.lead("ada@example.com").tags == []


@pytest.mark.parametrize("kartra_response_style", RESPONSE_STYLES)
async def test_the_same_in_every_answer_shape(fake_kartra, kartra_client):
    fake_kartra.seed()
    service = await started(kartra_client)

    await service.sign_up(SignUp("ada@example.com", "Ada"))
    again = await service.sign_up(SignUp("ada@example.com", "Ada"))

    assert again.existed
    assert fake_kartra.lead("ada@example.com").tags == ["Customer"]


# run() uses asyncio's Queue, so this test pins the backend
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_run_reports_every_signup_in_order(fake_kartra, kartra_client):
    fake_kartra.seed()
    service = await started(kartra_client)

    outcomes = await service.run(
        [
            SignUp("ada@example.com", "Ada"),
            SignUp("not-an-email", "Nobody"),
            SignUp("linus@example.com", "Linus", ("Gardening",)),
        ]
    )

    assert [outcome.error for outcome in outcomes] == [
        None,
        "email: must be an email address like name@example.com (got 'not-an-email')",
        "no interest named 'Gardening' (options: Marketing, Sales, Support)",
    ]
    assert fake_kartra.lead("linus@example.com") is None  # nothing was sent for it


async def test_the_whole_program_over_http(fake_kartra, fake_kartra_server):
    """service.py run as a program, pointed at the fake served over HTTP."""
    fake_kartra.seed()
    env = {
        **os.environ,
        "KARTRA_APP_ID": fake_kartra.app_id,
        "KARTRA_API_KEY": fake_kartra.api_key,
        "KARTRA_API_PASSWORD": fake_kartra.api_password,
        "KARTRA_BASE_URL": fake_kartra_server.url,
    }
    script = Path(__file__).with_name("service.py")

    done = await anyio.run_process([sys.executable, str(script)], env=env, check=False)

    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines()[-1] == "3 signed up, 2 refused"
    assert fake_kartra.lead("grace@example.com").tags == ["Customer"]
