"""Health gates over HTTP on each color's own endpoint: readiness and smoke checks."""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.parse
from dataclasses import dataclass

from cutover.model import Color


@dataclass(frozen=True)
class SmokeCheck:
    name: str
    path: str
    method: str = "GET"
    expect_status: int = 200
    expect_body: str = ""  # a substring the body must contain, if set


DEFAULT_READY_PATH = "/health/ready"
DEFAULT_SMOKE_CHECKS = (
    SmokeCheck("liveness", "/health/live"),
    SmokeCheck("openapi", "/openapi.json", expect_body='"openapi"'),
)


def _request(method: str, url: str, timeout: float) -> tuple[int, str]:
    """(status, body) of one request; a 4xx/5xx is an answer, not an error.

    http.client, not httpx nor urllib.request: `cutover rollback` starts as a fresh process
    at 3 a.m., and every import is on the clock. Redirects are not followed: a health
    endpoint answers for itself.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"not an http(s) URL: {url}")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        answer = connection.getresponse()
        return int(answer.status), answer.read().decode("utf-8", "replace")
    except http.client.HTTPException as exc:  # a garbled answer is as bad as none
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


class HttpHealth:
    def __init__(
        self,
        endpoints: dict[Color, str],
        smoke_checks: tuple[SmokeCheck, ...] = DEFAULT_SMOKE_CHECKS,
        timeout: float = 3.0,
        ready_path: str = DEFAULT_READY_PATH,
    ) -> None:
        self.endpoints = endpoints
        self.smoke_checks = smoke_checks
        self.timeout = timeout
        self.ready_path = ready_path

    def endpoint(self, color: Color) -> str:
        return self.endpoints[color]

    def ready(self, color: Color) -> tuple[bool, str]:
        try:
            status, body = _request("GET", self.endpoints[color].rstrip("/") + self.ready_path, self.timeout)
        except OSError as exc:  # refused, reset, timed out, name not resolved
            return False, f"{type(exc).__name__} from {self.endpoints[color]}"
        if status == 200:
            return True, "ready"
        reason = ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = str(json.loads(body).get("reason", ""))
        return False, f"{self.ready_path} answered {status}" + (f" ({reason})" if reason else "")

    def smoke(self, color: Color) -> tuple[bool, str]:
        base = self.endpoints[color].rstrip("/")
        for check in self.smoke_checks:
            try:
                status, body = _request(check.method, base + check.path, self.timeout)
            except OSError as exc:
                return False, f"{check.name}: {type(exc).__name__}"
            if status != check.expect_status:
                return (
                    False,
                    f"{check.name}: {check.method} {check.path} answered {status}, expected {check.expect_status}",
                )
            if check.expect_body and check.expect_body not in body:
                return False, f"{check.name}: body of {check.path} lacks {check.expect_body!r}"
        return True, f"{len(self.smoke_checks)} checks passed"
