"""Contract tests: the docs' sample requests, as raw form bodies (not through the SDK),
sent to the fake's real HTTP server on 127.0.0.1, get the documented answers.
Clients: plain httpx, the curl command, and PHP (stream context, like the docs' PHP)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kartra_async.testing import FakeKartra, FakeServer
from kartra_async.testing._php import parse_str

from .test_php_oracle import FULL_SAMPLES, SAMPLES

CREDS = "app_id=AIm863DwsOW&api_key=QG9GPLW8G&api_password=kdwFAfwrfVS"
IN_CI = os.environ.get("CI") == "true"


def docs_fake(response_style: str = "documented") -> FakeKartra:
    """The demo account plus what the docs' samples name."""
    fake = FakeKartra(
        "AIm863DwsOW", "QG9GPLW8G", "kdwFAfwrfVS", rate_limit=None, response_style=response_style
    )
    fake.seed()
    account = fake.account
    # what the docs' samples name
    account.tags += ["tag name", "My customer"]
    account.lists += ["List name", "My customers newsletter"]
    account.sequences["Sequence name"] = {"1"}
    account.calendars["First calendar"] = type(account.calendars["Coaching"])(
        7, "First calendar", {"First class": 8}
    )
    for email in ("example@email.com", "JoeSmith@domain.com", "test@kartra.com"):
        fake.add_lead(email)
    return fake


@pytest.fixture
def fake() -> FakeKartra:
    """Answers as the docs print them (the table below checks the docs' shapes)."""
    return docs_fake("documented")


@pytest.fixture
def server(fake: FakeKartra) -> Iterator[str]:
    with FakeServer(fake) as url:
        yield url


def _php_bodies(php: str) -> list[str]:
    """The docs' PHP arrays through PHP's own http_build_query."""
    code = (
        "$t = json_decode(stream_get_contents(STDIN), true); $o = [];"
        " foreach ($t as $p) { $o[] = http_build_query(eval('return ' . $p . ';')); } echo json_encode($o);"
    )
    arrays = [sample for _, sample, _ in SAMPLES] + [sample for _, sample, _ in FULL_SAMPLES]
    done = subprocess.run(
        [php, "-r", code], input=json.dumps(arrays), capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout))


EXPECTED: dict[str, Any] = {
    # docs sample name -> (status, documented answer checks)
    "create lead": lambda a: (
        a["status"] == "Success" and a["actions"][0]["create_lead"]["lead_details"]["id"].isdigit()
    ),
    "edit lead": lambda a: a["actions"][0]["edit_lead"]["status"] == "Success",
    "search lead": lambda a: a["message"] == "Lead found" and a["lead_details"]["id"].isdigit(),
    "subscribe list": lambda a: (
        a == {"status": "Success", "message": "Lead subscribed to list", "type": "101"}
    ),
    "unsubscribe list": lambda a: (
        a == {"status": "Success", "message": "Lead unsubscribed from list", "type": "101"}
    ),
    "assign tag": lambda a: (
        a == {"status": "Success", "message": "Tag added to lead", "type": "103"}
    ),
    "unassign tag": lambda a: (
        a == {"status": "Success", "message": "Tag removed from lead", "type": "104"}
    ),
    "give points": lambda a: (
        a == {"status": "Success", "message": "Points added to lead", "type": "105"}
    ),
    "remove points": lambda a: (
        a == {"status": "Success", "message": "Points removed from lead", "type": "106"}
    ),
    "subscribe sequence": lambda a: (
        a == {"status": "Success", "message": "Lead added to sequence", "type": "107"}
    ),
    "unsubscribe sequence": lambda a: (
        a == {"status": "Success", "message": "Lead removed from sequence", "type": "108"}
    ),
    "calendar subscribe": lambda a: (
        a == {"status": "Success", "message": "Lead subscribed to class", "type": "112"}
    ),
    "calendar cancel": lambda a: (
        a == {"status": "Success", "message": "Lead unsubscribed from class", "type": "113"}
    ),
    "create custom field": lambda a: (
        a == {"status": "Success", "message": "Custom Field created", "type": "114"}
    ),
    "search transaction": lambda a: (
        a == {"status": "Error", "message": "Transaction doesn't exist", "type": "247"}
    ),
    "refund transaction": lambda a: a["type"] == "247",
    "edit subscription": lambda a: a["type"] == "248",
    "cancel transaction": lambda a: a["type"] == "248",
    "modify subscription status": lambda a: a["type"] == "248",
    "search subscription": lambda a: a["type"] == "248",
    "get subscription details": lambda a: a["type"] == "248",
    "get transaction details": lambda a: a["type"] == "247",
    "transactions from lead": lambda a: (
        a == {"retrieve_transactions_from_lead": {"transaction_list": []}}
    ),
    "subscriptions from lead": lambda a: (
        a == {"retrieve_subscriptions_from_lead": {"subscriptions_list": []}}
    ),
    "account tags": lambda a: a["status"] == "Success" and "tag name" in a["account_tags"],
    "account lists": lambda a: a["status"] == "Success" and "List name" in a["account_lists"],
    "account sequences": lambda a: (
        a["status"] == "Success" and "Sequence name" in a["account_sequences"]
    ),
    "account pages": lambda a: a["status"] == "Success" and a["account_pages"],
    "custom fields": lambda a: (
        a["status"] == "Success" and a["custom_fields"][0]["field_identifier"] == "company_size"
    ),
    "execute actions to a specific lead": lambda a: (
        [next(iter(x.values()))["type"] for x in a["actions"]] == ["101", "103", "105"]
        and a["lead"] == {"Status": "Found"}
    ),
    "retrieving data for a specific lead": lambda a: (
        a["status"] == "Success" and a["lead_details"]["email"] == "JoeSmith@domain.com"
    ),
}


@pytest.fixture(scope="module")
def docs_bodies() -> list[tuple[str, str]]:
    php = shutil.which("php")
    if php is None:
        if IN_CI:
            raise RuntimeError("CI=true but php-cli is missing")
        pytest.skip(
            "php-cli is not installed: the docs' PHP samples need PHP to build their bodies"
        )
    names = [name for name, _, _ in SAMPLES] + [name for name, _, _ in FULL_SAMPLES]
    bodies = _php_bodies(php)
    return [
        (n, b if b.startswith("app_id=") else f"{CREDS}&{b}")
        for n, b in zip(names, bodies, strict=True)
    ]


def test_docs_requests_get_documented_answers(
    server: str, docs_bodies: list[tuple[str, str]]
) -> None:
    with httpx.Client() as http:
        for name, body in docs_bodies:
            response = http.post(
                server, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert response.status_code == 200, name
            answer = response.json()
            assert EXPECTED[name](answer), (name, answer)


def test_curl_client(server: str, fake: FakeKartra) -> None:
    curl = shutil.which("curl")
    if curl is None:
        if IN_CI:
            raise RuntimeError("CI=true but curl is missing: .ci/run installs it")
        pytest.skip("curl is not installed")
    body = f"{CREDS}&lead[email]=example@email.com&actions[0][cmd]=assign_tag&actions[0][tag_name]=My customer"
    done = subprocess.run(
        [curl, "-sS", "--data", body, server],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert json.loads(done.stdout) == {
        "status": "Success",
        "message": "Tag added to lead",
        "type": "103",
    }
    assert "My customer" in fake.lead("example@email.com").tags  # type: ignore[union-attr]


def test_php_client_from_the_docs(server: str, fake: FakeKartra) -> None:
    php = shutil.which("php")
    if php is None:
        if IN_CI:
            raise RuntimeError("CI=true but php-cli is missing")
        pytest.skip("php-cli is not installed")
    script = """
    $body = http_build_query(array(
        'app_id' => 'AIm863DwsOW', 'api_key' => 'QG9GPLW8G', 'api_password' => 'kdwFAfwrfVS',
        'lead' => array('email' => 'php@example.com', 'first_name' => 'Joe'),
        'actions' => array(
            '0' => array('cmd' => 'create_lead'),
            '1' => array('cmd' => 'assign_tag', 'tag_name' => 'My customer'),
            '2' => array('cmd' => 'give_points_to_lead', 'points' => '12'),
        )));
    $ctx = stream_context_create(array('http' => array('method' => 'POST',
        'header' => 'Content-Type: application/x-www-form-urlencoded', 'content' => $body)));
    $server_json = json_decode(file_get_contents($argv[1], false, $ctx));
    echo $server_json->status . ' ' . $server_json->actions[1]->assign_tag->type . ' ' . $server_json->actions[2]->give_points_to_lead->type;
    """
    done = subprocess.run(
        [php, "-r", script, server], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout == "Success 103 105"
    lead = fake.lead("php@example.com")
    assert lead is not None
    assert (lead.fields["first_name"], lead.tags, lead.score(fake.now())) == (
        "Joe",
        ["My customer"],
        12,
    )


def test_http_details(server: str) -> None:
    with httpx.Client() as http:
        assert http.get(server).status_code == 405
        assert http.post(server.replace("/api", "/nope"), content=b"x").status_code == 404
        # keep-alive: several requests on one connection
        for _ in range(3):
            assert (
                http.post(server, content=f"{CREDS}&actions[0][cmd]=retrieve_account_pages").json()[
                    "status"
                ]
                == "Success"
            )


def test_server_faults(server: str, fake: FakeKartra) -> None:
    fake.faults.inject("drop_after", times=1)
    with httpx.Client(timeout=5) as http:
        body = f"{CREDS}&lead[email]=example@email.com&actions[0][cmd]=give_points_to_lead&actions[0][points]=3"
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(server, content=body)
        assert fake.lead("example@email.com").score(fake.now()) == 3  # type: ignore[union-attr]
        fake.faults.inject("timeout", times=1)
        with pytest.raises(httpx.ReadTimeout):
            http.post(server, content=body, timeout=0.3)


def test_python_m_server_cli() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kartra_async.testing",
            "--port",
            "0",
            "--app-id",
            "A",
            "--api-key",
            "K",
            "--api-password",
            "P",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake Kartra listening on http://127.0.0.1:")
        url = line.split()[4]
        answer = httpx.post(
            url,
            content="app_id=A&api_key=K&api_password=P&actions[0][cmd]=retrieve_account_tags",
            timeout=10,
        ).json()
        assert answer["status"] == "Success"
        assert "Customer" in answer["account_tags"]  # the seeded demo account
        wrong = httpx.post(
            url,
            content="app_id=A&api_key=K&api_password=nope&actions[0][cmd]=retrieve_account_tags",
            timeout=10,
        ).json()
        assert wrong == {
            "status": "Error",
            "message": "API password not valid. Please get an API password first",
            "type": "233",
        }
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_parse_str_basics() -> None:
    assert parse_str("a[b][c]=1&a[b][d]=2&x=%7E+y") == {
        "a": {"b": {"c": "1", "d": "2"}},
        "x": "~ y",
    }
    assert parse_str("l[]=a&l[]=b&l[5]=c&l[]=d") == {"l": {"0": "a", "1": "b", "5": "c", "6": "d"}}
    assert parse_str("a.b=1&c d=2&e[f=3&[g]=4") == {"a_b": "1", "c_d": "2", "e_f": "3"}
    assert parse_str("a=1&a[b]=2") == {"a": {"b": "2"}}
    assert parse_str("a[b]x=1") == {"a": {"b": "1"}}
