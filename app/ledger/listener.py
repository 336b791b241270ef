"""Closing a listening socket without resetting connections the kernel already accepted.

Closing a listener resets every connection still in its accept queue: the kernel completed
their handshakes, so their clients sent requests, and those requests are dropped unanswered
(the client reads a reset). A process can accept what is queued first, but new handshakes
keep completing until the very close, and the gap between the last accept and the close is
as long as the process is kept off the CPU. `refuse_new_handshakes` closes that gap on
Linux: a socket filter on the listener drops new SYNs, so no connection starts that the
close would reset; handshakes already under way complete and are accepted. A client whose
SYN was dropped sends it again (after about a second) and is refused: nothing was sent,
so nothing is lost, and it retries elsewhere.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import sys
from typing import Protocol

log = logging.getLogger("ledger.listener")

_SOL_SOCKET = 1
_SO_ATTACH_FILTER = 26  # Linux

# Classic BPF over the TCP header (a TCP socket filter sees the segment from its TCP header):
# a segment with SYN set and ACK clear opens a connection: drop it; let everything else in.
_TCP_FLAGS_OFFSET = 13
_SYN, _ACK = 0x02, 0x10
_DROP_NEW_CONNECTIONS = (
    (0x30, 0, 0, _TCP_FLAGS_OFFSET),  # ldb [13]
    (0x54, 0, 0, _SYN | _ACK),  # and #(SYN|ACK)
    (0x15, 0, 1, _SYN),  # jeq #SYN ? next : skip one
    (0x06, 0, 0, 0),  # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: keep the whole segment
)


class ListeningSocket(Protocol):
    """What this module needs of a listening socket (a socket, or asyncio's view of one)."""

    def setsockopt(self, level: int, option: int, value: bytes, /) -> None: ...


def refuse_new_handshakes(sock: ListeningSocket) -> bool:
    """Make the kernel drop new connection attempts to `sock` (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    program = b"".join(struct.pack("HBBI", *instruction) for instruction in _DROP_NEW_CONNECTIONS)
    buffer = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } (the kernel copies it)
    fprog = struct.pack("HP", len(_DROP_NEW_CONNECTIONS), ctypes.addressof(buffer))
    try:
        sock.setsockopt(_SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        log.warning("could not stop new connections before closing the listener: %s", exc)
        return False
    return True
