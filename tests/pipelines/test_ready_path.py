"""A service's own readiness path (issue 16): the environment file names it, the health
gate asks it, and a bad one is refused before anything runs."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import envconfig
from cutover.adapters.http_health import HttpHealth
from cutover.model import BadInput, Color
from tests.pipelines.test_envfile import full


def raw(**changes: Any) -> dict[str, Any]:
    return {**full().to_dict(), **changes}


def test_the_ready_path_defaults_to_ledgers_and_is_read_from_the_file() -> None:
    assert envconfig.parse(raw(), Path("prod.json")).ready_path == "/health/ready"
    assert envconfig.parse(raw(ready_path="/readyz"), Path("prod-greeter.json")).ready_path == "/readyz"


@pytest.mark.parametrize("bad", ["readyz", "/a b", "", 3, "/x\n"])
def test_a_bad_ready_path_is_refused_naming_the_key(bad: object) -> None:
    with pytest.raises(BadInput, match=r"prod\.json: `ready_path` must be a path starting with /"):
        envconfig.parse(raw(ready_path=bad), Path("prod.json"))


class _Greeter(http.server.BaseHTTPRequestHandler):
    """Answers 200 on /readyz only, as a service with its own paths does."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def greeter() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Greeter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_health_gate_asks_the_services_own_path(greeter: str) -> None:
    endpoints: dict[Color, str] = {"blue": greeter, "green": greeter}
    assert HttpHealth(endpoints, ready_path="/readyz").ready("green") == (True, "ready")
    assert HttpHealth(endpoints).ready("green") == (False, "/health/ready answered 404")
