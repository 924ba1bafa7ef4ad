"""The batched random source: distinct values, and children of a fork never share bytes."""

from __future__ import annotations

import os

from chatgate.randomness import random_bytes


def test_values_are_distinct_and_of_the_asked_length() -> None:
    values = {random_bytes(12) for _ in range(5000)}
    assert len(values) == 5000
    assert all(len(v) == 12 for v in values)
    assert len(random_bytes(10_000)) == 10_000


def test_a_forked_child_does_not_reuse_the_parents_pool() -> None:
    random_bytes(1)  # make sure the parent has a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, random_bytes(16))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16)
    os.close(read)
    os.close(write)
    assert child != random_bytes(16)
