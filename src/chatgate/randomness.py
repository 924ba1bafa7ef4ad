"""Random bytes for identifiers (stream ids, SASL nonces), drawn from the OS in batches.

`os.urandom` is a system call; a login asks for random bytes a few times, and
under a login burst the calls showed at ~3% of the server's time.  The pool is
refilled from `os.urandom` 4 KiB at a time and emptied in a forked child, so
worker processes never share bytes.  Not for keys that must be erased after
use: the pool keeps unused random bytes in memory until they are handed out.
"""

from __future__ import annotations

import os

_POOL_SIZE = 4096
_pool = bytearray()


def random_bytes(n: int) -> bytes:
    global _pool
    if n > _POOL_SIZE:
        return os.urandom(n)
    if len(_pool) < n:
        _pool = bytearray(os.urandom(_POOL_SIZE))
    out = bytes(_pool[:n])
    del _pool[:n]
    return out


def _forget_after_fork() -> None:
    _pool.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
