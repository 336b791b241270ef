"""ledger.listener: a listener that refuses new handshakes keeps the connections it queued."""

from __future__ import annotations

import socket
import sys

import pytest

from ledger.listener import refuse_new_handshakes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter")


def test_new_handshakes_are_dropped_and_queued_connections_kept() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        address = listener.getsockname()
        with socket.create_connection(address, timeout=5) as queued:
            queued.sendall(b"request")  # handshake done by the kernel, not accepted yet
            assert refuse_new_handshakes(listener)
            with pytest.raises(TimeoutError), socket.create_connection(address, timeout=0.5):
                pass  # its SYN is dropped: no connection starts that a close would reset
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.recv(16) == b"request"
                accepted.sendall(b"answer")
                assert queued.recv(16) == b"answer"


def test_after_the_close_a_retried_connection_is_refused() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    assert refuse_new_handshakes(listener)
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)
