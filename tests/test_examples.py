"""Every script in examples/ runs, as a user would run it, against the fake Kartra:
service.py on its embedded fake and over HTTP, the pytest suite through pytest, and the
FastAPI app under uvicorn (and its refusal to start without a secret)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from kartra_async.testing import FakeKartra, FakeServer
from kartra_async.testing.redis_server import redis_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CREDENTIALS = ("KARTRA_APP_ID", "KARTRA_API_KEY", "KARTRA_API_PASSWORD", "KARTRA_BASE_URL")
SECRET = "example-callback-secret-0123"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without Kartra settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARTRA_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture
def fake() -> Iterator[tuple[FakeKartra, str]]:
    """A seeded fake served over HTTP, and its URL."""
    fake = FakeKartra(rate_limit=None)
    fake.seed()
    with FakeServer(fake) as url:
        yield fake, url


def fake_env(fake: FakeKartra, url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        KARTRA_APP_ID=fake.app_id,
        KARTRA_API_KEY=fake.api_key,
        KARTRA_API_PASSWORD=fake.api_password,
        KARTRA_BASE_URL=url,
        **extra,
    )


SERVICE_OUTPUT = [
    r"ada@example\.com: new lead, tagged \(lead \d+\)",
    r"alice@example\.com: already a lead, tagged \(lead \d+\)",
    r"grace@example\.com: new lead, tagged \(lead \d+\)",
    re.escape(
        "not-an-email: refused: email: must be an email address like name@example.com "
        "(got 'not-an-email')"
    ),
    re.escape(
        "linus@example.com: refused: no interest named 'Gardening' "
        "(options: Marketing, Sales, Support)"
    ),
    re.escape("ada@example.com: tags ['Customer'], interests Marketing, Sales"),
    "3 signed up, 2 refused",
]


def run_service(env: dict[str, str], cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(EXAMPLES / "service.py")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 + len(SERVICE_OUTPUT), done.stdout
    for line, pattern in zip(lines[1:], SERVICE_OUTPUT, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    # the two refusals are logged too, on stderr
    assert done.stderr.count("WARNING signup_service: sign-up of") == 2, done.stderr
    return lines


def test_service_runs_on_its_embedded_fake(tmp_path: Path) -> None:
    lines = run_service(clean_env(), tmp_path)
    assert lines[0].startswith("a fake Kartra with the demo account")


def test_service_runs_against_the_fake_over_http(
    fake: tuple[FakeKartra, str], tmp_path: Path
) -> None:
    kartra, url = fake
    lines = run_service(fake_env(kartra, url), tmp_path)
    assert lines[0] == f"Kartra at {url}"
    ada = kartra.lead("ada@example.com")
    assert ada is not None
    assert (ada.tags, ada.lists) == (["Customer"], {"Newsletter": True})
    assert kartra.lead("alice@example.com").tags == ["Customer"]  # type: ignore[union-attr]
    assert kartra.lead("linus@example.com") is None
    cmds = sorted(request.cmds for request in kartra.requests)
    assert cmds == sorted(
        [
            ("retrieve_custom_fields",),
            ("create_lead", "assign_tag", "subscribe_lead_to_list"),  # ada
            ("create_lead", "assign_tag", "subscribe_lead_to_list"),  # alice, refused: 244
            ("edit_lead", "assign_tag", "subscribe_lead_to_list"),  # alice, with interests
            ("create_lead", "assign_tag", "subscribe_lead_to_list"),  # grace
            ("get_lead",),
        ]
    )


def test_the_example_pytest_suite_passes() -> None:
    """examples/test_with_fixtures.py, run by pytest as its docstring says."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/test_with_fixtures.py",
            "-v",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = set(re.findall(r"::(\w+\[[\w-]+\]) PASSED", done.stdout))
    expected = {
        f"{name}[{backend}]"
        for name in (
            "test_a_new_lead_is_created_tagged_and_subscribed",
            "test_an_existing_lead_is_tagged",
            "test_on_an_empty_account_the_actions_fail",
            "test_the_whole_program_over_http",
        )
        for backend in ("asyncio", "trio")
    }
    expected |= {
        f"test_the_same_in_every_answer_shape[{backend}-{style}]"
        for backend in ("asyncio", "trio")
        for style in ("mirrored", "documented", "wrapped")
    }
    expected.add("test_run_reports_every_signup_in_order[asyncio]")
    assert passed == expected, done.stdout
    assert re.search(rf"\b{len(expected)} passed\b", done.stdout), done.stdout


# --------------------------------------------------------------------------- FastAPI


def uvicorn(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_fastapi_app_refuses_to_start_without_a_secret() -> None:
    for secret in ("", "too-short"):
        server = uvicorn(clean_env(KARTRA_CALLBACK_SECRET=secret))
        output, _ = server.communicate(timeout=60)
        assert server.returncode == 1
        assert output.startswith("KARTRA_CALLBACK_SECRET is not set (or shorter than 16"), output


def test_the_fastapi_app_serves_callbacks_and_signups(fake: tuple[FakeKartra, str]) -> None:
    kartra, url = fake
    server = uvicorn(fake_env(kartra, url, KARTRA_CALLBACK_SECRET=SECRET))
    assert server.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not (started := re.search(r"Uvicorn running on (http://\S+)", "".join(lines[-1:]))):
        line = server.stdout.readline()
        assert line, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        lines.append(line)
    base = started.group(1)
    callback = f"{base}/kartra/callback/{SECRET}"
    tagged = {
        "lead": {"id": 1002, "email": "bob@example.com"},
        "action": "assign_tag",
        "action_details": {"tag": {"tag_id": 1, "tag_name": "Customer"}},
    }
    sale = {
        "transaction_id": "9001",
        "transaction_type": "sale",
        "transaction_full_amount": "199.00",
        "product_id": "1",
        "lead_email": "alice@example.com",
        "transaction_affiliate": "N/A",
    }
    try:
        with httpx.Client(timeout=30) as http:
            first = http.post(callback, content=json.dumps(tagged).encode(), headers=JSON)
            assert (first.status_code, first.json()["type"]) == (200, "TagAssigned")
            assert kartra.lead("bob@example.com").lists["Customers"] is True  # type: ignore[union-attr]
            again = http.post(callback, content=json.dumps(tagged).encode(), headers=JSON)
            assert again.json()["duplicate"] is True
            ipn = http.post(callback, content=urlencode(sale), headers=FORM)
            assert (ipn.status_code, ipn.json()["type"]) == (200, "SaleTransaction")
            wrong = http.post(f"{base}/kartra/callback/not-the-secret-at-all", json=tagged)
            assert wrong.status_code == 403

            existing = http.post(f"{base}/signup", params={"email": "alice@example.com"})
            new = http.post(f"{base}/signup", params={"email": "carol@example.com"})
            bad = http.post(f"{base}/signup", params={"email": "carol"})
        assert (existing.status_code, existing.json()["created"]) == (200, False)
        assert (new.status_code, new.json()["created"]) == (200, True)
        assert bad.status_code == 422
        assert bad.json()["detail"].startswith("email: must be an email address")
        assert "Lead Magnet" in kartra.lead("alice@example.com").tags  # type: ignore[union-attr]
        assert kartra.lead("carol@example.com").tags == ["Lead Magnet"]  # type: ignore[union-attr]
    finally:
        server.send_signal(signal.SIGINT)
        rest, _ = server.communicate(timeout=60)
    output = "".join(lines) + rest
    assert server.returncode == 0, output
    assert SECRET not in output
    assert '"POST /kartra/callback/[REDACTED] HTTP/1.1" 200' in output


JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


# --------------------------------------------------------------------------- bulk import


def test_the_bulk_import_is_killed_and_resumed_without_a_lead_lost_or_doubled() -> None:
    """examples/bulk_import.py: the first run is killed (SIGKILL) with requests in flight;
    the resumed run settles those by a lookup and sends the rest; the example checks the
    fake itself (every lead once, with its tag, list and points) and says so."""
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(EXAMPLES / "bulk_import.py")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5, done.stdout
    assert re.fullmatch(
        r"a fake Kartra at http://127\.0\.0\.1:\d+/api; importing 60 rows, journal .+", lines[0]
    )
    killed = re.fullmatch(
        r"run 1: killed \(SIGKILL\) after (\d+) requests reached Kartra", lines[1]
    )
    journal = re.fullmatch(
        r"journal: (\d+) done, (\d+) sent \(no answer recorded\), (\d+) never sent", lines[2]
    )
    resumed = re.fullmatch(
        r"run 2: (\d+) skipped \(done in run 1\), (\d+) ok, of which (\d+) settled by a "
        r"lookup; 0 failed, 0 ambiguous",
        lines[3],
    )
    assert killed, done.stdout
    assert journal, done.stdout
    assert resumed, done.stdout
    reached = int(killed[1])
    finished, in_flight, never = (int(n) for n in journal.groups())
    skipped, ok, settled = (int(n) for n in resumed.groups())
    assert reached >= 20
    assert finished + in_flight + never == 60
    assert finished <= reached  # the journal never says more than happened
    assert (skipped, ok) == (finished, 60 - finished)
    assert settled <= in_flight
    assert lines[4] == (
        "Kartra: 60 of 60 leads complete (tag, list, 10 points each), from 60 create_lead requests"
    )


# --------------------------------------------------------------------------- Redis limiter


def test_the_redis_limiter_example_shares_one_budget_across_processes() -> None:
    """examples/redis_limiter.py against a real redis-server: two worker processes with
    their own limiters, then sharing a RedisLimiter; every call goes through."""
    with redis_server() as redis_url:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "redis_limiter.py"), redis_url],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    assert re.fullmatch(
        r"a fake Kartra at http://127\.0\.0\.1:\d+/api; 2 processes x 20 calls", lines[0]
    )
    for line, label in zip(lines[1:], ("own limiter each", "one RedisLimiter"), strict=True):
        found = re.fullmatch(
            rf"{label}: 40 calls answered, (\d+) x HTTP 429, at most (\d+) accepted in one "
            r"second, calls over \d+\.\d s",
            line,
        )
        assert found, line
        assert int(found[2]) <= 20  # the fake refuses the rest: Kartra's limit holds


def test_the_redis_limiter_example_needs_a_url() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "redis_limiter.py")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "give the URL of a running Redis" in done.stderr
