"""ledger.entropy: ids drawn from a buffer of os.urandom, each byte handed out once."""

from __future__ import annotations

import os

from ledger import entropy


def test_bytes_are_never_handed_out_twice() -> None:
    drawn = [entropy.random_bytes(24) for _ in range(1000)]  # several refills
    assert all(len(b) == 24 for b in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len(entropy.random_bytes(10_000)) == 10_000  # larger than a refill


def test_a_forked_child_does_not_repeat_its_parent() -> None:
    entropy.random_bytes(1)  # the buffer is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes
        os.write(write, entropy.random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != entropy.random_bytes(16)
