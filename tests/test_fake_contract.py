"""Contract tests from issue 16: the exact bodies real, public Kartra clients send (WP
Fusion Lite, noobtask, communication-analyzer, strapi-populator, a NestJS service),
over real HTTP to the fake's server in its default answer shape, and the parts of the
answer each client reads. PHP and Node read them as those clients do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kartra_async.testing import FakeKartra, FakeServer

CREDS = "app_id=AIm863DwsOW&api_key=QG9GPLW8G&api_password=kdwFAfwrfVS"
IN_CI = os.environ.get("CI") == "true"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def fake() -> FakeKartra:
    fake = FakeKartra("AIm863DwsOW", "QG9GPLW8G", "kdwFAfwrfVS", rate_limit=None)
    fake.seed()
    fake.load_seed(
        {
            "tags": ["WP Member", "Course Buyer"],
            "lists": ["Members"],
            "leads": [
                {
                    "id": 1027,
                    "email": "wpuser@example.com",
                    "first_name": "Wanda",
                    "tags": ["WP Member", "Course Buyer"],
                    "lists": ["Members"],
                    "points": 40,
                    "notes": "imported from WordPress",
                }
            ],
        }
    )
    return fake


@pytest.fixture
def url(fake: FakeKartra) -> Iterator[str]:
    with FakeServer(fake) as url:
        yield url


def post(url: str, body: str) -> Any:
    response = httpx.post(url, content=body, headers=FORM, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_get_lead_by_id_wp_fusion(url: str) -> None:
    # WP Fusion: $params['body']['get_lead']['id'] = $contact_id; reads lead_details->tags[]->tag_name
    answer = post(url, f"{CREDS}&get_lead%5Bid%5D=1027")
    assert answer["status"] == "Success"
    details = answer["lead_details"]
    assert [tag["tag_name"] for tag in details["tags"]] == ["WP Member", "Course Buyer"]
    assert (details["id"], details["email"], details["first_name"]) == (
        "1027",
        "wpuser@example.com",
        "Wanda",
    )
    # the docs' field table: score and blacklisted integers, notes present
    assert (details["score"], details["blacklisted"], details["notes"]) == (
        40,
        0,
        "imported from WordPress",
    )
    assert post(url, f"{CREDS}&get_lead%5Bid%5D=999999") == {
        "status": "Error",
        "message": "No lead found",
        "type": "234",
    }


def test_single_calendar_action_nestjs(url: str) -> None:
    # NestJS KartraService reads result.data.actions[0].calendar_subscribe (and _cancel)
    lead = "lead%5Bemail%5D=wpuser%40example.com"
    booked = post(
        url,
        f"{CREDS}&{lead}&actions%5B0%5D%5Bcmd%5D=calendar_subscribe"
        "&actions%5B0%5D%5Bcalendar_name%5D=Coaching&actions%5B0%5D%5Bclass_name%5D=Strategy+Call",
    )
    assert booked["actions"][0]["calendar_subscribe"] == {
        "status": "Success",
        "message": "Lead subscribed to class",
        "type": "112",
    }
    assert (booked["status"], booked["type"]) == ("Success", "112")
    cancelled = post(
        url,
        f"{CREDS}&{lead}&actions%5B0%5D%5Bcmd%5D=calendar_cancel"
        "&actions%5B0%5D%5Bcalendar_name%5D=Coaching&actions%5B0%5D%5Bclass_name%5D=Strategy+Call",
    )
    assert cancelled["actions"][0]["calendar_cancel"]["type"] == "113"


def test_single_failing_lead_action_wp_fusion_and_communication_analyzer(url: str) -> None:
    # they read status / message at the top level of a single assign_tag / list answer
    lead = "lead%5Bemail%5D=wpuser%40example.com"
    tag = post(
        url, f"{CREDS}&{lead}&actions%5B0%5D%5Bcmd%5D=assign_tag&actions%5B0%5D%5Btag_name%5D=Nope"
    )
    assert (tag["status"], tag["message"], tag["type"]) == ("Error", "Tag does not exist", "212")
    assert tag["actions"] == [
        {"assign_tag": {"status": "Error", "message": "Tag does not exist", "type": "212"}}
    ]
    listed = post(
        url,
        f"{CREDS}&{lead}&actions%5B0%5D%5Bcmd%5D=subscribe_lead_to_list"
        "&actions%5B0%5D%5Blist_name%5D=Nope",
    )
    assert (listed["status"], listed["type"]) == ("Error", "231")
    ok = post(
        url,
        f"{CREDS}&{lead}&actions%5B0%5D%5Bcmd%5D=assign_tag&actions%5B0%5D%5Btag_name%5D=VIP",
    )
    assert (ok["status"], ok["message"], ok["type"]) == ("Success", "Tag added to lead", "103")


@pytest.mark.parametrize(
    ("cmd", "key"),
    [
        ("retrieve_account_tags", "account_tags"),
        ("retrieve_account_lists", "account_lists"),
        ("retrieve_custom_fields", "custom_fields"),
    ],
)
def test_account_reads_are_flat(url: str, fake: FakeKartra, cmd: str, key: str) -> None:
    answer = post(url, f"{CREDS}&actions%5B0%5D%5Bcmd%5D={cmd}")
    assert list(answer) == ["status", key]
    if key == "custom_fields":
        assert [f["field_identifier"] for f in answer[key]] == list(fake.account.custom_fields)
    else:
        assert answer[key] == getattr(fake.account, key.removeprefix("account_"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            raise RuntimeError(f"CI=true but {name} is missing")
        pytest.skip(f"{name} is not installed")
    return path


def test_php_client_reads_like_wp_fusion(url: str) -> None:
    php = _tool("php")
    script = r"""
    function kartra($url, $params) {
        $params = array_merge(array('app_id' => 'AIm863DwsOW', 'api_key' => 'QG9GPLW8G',
            'api_password' => 'kdwFAfwrfVS'), $params);
        $ctx = stream_context_create(array('http' => array('method' => 'POST',
            'header' => 'Content-Type: application/x-www-form-urlencoded',
            'content' => http_build_query($params))));
        return json_decode(file_get_contents($url, false, $ctx));
    }
    $body = kartra($argv[1], array('get_lead' => array('id' => 1027)));
    $tags = array();
    foreach ($body->lead_details->tags as $tag) { $tags[] = $tag->tag_name; }
    $error = kartra($argv[1], array('lead' => array('email' => 'wpuser@example.com'),
        'actions' => array(array('cmd' => 'assign_tag', 'tag_name' => 'Nope'))));
    $msg = ($error->status == 'Error') ? $error->message : 'none';
    echo json_encode(array($tags, $msg, $body->lead_details->score));
    """
    done = subprocess.run(
        [php, "-r", script, url], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(done.stdout) == [["WP Member", "Course Buyer"], "Tag does not exist", 40]


def test_node_client_reads_like_the_nestjs_service(url: str) -> None:
    node = _tool("node")
    script = """
    const [url] = process.argv.slice(1);
    const creds = 'app_id=AIm863DwsOW&api_key=QG9GPLW8G&api_password=kdwFAfwrfVS';
    const body = creds + '&lead[email]=wpuser@example.com&actions[0][cmd]=calendar_subscribe'
        + '&actions[0][calendar_name]=Coaching&actions[0][class_name]=Group Q%26A';
    fetch(url, {method: 'POST', body,
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}})
      .then((r) => r.json())
      .then((data) => console.log(JSON.stringify([data.actions[0].calendar_subscribe.status,
                                                  data.status])));
    """
    done = subprocess.run(
        [node, "-e", script, url], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(done.stdout) == ["Success", "Success"]
