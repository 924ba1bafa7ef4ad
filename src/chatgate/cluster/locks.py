"""`AccountLocks` across nodes: roster and subscription changes of one account take
turns on every node, not only within one process.

A holder takes this process's lock first (`LocalAccountLocks`, so coroutines of
one node queue in memory, first come first served), then a Redis lock per account
(``lock:BARE`` set with NX and an expiry, holding a random token; released by a
script that deletes only its own token).  Accounts are taken in sorted order, so
overlapping holders cannot deadlock.  The expiry bounds a lock left by a node that
died holding it.  Redis unreachable: the local lock alone is held, and it is
logged (changes of one account on two nodes at that moment may interleave, as
they would with two independent servers; the storage keeps each write whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from chatgate.cluster.node import ClusterNode
from chatgate.modules.roster.locks import LocalAccountLocks

log = logging.getLogger(__name__)

#: Milliseconds a lock lives at most (a change takes a few storage round trips).
LOCK_TTL_MS = 10_000
#: Seconds between attempts while another node holds the account.
RETRY_DELAY = 0.005
#: Seconds to wait for an account before giving up (the change fails, not hangs).
WAIT_LIMIT = 10.0

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class AccountBusy(Exception):
    """Another node held the account for longer than `WAIT_LIMIT`."""


class ClusterAccountLocks:
    def __init__(self, local: LocalAccountLocks, node: ClusterNode) -> None:
        self.local = local
        self.node = node
        self._release = node.redis.register_script(_RELEASE)

    @asynccontextmanager
    async def hold(self, *accounts: str) -> AsyncIterator[None]:
        names = sorted(set(accounts))
        async with self.local.hold(*names):
            token = os.urandom(12).hex()
            taken: list[str] = []
            try:
                for name in names:
                    if await self._acquire(self.node.key("lock", name), token):
                        taken.append(name)
                yield
            finally:
                for name in reversed(taken):
                    with contextlib.suppress(RedisError, OSError):  # else it expires
                        await self._release(keys=[self.node.key("lock", name)], args=[token])

    async def _acquire(self, key: str, token: str) -> bool:
        """True when the Redis lock is ours; False when Redis cannot be reached."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_LIMIT
        while True:
            try:
                if await self.node.redis.set(key, token, nx=True, px=LOCK_TTL_MS):
                    return True
            except (RedisError, OSError) as exc:
                log.warning("cluster: account lock %s held on this node only (%s)", key, exc)
                return False
            if loop.time() > deadline:
                raise AccountBusy(key)
            await asyncio.sleep(RETRY_DELAY)
