"""Settings from the environment (the platform contract), validated before anything listens.

Unset or empty variables take their defaults; variables greeter does not know are ignored.
A bad value raises `SettingsError` with one line naming the variable and the fix.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

_WHOLE = re.compile(r"[0-9]+")
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")  # no sign, exponent, nan or inf: finite and >= 0
_LABEL = re.compile(r"[\x21-\x7e]{1,253}")  # goes into a response header: printable ASCII, no spaces
_MAX_SECONDS = 3600.0


class SettingsError(ValueError):
    """An environment variable has a bad value; the message is one line."""


@dataclass(frozen=True)
class Settings:
    """Everything greeter reads from its environment."""

    host: str
    port: int
    color: str
    app_version: str
    instance_id: str
    drain_seconds: float
    shutdown_timeout_seconds: float
    http_keep_alive_seconds: float

    @property
    def served_by(self) -> str:
        """`<color>/<instance>`, the value of every response's `x-served-by` header."""
        return f"{self.color}/{self.instance_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and check every variable; raises SettingsError on the first bad one."""

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        def bad(name: str, value: str, fix: str) -> SettingsError:
            return SettingsError(f"{name}={value[:40]!r} is not valid: {fix}")

        def seconds(name: str, default: str) -> float:
            value = get(name, default)
            if not _SECONDS.fullmatch(value) or float(value) > _MAX_SECONDS:
                raise bad(name, value, f"set it to a number of seconds from 0 to 3600 (default {default})")
            return float(value)

        def label(name: str, default: str) -> str:
            value = get(name, default)
            if not _LABEL.fullmatch(value):
                raise bad(name, value, "use 1 to 253 printable ASCII characters, no spaces or line breaks")
            return value

        port = get("PORT", "9000")
        if not _WHOLE.fullmatch(port) or not 1 <= int(port) <= 65535:
            raise bad("PORT", port, "set it to a whole number from 1 to 65535 (default 9000)")
        color = get("COLOR", "blue")
        if color not in ("blue", "green"):
            raise bad("COLOR", color, "set it to blue or green (default blue)")
        return cls(
            host=get("HOST", "0.0.0.0"),
            port=int(port),
            color=color,
            app_version=label("APP_VERSION", "dev"),
            instance_id=label("INSTANCE_ID", socket.gethostname()),
            drain_seconds=seconds("DRAIN_SECONDS", "5"),
            shutdown_timeout_seconds=seconds("SHUTDOWN_TIMEOUT_SECONDS", "20"),
            http_keep_alive_seconds=seconds("HTTP_KEEP_ALIVE_SECONDS", "75"),
        )
