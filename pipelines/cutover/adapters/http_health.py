"""Health gates over HTTP on each color's own endpoint: readiness and smoke checks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import httpx

from cutover.model import Color


@dataclass(frozen=True)
class SmokeCheck:
    name: str
    path: str
    method: str = "GET"
    expect_status: int = 200
    expect_body: str = ""  # a substring the body must contain, if set


DEFAULT_SMOKE_CHECKS = (
    SmokeCheck("liveness", "/health/live"),
    SmokeCheck("openapi", "/openapi.json", expect_body='"openapi"'),
)


class HttpHealth:
    def __init__(
        self,
        endpoints: dict[Color, str],
        smoke_checks: tuple[SmokeCheck, ...] = DEFAULT_SMOKE_CHECKS,
        timeout: float = 3.0,
    ) -> None:
        self.endpoints = endpoints
        self.smoke_checks = smoke_checks
        self.timeout = timeout

    def endpoint(self, color: Color) -> str:
        return self.endpoints[color]

    def ready(self, color: Color) -> tuple[bool, str]:
        try:
            answer = httpx.get(self.endpoints[color].rstrip("/") + "/health/ready", timeout=self.timeout)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__} from {self.endpoints[color]}"
        if answer.status_code == 200:
            return True, "ready"
        reason = ""
        with contextlib.suppress(ValueError):
            reason = str(answer.json().get("reason", ""))
        return False, f"/health/ready answered {answer.status_code}" + (f" ({reason})" if reason else "")

    def smoke(self, color: Color) -> tuple[bool, str]:
        base = self.endpoints[color].rstrip("/")
        for check in self.smoke_checks:
            try:
                answer = httpx.request(check.method, base + check.path, timeout=self.timeout)
            except httpx.HTTPError as exc:
                return False, f"{check.name}: {type(exc).__name__}"
            if answer.status_code != check.expect_status:
                return (
                    False,
                    f"{check.name}: {check.method} {check.path} answered {answer.status_code}, expected {check.expect_status}",
                )
            if check.expect_body and check.expect_body not in answer.text:
                return False, f"{check.name}: body of {check.path} lacks {check.expect_body!r}"
        return True, f"{len(self.smoke_checks)} checks passed"
