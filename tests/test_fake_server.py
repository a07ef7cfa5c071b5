"""Contract tests: the docs' sample requests, as raw form bodies (not through the SDK),
sent to the fake's real HTTP server on 127.0.0.1, get the documented answers.
Clients: plain httpx, the curl command, and PHP (stream context, like the docs' PHP).
Then the server as other languages' test suites use it: the command line, seeds, the
control API (from curl and PHP), and what a slow or broken client cannot do to it."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kartra_async.testing import FakeKartra, FakeServer, PortInUseError
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


# ---- the server for other languages' test suites (issue 16)


PROG = "python -m kartra_async.testing"
SEED_FILE = Path(__file__).parent / "data" / "fake_seed.json"


class Cli:
    """`python -m kartra_async.testing` (or `kartra fake-server`) in a subprocess."""

    def __init__(self, *args: str, kartra_cli: bool = False) -> None:
        if kartra_cli:
            head = [
                sys.executable,
                "-c",
                "import sys; from kartra_async.cli import main; sys.exit(main())",
                "fake-server",
            ]
        else:
            head = [sys.executable, "-m", "kartra_async.testing"]
        self.process = subprocess.Popen(
            [*head, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.banner = [self.process.stdout.readline() for _ in range(7)]
        assert self.banner[0].startswith("fake Kartra listening on http://127.0.0.1:"), self.banner
        self.url = self.banner[0].split()[4]
        self.control = self.url.removesuffix("api") + "_fake/"

    def stop(self, how: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        """Ctrl-C (or another signal); returns the exit status and stderr."""
        self.process.send_signal(how)
        try:
            _, err = self.process.communicate(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()
        return self.process.returncode, err


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kartra_async.testing", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_the_url_and_all_three_credentials() -> None:
    cli = Cli(
        "--app-id",
        "WPFusionApp",
        "--app-id",
        "NoobtaskApp",
        "--api-key",
        "K",
        "--api-password",
        "P",
        "--empty",
    )
    try:
        port = cli.url.split(":")[2].split("/")[0]
        assert cli.banner == [
            f"fake Kartra listening on http://127.0.0.1:{port}/api\n",
            "  app_id        WPFusionApp, NoobtaskApp\n",
            "  api_key       K\n",
            "  api_password  P\n",
            "  answers       mirrored\n",
            f"  control API   http://127.0.0.1:{port}/_fake/  (state, seed, reset, faults, requests)\n",
            "Ctrl-C stops it.\n",
        ]
        for app_id in ("WPFusionApp", "NoobtaskApp"):
            answer = httpx.post(
                cli.url,
                content=f"app_id={app_id}&api_key=K&api_password=P&actions[0][cmd]=retrieve_account_tags",
                timeout=10,
            )
            assert answer.json() == {"status": "Success", "account_tags": []}
        other = httpx.post(
            cli.url,
            content="app_id=Other&api_key=K&api_password=P&actions[0][cmd]=retrieve_account_tags",
            timeout=10,
        )
        assert other.json()["type"] == "239"
    finally:
        code, err = cli.stop()
    assert (code, err) == (0, "")


def test_cli_seed_round_trip() -> None:
    seed = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    cli = Cli("--seed", str(SEED_FILE))
    try:
        state = httpx.get(cli.control + "state", timeout=10).json()
        assert state == {
            **seed,
            "accounts": [
                {k: v for k, v in a.items() if k != "api_password"} for a in seed["accounts"]
            ],
        }
        lead = httpx.post(
            cli.url,
            content="app_id=WPFusion&api_key=fake-key&api_password=fake-password&get_lead[id]=1027",
            timeout=10,
        ).json()["lead_details"]
        assert (lead["email"], lead["score"], lead["notes"]) == (
            "wp@example.com",
            17,
            "Met at the webinar",
        )
        second = httpx.post(
            cli.url,
            content="app_id=fake-app&api_key=second-key&api_password=second-password&actions[0][cmd]=retrieve_account_tags",
            timeout=10,
        ).json()
        assert second == {"status": "Success", "account_tags": ["Other"]}
    finally:
        code, err = cli.stop()
    assert (code, err) == (0, "")


def test_kartra_fake_server_is_the_same_server() -> None:
    cli = Cli(
        "--any-app-id",
        "--response-style",
        "documented",
        "--arrival-delay",
        "0-0.01",
        kartra_cli=True,
    )
    try:
        assert cli.banner[1] == "  app_id        fake-app (and any other)\n"
        assert cli.banner[4] == "  answers       documented\n"
        answer = httpx.post(
            cli.url,
            content="app_id=AnyAppAtAll&api_key=fake-key&api_password=fake-password"
            "&lead[email]=alice@example.com&actions[0][cmd]=assign_tag&actions[0][tag_name]=VIP",
            timeout=10,
        ).json()
        assert answer == {"status": "Success", "message": "Tag added to lead", "type": "103"}
    finally:
        code, err = cli.stop(signal.SIGTERM)
    assert (code, err) == (0, "")


def test_print_demo_seed_and_bad_seeds(tmp_path: Path) -> None:
    from kartra_async.cli import main as kartra_main
    from kartra_async.testing import demo_seed_path

    done = run_cli("--print-demo-seed")
    assert (done.returncode, done.stdout) == (0, demo_seed_path().read_text(encoding="utf-8"))
    out, err = io.StringIO(), io.StringIO()
    assert kartra_main(["fake-server", "--print-demo-seed"], out=out, err=err) == 0
    assert out.getvalue() == done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"leads": [{"email": "x@example.com", "lists": ["Nope"]}]}')
    done = run_cli("--seed", str(bad))
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        f"{PROG}: error: {bad}: leads[0].lists.Nope: not one of the account's lists\n",
    )
    bad.write_text("{nope")
    done = run_cli("--seed", str(bad))
    assert done.returncode == 2
    assert done.stderr.startswith(f"{PROG}: error: {bad}: not valid JSON (Expecting property name")
    done = run_cli("--seed", str(tmp_path / "missing.json"))
    assert (done.returncode, done.stderr) == (
        2,
        f"{PROG}: error: {tmp_path / 'missing.json'}: cannot read the seed file (No such file or directory)\n",
    )


def test_busy_port(fake: FakeKartra) -> None:
    with FakeServer(fake) as url:
        port = int(url.split(":")[2].split("/")[0])
        with pytest.raises(PortInUseError) as caught:
            FakeServer(fake, port=port).start()
        assert (
            str(caught.value)
            == f"127.0.0.1:{port} is already in use (another server listens there)"
        )
        done = run_cli("--port", str(port))
        assert (done.returncode, done.stdout, done.stderr) == (
            2,
            "",
            f"{PROG}: error: 127.0.0.1:{port} is already in use (another server listens there); "
            "choose another --port (0 picks a free one)\n",
        )
        assert (
            httpx.post(url, content=f"{CREDS}&actions[0][cmd]=retrieve_account_tags").status_code
            == 200
        )


def _curl(*args: str) -> str:
    curl = shutil.which("curl")
    if curl is None:
        if IN_CI:
            raise RuntimeError("CI=true but curl is missing")
        pytest.skip("curl is not installed")
    return subprocess.run(
        [curl, "-sS", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def test_control_api_from_curl(fake: FakeKartra) -> None:
    with FakeServer(fake) as url:
        control = url.removesuffix("api") + "_fake/"
        baseline = fake.state()
        assert json.loads(_curl(control + "state")) == baseline
        seeded = _curl(
            "-H", "Content-Type: application/json",
            "--data", '{"tags": ["Curl tag"], "leads": [{"email": "curl@example.com", "tags": ["Curl tag"]}]}',
            control + "seed",
        )  # fmt: skip
        assert json.loads(seeded) == {"ok": True}
        state = json.loads(_curl(control + "state"))
        assert [lead["tags"] for lead in state["leads"] if lead["email"] == "curl@example.com"] == [
            ["Curl tag"]
        ]
        refused = _curl("-w", "\n%{http_code}", "--data", '{"tags": "x"}', control + "seed")
        assert refused.splitlines() == ['{"error": "tags: must be a list (got a string)"}', "400"]
        faults = _curl(
            "--data",
            '{"inject": [{"kind": "http_5xx", "times": 1, "status": 503}]}',
            control + "faults",
        )
        assert json.loads(faults) == {
            "rules": [{"kind": "http_5xx", "times": 1, "status": 503}],
            "latency": None,
            "counts": {},
        }
        body = f"{CREDS}&actions[0][cmd]=retrieve_account_tags"
        assert _curl("-o", "/dev/null", "-w", "%{http_code}", "--data", body, url) == "503"
        assert _curl("-o", "/dev/null", "-w", "%{http_code}", "--data", body, url) == "200"
        requests = json.loads(_curl(control + "requests"))
        assert [(r["cmds"], r["status"]) for r in requests] == [
            (["retrieve_account_tags"], 503),
            (["retrieve_account_tags"], 200),
        ]
        assert json.loads(_curl("-X", "POST", control + "reset")) == {"ok": True}
        assert json.loads(_curl(control + "state")) == baseline


def test_control_api_from_php(fake: FakeKartra) -> None:
    php = shutil.which("php")
    if php is None:
        if IN_CI:
            raise RuntimeError("CI=true but php-cli is missing")
        pytest.skip("php-cli is not installed")
    script = r"""
    $api = $argv[1]; $control = $argv[2];
    function send($url, $content, $type) {
        $ctx = stream_context_create(array('http' => array('method' => 'POST', 'ignore_errors' => true,
            'header' => "Content-Type: $type", 'content' => $content)));
        $body = file_get_contents($url, false, $ctx);
        preg_match('{HTTP/\S+ (\d+)}', $http_response_header[0], $m);
        return array((int) $m[1], $body);
    }
    function kartra($api, $params) {
        $params = array_merge(array('app_id' => 'AIm863DwsOW', 'api_key' => 'QG9GPLW8G',
            'api_password' => 'kdwFAfwrfVS'), $params);
        return send($api, http_build_query($params), 'application/x-www-form-urlencoded');
    }
    $out = array();
    $out[] = send($control . 'seed', json_encode(array('tags' => array('PHP tag'),
        'leads' => array(array('email' => 'php-test@example.com', 'first_name' => 'Pat')))), 'application/json');
    $out[] = kartra($api, array('lead' => array('email' => 'php-test@example.com'),
        'actions' => array(array('cmd' => 'assign_tag', 'tag_name' => 'PHP tag'))));
    $state = json_decode(file_get_contents($control . 'state'), true);
    foreach ($state['leads'] as $lead) {
        if ($lead['email'] == 'php-test@example.com') { $out[] = $lead['tags']; }
    }
    $out[] = send($control . 'faults', json_encode(array('inject' => array(
        array('kind' => 'not_json', 'times' => 1)))), 'application/json');
    list($status, $body) = kartra($api, array('actions' => array(array('cmd' => 'retrieve_account_tags'))));
    $out[] = array($status, json_decode($body) === null);
    $out[] = send($control . 'reset', '', 'application/json');
    $state = json_decode(file_get_contents($control . 'state'), true);
    $out[] = in_array('PHP tag', $state['tags']);
    echo json_encode($out);
    """
    with FakeServer(fake) as url:
        control = url.removesuffix("api") + "_fake/"
        done = subprocess.run(
            [php, "-r", script, url, control],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    assert json.loads(done.stdout) == [
        [200, '{"ok": true}'],
        [200, '{"status":"Success","message":"Tag added to lead","type":"103"}'],
        ["PHP tag"],
        [200, '{"rules": [{"kind": "not_json", "times": 1}], "latency": null, "counts": {}}'],
        [200, True],
        [200, '{"ok": true}'],
        False,
    ]


# ---- robustness: slow clients, malformed requests, shutdown


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    """Read until the server closes the connection (or the deadline passes)."""
    chunks = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    raise AssertionError(f"the server kept the connection open; got {b''.join(chunks)[:100]!r}")


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


def test_slowloris_is_cut_off(fake: FakeKartra, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with FakeServer(fake, header_timeout=0.5) as url:
        port = _port(url)
        silent = []
        for _ in range(250):  # half a request head each, then nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            silent.append(sock)
        dribbling = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        # meanwhile the server answers
        answer = httpx.post(
            url, content=f"{CREDS}&actions[0][cmd]=retrieve_account_tags", timeout=10
        )
        assert answer.status_code == 200
        # a byte every 0.1 s never finishes a head: cut off all the same
        deadline = time.monotonic() + 20
        open_ = list(dribbling)
        while open_ and time.monotonic() < deadline:
            for sock in list(open_):
                try:
                    sock.sendall(b"X")
                except OSError:
                    open_.remove(sock)
            time.sleep(0.1)
        assert open_ == []
        for sock in silent:
            answer_bytes = _read_all(sock, time.monotonic() + 20)
            assert answer_bytes.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer_bytes[:60]
            sock.close()
        for sock in dribbling:
            sock.close()
    _no_tracebacks(caplog)


def test_slow_body_is_408(fake: FakeKartra, caplog: pytest.LogCaptureFixture) -> None:
    with FakeServer(fake, body_timeout=0.5) as url:
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
            sock.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\napp_id=")
            answer = _read_all(sock, time.monotonic() + 20)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert answer.endswith(b"\r\n\r\nthe body did not arrive within 0.5 s")
    _no_tracebacks(caplog)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: \xc2\xb2\r\n\r\n",
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"POST /api HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"POST /api HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ],
    ids=[
        "superscript-length",
        "negative-length",
        "two-lengths",
        "gzip",
        "garbage",
        "huge-header",
        "no-colon",
    ],
)
def test_malformed_requests_get_400(
    fake: FakeKartra, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    with FakeServer(fake) as url:
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
            sock.sendall(request_bytes)
            answer = _read_all(sock, time.monotonic() + 20)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:80]
        assert (
            httpx.post(url, content=f"{CREDS}&actions[0][cmd]=retrieve_account_tags").status_code
            == 200
        )
    _no_tracebacks(caplog)


def test_unreadable_forms_get_400_or_413(
    fake: FakeKartra, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeServer(fake) as url, httpx.Client(timeout=10) as http:
        long_points = (
            f"{CREDS}&lead[email]=example@email.com&actions[0][cmd]=give_points_to_lead"
            f"&actions[0][points]={'9' * 5000}"
        )
        answer = http.post(url, content=long_points)
        assert (answer.status_code, answer.text) == (
            400,
            "Bad Request: a number of 5000 digits (at most 19)",
        )
        huge = http.post(url, content=b"x" * (1 << 20 | 1))
        assert (huge.status_code, huge.text) == (413, f"the body is over {1 << 20} bytes")
        assert (
            http.post(url, content=f"{CREDS}&actions[0][cmd]=retrieve_account_tags").status_code
            == 200
        )
    _no_tracebacks(caplog)


def test_clean_shutdown_with_open_connections(
    fake: FakeKartra, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes: list[str] = []

    def call(url: str) -> None:
        try:
            response = httpx.post(
                url, content=f"{CREDS}&actions[0][cmd]=retrieve_account_tags", timeout=60
            )
            outcomes.append(str(response.status_code))
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    server = FakeServer(fake)
    url = server.start()
    port = _port(url)
    idle = httpx.Client()
    assert (
        idle.post(url, content=f"{CREDS}&actions[0][cmd]=retrieve_account_pages").status_code == 200
    )
    half_head = socket.create_connection(("127.0.0.1", port))
    half_head.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\n")
    half_body = socket.create_connection(("127.0.0.1", port))
    half_body.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\napp")
    fake.faults.inject("timeout", times=4)
    held = [threading.Thread(target=call, args=(url,)) for _ in range(4)]
    for thread in held:
        thread.start()
    while len(fake.requests) < 5:  # the four held calls reached the fake
        time.sleep(0.01)
    fake.faults.latency = 60.0
    slow = [threading.Thread(target=call, args=(url,)) for _ in range(4)]
    for thread in slow:
        thread.start()
    while len(fake.requests) < 9:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    for thread in held + slow:
        thread.join(30)
    assert took < 10, took
    assert sorted(outcomes) == ["200"] * 4 + ["RemoteProtocolError"] * 4
    assert _read_all(half_head, time.monotonic() + 5) == b""
    assert _read_all(half_body, time.monotonic() + 5) == b""
    half_head.close()
    half_body.close()
    idle.close()
    _no_tracebacks(caplog)
    assert not any("CancelledError" in r.getMessage() for r in caplog.records)


def test_parse_str_limits() -> None:
    # integer keys as PHP makes them: "05", "²" and numbers beyond 64 bits stay strings
    assert parse_str("l[05]=a&l[]=b&l[%C2%B2]=c&l[]=d") == {
        "l": {"05": "a", "0": "b", "²": "c", "1": "d"}
    }
    big = "9" * 5000
    assert parse_str(f"a[{big}]=1&a[]=2") == {"a": {big: "1", "0": "2"}}
    # deeper than PHP's max_input_nesting_level (64): dropped, as PHP drops it
    nested: Any = "2"
    for _ in range(64):
        nested = {"d": nested}
    assert parse_str("a" + "[b]" * 65 + "=1&c" + "[d]" * 64 + "=2") == {"c": nested}
    # appending stays linear: 200,000 'a[]' in one body
    assert len(parse_str("&".join(["a[]=x"] * 200_000))["a"]) == 200_000
    # an array replaced by a value, then a new array: its own next index
    assert parse_str("a[x][]=1&a[x]=s&a[y][]=2") == {"a": {"x": "s", "y": {"0": "2"}}}


def test_fake_kartra_server_fixture(
    fake_kartra: FakeKartra, fake_kartra_server: FakeServer
) -> None:
    fake_kartra.seed()
    body = "app_id=fake-app&api_key=fake-key&api_password=fake-password&actions[0][cmd]=retrieve_account_pages"
    assert httpx.post(fake_kartra_server.url, content=body, timeout=10).json() == {
        "status": "Success",
        "account_pages": ["Home", "Sales Page", "Thank You", "Webinar Registration"],
    }
    state = httpx.get(fake_kartra_server.control_url + "state", timeout=10).json()
    assert state == fake_kartra.state()
