"""The callback secret never reaches a log line: through a real uvicorn on 127.0.0.1
(a subprocess; its access and error logs captured), through in-process records of every
shape, and the example app refuses to start without a secret. uvicorn runs on asyncio
only, so the server test is a plain (sync) test driving it over HTTP."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kartra_async.webhooks import REDACTED, RedactSecrets, redact_in_logs

from .test_callbacks import FORM, JSON, ipn, tag_event

ROOT = Path(__file__).resolve().parents[1]
SECRET = "uv-Secret_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Callable[[], str]]]:
    """uvicorn serving tests/_callback_app.py; yields its base URL and `stop()`, which
    stops it and returns everything it wrote (access log, error log, the app's logs)."""
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "KARTRA_CALLBACK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "tests._callback_app:app"),
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "debug"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a loaded machine may take a while to import
        while True:
            try:
                httpx.get(base + "/calls", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)

        def stop() -> str:
            process.terminate()
            process.wait(30)
            return log.read_text()

        yield base, stop
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def test_real_uvicorn_delivery_and_no_secret_in_any_log_line(
    server: tuple[str, Callable[[], str]],
) -> None:
    base, stop = server
    in_path = f"{base}/kartra/callback/{SECRET}"
    in_query = f"{base}/kartra/callback?secret={SECRET}"
    with httpx.Client(timeout=30) as http:

        def post(url: str, body: bytes, kind: str = JSON) -> httpx.Response:
            answer = http.post(url, content=body, headers={"content-type": kind})
            assert SECRET not in answer.text
            return answer

        flaky = tag_event("FLAKY")
        assert post(in_path, flaky).status_code == 500
        assert post(in_query, flaky).status_code == 200  # the redelivery runs again
        assert post(in_path, flaky).json()["duplicate"] is True
        assert post(in_path, ipn(), FORM).status_code == 200
        assert post(in_query, ipn(), FORM).json()["duplicate"] is True
        assert post(in_path, b"[" * 50_000 + b"]" * 50_000).status_code == 400
        assert post(f"{base}/kartra/callback/not-the-secret-at-all", flaky).status_code == 403
        assert http.get(base + "/calls").json() == ["tag FLAKY", "tag FLAKY", "sale 700"]
    text = stop()
    assert SECRET not in text
    lines = text.splitlines()
    access = [line for line in lines if '"POST /kartra/callback' in line]
    assert [re.search(r'HTTP/1.1" (\d+)', line)[1] for line in access] == [  # type: ignore[index]
        "500",
        "200",
        "200",
        "200",
        "200",
        "400",
        "403",
    ]
    assert f'"POST /kartra/callback/{REDACTED} HTTP/1.1" 500' in access[0]
    assert f'"POST /kartra/callback?secret={REDACTED} HTTP/1.1" 200' in access[1]
    assert '"POST /kartra/callback/not-the-secret-at-all HTTP/1.1" 403' in access[-1]
    # the app's own lines: the middleware's URLs and the handler's traceback
    assert f"APP INFO callback_app: request to {base}/kartra/callback/{REDACTED}" in lines
    assert "Kartra callback handler tagged failed on TagAssigned" in text
    assert f"RuntimeError: could not reach https://partner.example/hook/{REDACTED}" in text


# ---- records of every shape, in this process


@pytest.fixture
def records(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    redact_in_logs(SECRET)
    # an in-process uvicorn run earlier (the fake's server) configures its access logger
    # not to propagate; caplog listens at the root
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "propagate", True)
    monkeypatch.setattr(access, "disabled", False)
    with caplog.at_level(logging.DEBUG):
        yield caplog


class Url:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def test_every_part_of_a_record_is_redacted(records: pytest.LogCaptureFixture) -> None:
    app = logging.getLogger("some.app")
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "POST",
        f"/kartra/callback/{SECRET}",
        "1.1",
        200,
    )
    app.warning(f"f-string {SECRET}")
    app.warning("object arg %s", Url(f"https://h/kartra/callback/{SECRET}"))
    app.warning("mapping %(url)s", {"url": f"?secret={SECRET}"})
    try:
        raise ValueError(f"bad url /kartra/callback/{SECRET}")
    except ValueError:
        app.exception("failed")
    app.info("stack", stack_info=True, extra={"path": f"/x/{SECRET}"})
    app.info("raw request line %s", f"POST /kartra/callback/{SECRET}".encode())
    access.info("extra", extra={"path": f"/x/{SECRET}"})
    [uvicorn_record, *_] = [r for r in records.records if r.name == "uvicorn.access"]
    assert uvicorn_record.args == (
        "127.0.0.1:5000",
        "POST",
        f"/kartra/callback/{REDACTED}",
        "1.1",
        200,
    )  # uvicorn's AccessFormatter unpacks these five
    text = records.text + "".join(
        logging.Formatter("%(message)s %(path)s").format(r)
        for r in records.records
        if hasattr(r, "path") and r.name == "uvicorn.access"
    )
    assert SECRET not in text
    assert f"ValueError: bad url /kartra/callback/{REDACTED}" in text
    assert f"object arg https://h/kartra/callback/{REDACTED}" in text
    assert f"extra /x/{REDACTED}" in text
    assert f"raw request line POST /kartra/callback/{REDACTED}" in text


def test_url_encoded_forms_of_a_secret_are_redacted(records: pytest.LogCaptureFixture) -> None:
    odd = "odd secret/with+chars-é-0123"
    redact_in_logs(odd)
    logger = logging.getLogger("some.app")
    for form in (
        odd,
        "odd%20secret%2Fwith%2Bchars-%C3%A9-0123",
        "odd+secret%2fwith%2bchars-%c3%a9-0123",
    ):
        logger.info("GET /kartra/callback/%s", form)
    assert [r.getMessage() for r in records.records] == [f"GET /kartra/callback/{REDACTED}"] * 3


def test_the_filter_on_a_handler_of_your_own() -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactSecrets("only-this-one-0123456789"))
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "a %s", ("only-this-one-0123456789",), None
    )
    handler.handle(record)
    assert seen == [f"a {REDACTED}"]


def test_the_example_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KARTRA_CALLBACK_SECRET"}
    code = "import runpy; runpy.run_path('examples/fastapi_app.py')"
    refused = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "KARTRA_CALLBACK_SECRET is not set" in refused.stderr
    started = subprocess.run(
        [sys.executable, "-c", code + "['callbacks'].dedupe or exit(3)"],
        cwd=ROOT,
        env={**env, "KARTRA_CALLBACK_SECRET": SECRET},
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
