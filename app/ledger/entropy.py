"""Random bytes for ids (request ids, trace and span ids) without a system call per request.

`os.urandom` is a system call; every request needs 40 random bytes (a request id and a
span, sometimes a trace id). The bytes come from the same source, `os.urandom`, read a few
kilobytes at a time. A forked child starts with a fresh buffer, never its parent's.
"""

from __future__ import annotations

import os

_REFILL_BYTES = 4096


class _Pool:
    def __init__(self) -> None:
        self.buffer = b""
        self.used = 0

    def take(self, size: int) -> bytes:
        start = self.used
        if start + size > len(self.buffer):
            self.buffer, start = os.urandom(max(_REFILL_BYTES, size)), 0
        self.used = start + size
        return self.buffer[start : start + size]

    def forget(self) -> None:
        self.buffer, self.used = b"", 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)


def random_bytes(size: int) -> bytes:
    """`size` bytes from `os.urandom`, each handed out once."""
    return _pool.take(size)
