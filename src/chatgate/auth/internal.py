"""The internal credential provider: SCRAM keys from our own database, cached in memory.

Logins are the hot path, so each account's SCRAM keys (all hashes, one
database read) are kept in a bounded LRU cache and a repeated login needs no
database round trip.  Only positive answers are cached: an unknown user is
looked up every time, so an account created by the CLI is usable at once.

Cross-process invalidation: `chatgate user ...` runs in another process and
changes passwords or deletes accounts while the server runs.  After every
change it calls `bump_credentials_stamp(data_dir)`, which atomically replaces
``data_dir/credentials.stamp``.  Each lookup costs one ``os.stat`` of that
file; when its identity (inode, mtime_ns, size) differs from the last one
seen, the whole cache is dropped.  In-process changes call `invalidate`.

Never stores or logs a password; `verify_password` re-derives the key with
the stored salt and iteration count (in a worker thread: PBKDF2 releases the
GIL, and the event loop keeps serving meanwhile).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from chatgate.auth import credentials
from chatgate.auth.credentials import ScramKeys
from chatgate.auth.provider import Capability
from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.storage.repositories.legacy import LegacyRepository

STAMP_NAME = "credentials.stamp"

#: Hash preferred for checking a plaintext password; any stored hash would do.
_VERIFY_ORDER = ("sha256", "sha512", "sha1")

_StampId = tuple[int, int, int] | None


def stamp_path(data_dir: Path) -> Path:
    return Path(data_dir) / STAMP_NAME


def bump_credentials_stamp(data_dir: Path) -> None:
    """Tell running servers that stored credentials changed (call after every change).

    The file is replaced atomically (write + rename), so its inode changes
    even when two bumps fall within one mtime tick.
    """
    path = stamp_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STAMP_NAME}.{uuid.uuid4().hex}")
    tmp.write_text(f"{uuid.uuid4().hex}\n", encoding="ascii")
    os.replace(tmp, path)


def _stamp_id(path: Path) -> _StampId:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


#: Seconds between two checks of the credentials stamp file.
STAMP_CHECK_INTERVAL = 0.05

#: Keys of a random password that nobody knows, checked for unknown users.
_DUMMY_KEYS = credentials.derive_scram_keys(os.urandom(16).hex(), "sha256")


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
    ) -> None:
        """`cache_size` 0 disables the cache; `data_dir` None disables the stamp check.
        With `legacy` (only when DIGEST-MD5 secrets are stored on purpose, see
        docs/registration.md) the provider also serves DIGEST-MD5."""
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._accounts = accounts
        self._legacy = legacy
        if legacy is not None:
            self.offers = self.offers | {Capability.DIGEST_MD5_HA1}
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], dict[str, ScramKeys]] = OrderedDict()
        self._stamp_path = None if data_dir is None else stamp_path(data_dir)
        self._stamp = None if self._stamp_path is None else _stamp_id(self._stamp_path)
        self._stamp_checked = float("-inf")
        # Bumped by every invalidation: a read that started before it must not fill the cache.
        self._generation = 0

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
        loaded = await self._accounts.scram_keys_of_many(self._cache_size)
        if generation != self._generation:
            return 0  # invalidated meanwhile: let logins fill the cache one by one
        for key, keys in loaded.items():
            self._cache.setdefault(key, keys)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return len(loaded)

    def cached_scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        """The keys if they are in memory (after the stamp check), else None: the
        caller then asks `scram_keys`.  Lets a login skip a task for the look-up."""
        self._check_stamp()
        keys = self._cache.get((username, domain))
        return None if keys is None else keys.get(hash_name)

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        keys = await self._keys(username, domain)
        return None if keys is None else keys.get(hash_name)

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        keys = await self._keys(username, domain)
        if not keys:
            # An unknown user costs the same key derivation as a known one, so the
            # answer's timing does not tell which usernames exist.
            await asyncio.to_thread(credentials.verify_password, password, _DUMMY_KEYS)
            return False
        chosen = next((keys[h] for h in _VERIFY_ORDER if h in keys), None)
        if chosen is None:
            chosen = next(iter(keys.values()))
        return await asyncio.to_thread(credentials.verify_password, password, chosen)

    async def user_exists(self, username: str, domain: str) -> bool:
        self._check_stamp()
        if (username, domain) in self._cache:
            return True
        return await self._accounts.exists(username, domain)

    # ------------------------------------------------------------- invalidation

    def invalidate(self, username: str, domain: str) -> None:
        """Forget one account's keys (after a change made in this process)."""
        self._generation += 1
        self._cache.pop((username, domain), None)

    def clear(self) -> None:
        self._generation += 1
        self._cache.clear()

    @property
    def cached(self) -> int:
        """How many accounts' keys are in memory."""
        return len(self._cache)

    # ---------------------------------------------------------------- internals

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
            self.clear()

    async def _keys(self, username: str, domain: str) -> dict[str, ScramKeys] | None:
        self._check_stamp()
        key = (username, domain)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        generation = self._generation
        keys = await self._accounts.all_scram_keys(username, domain)
        if not keys:
            return None  # unknown user: never cached
        if self._cache_size and generation == self._generation:
            self._cache[key] = keys
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return keys
