"""greeter, the second service Cutover deploys: its endpoints, its environment, and its drain,
against real `python -m greeter` processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cutover.local.ports import free_port
from tests.examples.conftest import Greeter, RawConnection, StartGreeter, greeter_env

pytestmark = pytest.mark.slow


def _json(response: httpx.Response) -> object:
    assert response.headers["content-type"] == "application/json"
    return response.json()


# --- endpoints -----------------------------------------------------------------------------


def test_hello_greets_the_name_and_says_who_served_it(greeter: Greeter) -> None:
    response = httpx.get(greeter.url + "/hello", params={"name": "Ada Lovelace"})
    assert response.status_code == 200
    assert _json(response) == {
        "greeting": "hello, Ada Lovelace",
        "served_by": "green/test-0",
        "version": "v1.2.3",
    }
    assert response.headers["x-served-by"] == "green/test-0"
    assert "connection" not in response.headers  # keep-alive while serving


def test_hello_without_a_name_greets_the_world(greeter: Greeter) -> None:
    assert httpx.get(greeter.url + "/hello").json()["greeting"] == "hello, world"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"name": "x" * 65}, "invalid_name"),
        ({"name": ""}, "invalid_name"),
        ({"delay_ms": "2001"}, "invalid_delay_ms"),
        ({"delay_ms": "-1"}, "invalid_delay_ms"),
        ({"delay_ms": "soon"}, "invalid_delay_ms"),
    ],
)
def test_bad_parameters_are_422_json_errors(greeter: Greeter, query: dict[str, str], code: str) -> None:
    response = httpx.get(greeter.url + "/hello", params=query)
    assert response.status_code == 422
    body = _json(response)
    assert isinstance(body, dict) and set(body) == {"error"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert response.headers["x-served-by"] == "green/test-0"


def test_a_name_of_exactly_64_characters_is_greeted(greeter: Greeter) -> None:
    response = httpx.get(greeter.url + "/hello", params={"name": "é" * 64})
    assert response.status_code == 200 and response.json()["greeting"] == "hello, " + "é" * 64


@pytest.mark.parametrize(
    ("path", "body"),
    [("/livez", {"status": "alive"}), ("/readyz", {"status": "ready"}), ("/startupz", {"status": "started"})],
)
def test_probes_answer_200_while_serving(greeter: Greeter, path: str, body: dict[str, str]) -> None:
    response = httpx.get(greeter.url + path)
    assert (response.status_code, _json(response)) == (200, body)
    assert response.headers["x-served-by"] == "green/test-0"


@pytest.mark.parametrize("path", ["/", "/hello/", "/health/live", "/HELLO"])
def test_anything_else_is_a_404_json_error(greeter: Greeter, path: str) -> None:
    response = httpx.get(greeter.url + path)
    assert response.status_code == 404
    assert _json(response) == {"error": {"code": "not_found", "message": response.json()["error"]["message"]}}
    assert path in response.json()["error"]["message"]
    assert response.headers["x-served-by"] == "green/test-0"


def test_other_methods_are_405_with_allow(greeter: Greeter) -> None:
    response = httpx.post(greeter.url + "/hello", content=b"{}")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert _json(response) == {"error": {"code": "method_not_allowed", "message": "/hello answers GET only"}}
    assert response.headers["x-served-by"] == "green/test-0"


def test_even_uvicorns_own_400_carries_x_served_by(greeter: Greeter) -> None:
    connection = RawConnection(greeter.port)
    try:
        status, headers, _ = connection.send(b"NOT HTTP AT ALL\r\n\r\n")
    finally:
        connection.close()
    assert status == 400 and headers["x-served-by"] == "green/test-0"


def test_an_idle_keep_alive_connection_lives_http_keep_alive_seconds(greeter: Greeter) -> None:
    # The shared greeter has HTTP_KEEP_ALIVE_SECONDS=1 (uvicorn's own default is 5 s).
    connection = RawConnection(greeter.port)
    try:
        assert connection.get("/livez")[0] == 200
        assert not connection.closed_by_server(within=0.5)
        assert connection.closed_by_server(within=1.5)
    finally:
        connection.close()


def test_defaults_blue_dev_and_the_hostname(start_greeter: StartGreeter) -> None:
    greeter = start_greeter(INSTANCE_ID="", COLOR="", APP_VERSION="")  # empty is unset
    body = httpx.get(greeter.url + "/hello").json()
    assert body["served_by"] == f"blue/{socket.gethostname()}" and body["version"] == "dev"


# --- a bad environment stops greeter before it listens ----------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "-80"),
        ("PORT", "9_000"),
        ("COLOR", "red"),
        ("COLOR", "Blue"),
        ("DRAIN_SECONDS", "-1"),
        ("DRAIN_SECONDS", "nan"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "inf"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "1e999"),
        ("HTTP_KEEP_ALIVE_SECONDS", "-0.5"),
        ("INSTANCE_ID", "pod-1\r\nx-evil: 1"),
        ("INSTANCE_ID", "pod 1"),
        ("APP_VERSION", "v1\nv2"),
    ],
)
def test_a_bad_value_exits_2_with_one_line_naming_it(tmp_path: Path, name: str, value: str) -> None:
    port = free_port()  # greeter's PORT, unless PORT is the bad value under test
    env = greeter_env(port, **{name: value})
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "greeter"], env=env, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + 10
    try:
        while process.poll() is None:  # never listening, for as long as it runs
            assert time.monotonic() < deadline, f"{name}={value!r} was accepted: greeter still runs"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    lines = err.read_text().splitlines()
    assert process.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"greeter: {name}="), lines
    assert out.read_text() == ""  # no "started" event


def test_unknown_variables_are_ignored(greeter: Greeter) -> None:
    # The shared greeter runs with GREETER_UNKNOWN=x in its environment.
    assert httpx.get(greeter.url + "/readyz").status_code == 200


# --- the drain ---------------------------------------------------------------------------


def _events(greeter: Greeter) -> list[dict[str, object]]:
    return [json.loads(line) for line in greeter.stdout.read_text().splitlines()]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_drains_then_closes_the_listener_and_finishes_in_flight_work(
    start_greeter: StartGreeter,
) -> None:
    greeter = start_greeter(DRAIN_SECONDS="1", SHUTDOWN_TIMEOUT_SECONDS="5", INSTANCE_ID="drainer")
    keep_alive = RawConnection(greeter.port)
    with ThreadPoolExecutor(2) as pool:
        status, headers, _ = keep_alive.get("/hello")
        assert status == 200 and "connection" not in headers
        before = pool.submit(httpx.get, greeter.url + "/hello?delay_ms=2000", timeout=10)
        time.sleep(0.1)  # that request is in flight

        greeter.signal(signal.SIGTERM)
        signalled = time.monotonic()
        # In the drain window: not ready, still serving, every response says connection: close.
        while (ready := httpx.get(greeter.url + "/readyz")).status_code == 200:
            assert time.monotonic() - signalled < 0.5, "readiness still 200 after SIGTERM"
        during = pool.submit(httpx.get, greeter.url + "/hello?name=late&delay_ms=1500", timeout=10)
        hello = httpx.get(greeter.url + "/hello")
        status, headers, _ = keep_alive.get("/hello")
        assert time.monotonic() - signalled < 1.0, "the checks in the drain window ran after it"
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        assert ready.headers["connection"] == "close"
        assert hello.status_code == 200 and hello.headers["connection"] == "close"
        assert status == 200 and headers["connection"] == "close"
        assert keep_alive.closed_by_server(within=1.0)
        keep_alive.close()

        # After the window: new connections refused while in-flight requests still run.
        while not _refused(greeter.port):
            assert time.monotonic() - signalled < 1.5, "still accepting after DRAIN_SECONDS"
            time.sleep(0.02)
        assert greeter.running(), "exited before its in-flight requests finished"
        assert time.monotonic() - signalled >= 0.9, "closed the listener before DRAIN_SECONDS"
        assert before.result().status_code == 200
        assert during.result().json()["greeting"] == "hello, late"

    assert greeter.wait(timeout=1 + 5 + 2) == 0
    assert [event["event"] for event in _events(greeter)] == ["started", "draining", "stopped"]
    assert _events(greeter)[1]["signal"] == "SIGTERM"
    assert all(event["served_by"] == "blue/drainer" for event in _events(greeter))


def test_in_flight_work_gets_at_most_shutdown_timeout_seconds(start_greeter: StartGreeter) -> None:
    greeter = start_greeter(DRAIN_SECONDS="0.2", SHUTDOWN_TIMEOUT_SECONDS="0.5")
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, greeter.url + "/hello?delay_ms=2000", timeout=10)
        time.sleep(0.1)
        greeter.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert greeter.wait(timeout=5) == 0
        assert time.monotonic() - signalled < 1.5  # 0.2 + 0.5 + slack, not the 2 s request
        # Cancelled when the timeout ran out: uvicorn answers 500 (or the connection just closes).
        with contextlib.suppress(httpx.TransportError):
            assert slow.result().status_code == 500
    assert "timeout graceful shutdown exceeded" in greeter.stderr.read_text()


def test_sigint_drains_too_and_a_second_signal_stops_at_once(start_greeter: StartGreeter) -> None:
    greeter = start_greeter(DRAIN_SECONDS="30")
    greeter.signal(signal.SIGINT)
    deadline = time.monotonic() + 2
    while httpx.get(greeter.url + "/readyz").status_code != 503:
        assert time.monotonic() < deadline, "SIGINT did not start the drain"
    assert httpx.get(greeter.url + "/hello").status_code == 200
    greeter.signal(signal.SIGTERM)
    assert greeter.wait(timeout=3) == 1
    assert [event["event"] for event in _events(greeter)] == ["started", "draining", "stopped"]
    assert _events(greeter)[2]["forced"] is True
