"""The internal credential provider: SCRAM keys from our own database, cached in memory.

Logins are the hot path, so each account's SCRAM keys (all hashes, one
database read) are kept in a bounded LRU cache (`chatgate.lru.LruCache`, at
most `cache_size` accounts) and a repeated login needs no database round trip.
A login reads the cache through its `mapping` (a plain dict look-up, no
recency refresh); the asynchronous look-ups refresh recency.

Unknown usernames must cost what known ones cost, or the answer's timing
tells an attacker which accounts exist (a cached login answers in tens of
microseconds, a database read takes a millisecond).  So when `warm` finds
that every account fits in the cache, the cache is *complete*: a username
missing from it has no SCRAM keys, answered at once without the database.
Changes keep it complete: an in-process change marks its account *stale*
(looked up once more), a change from another process (the stamp below)
drops the cache and re-loads it in the background, and an eviction (more
accounts than `cache_size`) ends completeness, after which a miss is read
from the database as before.  With more accounts than the cache holds, a
recently active account still answers faster than an unknown one: size
`credential_cache_size` above the number of accounts.

Cross-process invalidation: `chatgate user ...` runs in another process and
changes passwords or deletes accounts while the server runs.  After every
change it calls `bump_credentials_stamp(data_dir)`, which atomically replaces
``data_dir/credentials.stamp``.  Each lookup costs one ``os.stat`` of that
file; when its identity (inode, mtime_ns, size) differs from the last one
seen, the whole cache is dropped.  In-process changes call `invalidate`.

Never stores or logs a password; `verify_password` re-derives the key with
the stored salt and iteration count (in a worker thread: PBKDF2 releases the
GIL, and the event loop keeps serving meanwhile).  For an unknown username it
derives a key just the same, with the iteration count passwords are stored
with now (`decoy_iterations`, the configured `[auth] scram_iterations`), so a
PLAIN attempt costs what a typical account's costs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Final

from chatgate.auth import credentials
from chatgate.auth.credentials import ScramKeys
from chatgate.auth.provider import NO_SUCH_KEYS, CachedKeysAnswer, Capability
from chatgate.datadir import make_private_dir, write_private_file
from chatgate.lru import ENTRY_OVERHEAD, LruCache
from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.storage.repositories.legacy import LegacyRepository

log = logging.getLogger(__name__)

STAMP_NAME = "credentials.stamp"

#: Hash preferred for checking a plaintext password; any stored hash would do.
_VERIFY_ORDER = ("sha256", "sha512", "sha1")

_StampId = tuple[int, int, int] | None
_Owner = tuple[str, str]
_Keys = dict[str, ScramKeys]

_getsizeof = sys.getsizeof

#: What one account's keys weigh in memory: three hashes' worth (SHA-1, SHA-256 and
#: SHA-512 `ScramKeys` in their dict; tracemalloc, CPython 3.11), whatever it holds.
_KEYS_BYTES: Final = 1100
#: The heaviest (username, domain) key: two 1,023-byte JID parts of the widest
#: characters.  With it the cache's byte bound is derived from its entry bound so
#: that `cache_size` is always the bound that binds (and ends completeness).
_MAX_OWNER_BYTES: Final = _getsizeof(("", "")) + 2 * _getsizeof("\U0010ffff" * 1023)


def _weigh(owner: _Owner, _keys: _Keys) -> int:
    return _getsizeof(owner) + _getsizeof(owner[0]) + _getsizeof(owner[1]) + _KEYS_BYTES


def stamp_path(data_dir: Path) -> Path:
    return Path(data_dir) / STAMP_NAME


def bump_credentials_stamp(data_dir: Path) -> None:
    """Tell running servers that stored credentials changed (call after every change).

    The file is replaced atomically (write + rename), so its inode changes
    even when two bumps fall within one mtime tick.
    """
    path = stamp_path(data_dir)
    make_private_dir(path.parent)  # 0700 and 0600: see chatgate.datadir
    write_private_file(path, f"{uuid.uuid4().hex}\n".encode("ascii"))


def _stamp_id(path: Path) -> _StampId:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


#: Seconds between two checks of the credentials stamp file.
STAMP_CHECK_INTERVAL = 0.05

#: A random password nobody knows: unknown users' PLAIN attempts are checked
#: against keys derived from it.  It decides no answer (every check fails), so
#: unlike the decoys' keys it need not be the same in every process.
_DUMMY_PASSWORD = os.urandom(16).hex()
#: iteration count -> keys of `_DUMMY_PASSWORD` (one entry per configured count)
_dummy_keys: dict[int, ScramKeys] = {}


def dummy_keys(iterations: int) -> ScramKeys:
    """SHA-256 keys (the hash PLAIN checks first) of a password nobody knows, with
    `iterations`: what an unknown user's password is checked against."""
    keys = _dummy_keys.get(iterations)
    if keys is None:
        keys = _dummy_keys[iterations] = credentials.derive_scram_keys(
            _DUMMY_PASSWORD, _VERIFY_ORDER[0], iterations=iterations
        )
    return keys


class InternalProvider:
    """`CredentialProvider` over `AccountRepository`, with an LRU cache of SCRAM keys."""

    offers: frozenset[Capability] = frozenset(
        {
            Capability.VERIFY_PASSWORD,
            Capability.SCRAM_SHA_1_KEYS,
            Capability.SCRAM_SHA_256_KEYS,
            Capability.SCRAM_SHA_512_KEYS,
            Capability.CERT_IDENTITY,  # answered by user_exists
        }
    )

    def __init__(
        self,
        accounts: AccountRepository,
        *,
        cache_size: int,
        data_dir: Path | None,
        legacy: LegacyRepository | None = None,
        decoy_iterations: int = credentials.DEFAULT_ITERATIONS,
    ) -> None:
        """`cache_size` 0 disables the cache; `data_dir` None disables the stamp check.
        With `legacy` (only when DIGEST-MD5 secrets are stored on purpose, see
        docs/registration.md) the provider also serves DIGEST-MD5.
        `decoy_iterations` is the PBKDF2 count an unknown user's password is checked
        with: `[auth] scram_iterations` (see `set_decoy_iterations`)."""
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._accounts = accounts
        self._legacy = legacy
        if legacy is not None:
            self.offers = self.offers | {Capability.DIGEST_MD5_HA1}
        self._cache_size = cache_size
        entries = max(1, cache_size)  # size 0: nothing is ever put
        self._cache: LruCache[_Owner, _Keys] = LruCache(
            entries,
            entries * (ENTRY_OVERHEAD + _MAX_OWNER_BYTES + _KEYS_BYTES),
            _weigh,
            on_evict=self._evicted,
        )
        #: the cache's live map, for the login hot path (look-ups only)
        self._cached = self._cache.mapping
        self._stamp_path = None if data_dir is None else stamp_path(data_dir)
        self._stamp = None if self._stamp_path is None else _stamp_id(self._stamp_path)
        self._stamp_checked = float("-inf")
        # Bumped by every invalidation: a read that started before it must not fill the cache.
        self._generation = 0
        #: every account with keys is in `_cache`, except those in `_stale`
        self._complete = False
        self._stale: set[_Owner] = set()
        self._reload: asyncio.Task[None] | None = None
        self._decoy_keys = dummy_keys(decoy_iterations)

    def set_decoy_iterations(self, iterations: int) -> None:
        """Check unknown users' passwords with `iterations` (the configured
        `[auth] scram_iterations`, which the server passes at start), so a PLAIN
        attempt for a name without an account does the work a typical account's
        does.  Raises ValueError for a count below 1."""
        if iterations < 1:
            raise ValueError("the iteration count must be positive")
        self._decoy_keys = dummy_keys(iterations)

    # ------------------------------------------------------- CredentialProvider

    async def digest_md5_ha1(self, username: str, domain: str) -> bytes | None:
        """The stored H(user:realm:password) for DIGEST-MD5, None when absent."""
        if self._legacy is None:
            return None
        secrets = await self._legacy.secrets((username, domain))
        if secrets is None or secrets.digest_md5 is None:
            return None
        return secrets.digest_md5.ha1

    async def warm(self) -> int:
        """Load the keys of as many accounts as the cache holds, in one query, so that
        logins after a start need no database round trip (with SQLite each costs a
        trip through a thread).  Returns how many accounts were loaded."""
        if not self._cache_size:
            return 0
        self._check_stamp()
        generation = self._generation
        loaded, every_account = await self._accounts.scram_keys_of_many(self._cache_size)
        if generation != self._generation:
            return 0  # invalidated meanwhile: let logins fill the cache one by one
        cache = self._cache
        evictions = cache.evictions
        for key, keys in loaded.items():
            if key not in cache:  # keys cached meanwhile are as new
                cache.put(key, keys)
        self._complete = every_account and cache.evictions == evictions
        return len(loaded)

    @property
    def complete(self) -> bool:
        """Whether an account missing from memory is known to have no keys."""
        return self._complete

    def cached_scram_keys(self, username: str, domain: str, hash_name: str) -> CachedKeysAnswer:
        """The keys if they are in memory (after the stamp check); `NO_SUCH_KEYS` when
        the complete cache knows there are none; else None, and the caller asks
        `scram_keys`.  Lets a login skip a task for the look-up."""
        self._check_stamp()
        key = (username, domain)
        keys = self._cached.get(key)
        if keys is not None:
            return keys.get(hash_name, NO_SUCH_KEYS)
        if self._complete and key not in self._stale:
            return NO_SUCH_KEYS
        return None

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        keys = await self._keys(username, domain)
        return None if keys is None else keys.get(hash_name)

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        keys = await self._keys(username, domain)
        if not keys:
            # An unknown user costs the same key derivation as a known one, so the
            # answer's timing does not tell which usernames exist.
            await asyncio.to_thread(credentials.verify_password, password, self._decoy_keys)
            return False
        chosen = next((keys[h] for h in _VERIFY_ORDER if h in keys), None)
        if chosen is None:
            chosen = next(iter(keys.values()))
        return await asyncio.to_thread(credentials.verify_password, password, chosen)

    async def user_exists(self, username: str, domain: str) -> bool:
        self._check_stamp()
        if (username, domain) in self._cached:
            return True
        return await self._accounts.exists(username, domain)

    # ------------------------------------------------------------- invalidation

    def invalidate(self, username: str, domain: str) -> None:
        """Forget one account's keys (after a change made in this process, including
        its creation): its next look-up reads the database."""
        self._generation += 1
        self._cache.pop((username, domain))
        if self._complete:
            self._stale.add((username, domain))

    def clear(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._complete = False
        self._stale.clear()

    @property
    def cached(self) -> int:
        """How many accounts' keys are in memory."""
        return len(self._cache)

    # ---------------------------------------------------------------- internals

    def _evicted(self, owner: _Owner, keys: _Keys) -> None:
        """The cache had to drop an account: it no longer holds every account, so a
        miss must be read from the database from now on."""
        self._complete = False
        self._stale.clear()

    def _check_stamp(self) -> None:
        if self._stamp_path is None:
            return
        # At most one stat() per STAMP_CHECK_INTERVAL: under a login burst the
        # system call per look-up cost 2.4% of the server's time, and a change
        # made by `chatgate user` in another process still takes effect at once
        # for any human purpose.
        now = time.monotonic()
        if now < self._stamp_checked + STAMP_CHECK_INTERVAL:
            return
        self._stamp_checked = now
        current = _stamp_id(self._stamp_path)
        if current != self._stamp:
            self._stamp = current
            was_complete = self._complete
            self.clear()
            if was_complete:
                self._start_reload()

    def _start_reload(self) -> None:
        """Re-load a complete cache after another process changed credentials."""
        if self._reload is not None and not self._reload.done():
            return  # the running reload retries until no change interrupts it
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a synchronous caller): logins fill the cache
        self._reload = loop.create_task(self._reload_until_settled())

    async def _reload_until_settled(self, attempts: int = 5) -> None:
        for _ in range(attempts):
            generation = self._generation
            try:
                await self.warm()
            except Exception:
                log.exception("could not re-load the credential cache")
                return
            if self._complete or generation == self._generation:
                return

    async def _keys(self, username: str, domain: str) -> _Keys | None:
        self._check_stamp()
        key = (username, domain)
        hit = self._cache.get(key)  # refreshes recency
        if hit is not None:
            return hit
        if self._complete and key not in self._stale:
            return None  # no such account: answered as fast as a known one
        generation = self._generation
        keys = await self._accounts.all_scram_keys(username, domain)
        if generation != self._generation:
            return keys or None  # changed meanwhile: answer, but remember nothing
        self._stale.discard(key)
        if not keys:
            return None  # unknown user: never cached
        if self._cache_size:
            self._cache.put(key, keys)  # an eviction ends completeness (`_evicted`)
        return keys
