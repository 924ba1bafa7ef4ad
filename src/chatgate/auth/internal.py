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

Registrations awaiting approval (``[modules.register] approval``) have no account
yet, so the plain protocol (`scram_keys`, `verify_password`) answers for them as
for an unknown name.  `scram_keys_or_held` and `verify_password_or_held`, which
the SASL driver and legacy authentication ask when a provider has them, answer
with the registration's own keys and `AWAITING_APPROVAL`, so that a client that
proves the password is told why it cannot log in, and everyone else gets exactly
what an unknown name gets.  The names of pending registrations are kept in
memory (at most `PENDING_NAMES_LIMIT`; the register module hands over the store
at start with `track_pending`): the complete cache never answers "no such keys"
for them but has their keys read (one database read per attempt: such logins
are rare, and an unknown name answered from memory stays as fast as before).
The price: a pending name's answer takes that read where an unknown name's and
a cached account's take none, so someone timing logins can tell that a name is
held for approval (registering it would tell them it is taken in any case).
Registration in this process adds a name (`pending_added`); a change by another
process (`chatgate registration approve`, `user del`) bumps the stamp below,
which re-loads the names in the background.  A name in memory whose registration
is gone (approved or rejected elsewhere, the stamp not seen yet) is dropped at
its next look-up, which then reads the accounts.

Locked accounts (`chatgate user lock`, `AccountService.lock`) keep their keys in
the database but never in the cache: the plain protocol answers for them as for an
unknown name, and the `_or_held` variants answer with their keys and
`ACCOUNT_LOCKED`, so that only a client that proves the password hears that the
account is locked (SASL account-disabled, RFC 6120 §6.5.1: `held_condition`).
Like a pending name, a locked name is never answered from memory (the complete
cache keeps it in `_stale`; `warm` learns which accounts are locked), so its
logins cost a database read.  Every change of a lock reaches the cache as any
other change does: `invalidate` in this process, the stamp from another.

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
from typing import Final, Protocol

from chatgate.auth import credentials
from chatgate.auth.credentials import ScramKeys
from chatgate.auth.provider import NO_SUCH_KEYS, CachedKeysAnswer, Capability
from chatgate.datadir import make_private_dir, write_private_file
from chatgate.lru import ENTRY_OVERHEAD, LruCache
from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.storage.repositories.legacy import LegacyRepository
from chatgate.vocabulary.errors import SaslFailureCondition

log = logging.getLogger(__name__)

STAMP_NAME = "credentials.stamp"

#: Hash preferred for checking a plaintext password; any stored hash would do.
_VERIFY_ORDER = ("sha256", "sha512", "sha1")

StampId = tuple[int, int, int] | None
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


#: What a client that proves the password of a registration awaiting approval is told
#: (the <text/> of its <not-authorized/>, RFC 6120 §6.5; `sasl/scram.py` says why not
#: account-disabled).
AWAITING_APPROVAL: Final = "your registration is awaiting approval by an administrator"

#: What a client that proves the password of a locked account is told, with SASL's
#: account-disabled (RFC 6120 §6.5.1: "The account of the initiating entity has been
#: temporarily disabled"): unlike a held registration, the account exists.
ACCOUNT_LOCKED: Final = "this account is locked by an administrator"

_HELD_CONDITIONS: Final = {
    AWAITING_APPROVAL: SaslFailureCondition.NOT_AUTHORIZED,
    ACCOUNT_LOCKED: SaslFailureCondition.ACCOUNT_DISABLED,
}

#: The most names of pending registrations kept in memory (about 200 bytes each).  A
#: registration past it is answered as an unknown name: its owner's login gets a bare
#: <not-authorized/>, as before held logins were told anything.
PENDING_NAMES_LIMIT = 10_000


class PendingStore(Protocol):
    """Where registrations awaiting approval are kept (`PendingRegistrationRepository`)."""

    async def held_scram_keys(self, username: str, domain: str) -> dict[str, ScramKeys] | None:
        """The pending registration's keys by hashlib name; None when none is pending."""
        ...

    async def pending_names(self, limit: int) -> set[tuple[str, str]]:
        """(username, domain) of at most `limit` pending registrations, oldest first."""
        ...


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


def stamp_id(path: Path) -> StampId:
    """What tells one version of a stamp file from the next (None: no file yet);
    read by every watcher of a stamp (`streams/signal.py` too)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


#: Seconds between two checks of the credentials stamp file.
STAMP_CHECK_INTERVAL = 0.05

#: Seconds `close` waits for a running cache re-load before cancelling it.
CLOSE_GRACE = 5.0

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
        self._stamp = None if self._stamp_path is None else stamp_id(self._stamp_path)
        self._stamp_checked = float("-inf")
        # Bumped by every invalidation: a read that started before it must not fill the cache.
        self._generation = 0
        #: every account with keys is in `_cache`, except those in `_stale`: names to
        #: look up rather than answer from memory (accounts changed in this process, and
        #: every name in `_pending`, which stays there while it is pending)
        self._complete = False
        self._stale: set[_Owner] = set()
        self._reload: asyncio.Task[None] | None = None
        self._decoy_keys = dummy_keys(decoy_iterations)
        #: registrations awaiting approval (`track_pending`); None: not tracked
        self._pending_store: PendingStore | None = None
        #: their names, at most PENDING_NAMES_LIMIT; a name here is looked up, never
        #: answered "no such keys" from memory
        self._pending: set[_Owner] = set()
        #: bumped by every in-process change of `_pending`, for a load racing one
        self._pending_changes = 0
        self._pending_reload: asyncio.Task[None] | None = None
        self._pending_dirty = False

    def set_decoy_iterations(self, iterations: int) -> None:
        """Check unknown users' passwords with `iterations` (the configured
        `[auth] scram_iterations`, which the server passes at start), so a PLAIN
        attempt for a name without an account does the work a typical account's
        does.  Raises ValueError for a count below 1."""
        if iterations < 1:
            raise ValueError("the iteration count must be positive")
        self._decoy_keys = dummy_keys(iterations)

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Nothing to open: the repository's database belongs to the server."""

    async def close(self) -> None:
        """Let a re-load started by another process's change finish (it is one
        bounded query), so that no query is cut off when the database closes
        after this; one that takes longer than `CLOSE_GRACE` is cancelled."""
        tasks = [t for t in (self._reload, self._pending_reload) if t is not None and not t.done()]
        self._reload = self._pending_reload = None
        if not tasks:
            return
        _done, late = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    # ------------------------------------------------------- CredentialProvider

    async def digest_md5_ha1(self, username: str, domain: str) -> bytes | None:
        """The stored H(user:realm:password) for DIGEST-MD5, None when absent."""
        if self._legacy is None:
            return None
        if await self._accounts.locked(username, domain):
            return None  # answered as an unknown name: DIGEST-MD5 has no held answer
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
        cache = self._cache
        evictions = cache.evictions
        for key, keys in loaded.keys.items():
            if key not in cache:  # keys cached meanwhile are as new
                cache.put(key, keys)
        # Locked accounts have keys that are not cached: never answered from memory.
        self._stale |= loaded.locked
        self._complete = loaded.complete and cache.evictions == evictions
        return len(loaded.keys)

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
        if self._complete and key not in self._stale:  # a pending name is in `_stale`
            return NO_SUCH_KEYS
        return None

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        keys, _held = await self._keys(username, domain)
        return None if keys is None else keys.get(hash_name)

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        keys, _held = await self._keys(username, domain)
        return await self._verify(keys, password)

    async def scram_keys_or_held(
        self, username: str, domain: str, hash_name: str
    ) -> tuple[ScramKeys | None, str | None]:
        """`scram_keys`, and for a registration awaiting approval its keys with the text
        to give a client whose proof is right (`AWAITING_APPROVAL`); the keys alone
        never let anyone in."""
        keys, held = await self._keys(username, domain, held=True)
        found = None if keys is None else keys.get(hash_name)
        return found, None if found is None else held

    async def verify_password_or_held(
        self, username: str, domain: str, password: str
    ) -> tuple[bool, str | None]:
        """`verify_password`, and for a registration awaiting approval (False, the text
        to give the client) when the password is right, (False, None) when not."""
        keys, held = await self._keys(username, domain, held=True)
        right = await self._verify(keys, password)
        if held is not None:
            return False, held if right else None
        return right, None

    async def _verify(self, keys: _Keys | None, password: str) -> bool:
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
        """Whether the account exists, locked or not (`user_exists_or_held` tells)."""
        self._check_stamp()
        if (username, domain) in self._cached:
            return True
        return await self._accounts.exists(username, domain)

    async def user_exists_or_held(self, username: str, domain: str) -> tuple[bool, str | None]:
        """`user_exists`, and for a locked account the text to give a client whose
        identity is proved otherwise (a client certificate: SASL EXTERNAL), which
        then may not log in (`ACCOUNT_LOCKED`)."""
        self._check_stamp()
        if (username, domain) in self._cached:
            return True, None  # only accounts that may log in are cached
        locked = await self._accounts.locked(username, domain)
        if locked is None:
            return False, None
        return True, ACCOUNT_LOCKED if locked else None

    @staticmethod
    def held_condition(text: str) -> SaslFailureCondition:
        """The SASL condition for a right credential whose login this provider held
        back with `text`: account-disabled for a locked account (the account exists
        and was switched off, RFC 6120 §6.5.1), not-authorized for a registration
        awaiting approval (no account yet; see `sasl/scram.py`)."""
        return _HELD_CONDITIONS.get(text, SaslFailureCondition.NOT_AUTHORIZED)

    # ------------------------------------------------- registrations awaiting approval

    async def track_pending(self, store: PendingStore) -> int:
        """Answer logins of registrations awaiting approval from `store` (the register
        module calls this once at start, before clients connect); loads their names.
        Returns how many are in memory."""
        self._pending_store = store
        return await self._load_pending()

    def pending_added(self, username: str, domain: str) -> None:
        """A registration awaiting approval was made in this process."""
        self._pending_changes += 1
        if len(self._pending) < PENDING_NAMES_LIMIT:
            self._pending.add((username, domain))
            self._stale.add((username, domain))

    def pending_resolved(self, username: str, domain: str) -> None:
        """A registration was approved or rejected in this process: drop its name, and
        have its next look-up read the accounts (an approval made one)."""
        self._pending_changes += 1
        self._pending.discard((username, domain))
        self.invalidate(username, domain)

    @property
    def pending(self) -> int:
        """How many names of registrations awaiting approval are in memory."""
        return len(self._pending)

    @property
    def reloading(self) -> bool:
        """Whether a re-load after another process's change is still running."""
        return any(t is not None and not t.done() for t in (self._reload, self._pending_reload))

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
        self._stale = set(self._pending)

    @property
    def cached(self) -> int:
        """How many accounts' keys are in memory."""
        return len(self._cache)

    # ---------------------------------------------------------------- internals

    def _evicted(self, owner: _Owner, keys: _Keys) -> None:
        """The cache had to drop an account: it no longer holds every account, so a
        miss must be read from the database from now on."""
        if self._complete:  # only the first: a full cache evicts at every put
            self._complete = False
            self._stale = set(self._pending)

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
        current = stamp_id(self._stamp_path)
        if current != self._stamp:
            self._stamp = current
            self.changed_elsewhere()

    def changed_elsewhere(self) -> None:
        """Credentials changed somewhere this process did not hear of one by one (the
        stamp changed; a cluster node was cut off from the others' changes): drop
        the cache, and re-load it in the background if it was complete, and the
        names of pending registrations likewise."""
        was_complete = self._complete
        self.clear()
        if was_complete:
            self._start_reload()
        if self._pending_store is not None:
            # The old names stay meanwhile: each is checked when it is looked up.
            self._start_pending_reload()

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

    def _start_pending_reload(self) -> None:
        """Re-load the pending names after another process changed credentials."""
        self._pending_dirty = True
        if self._pending_reload is not None and not self._pending_reload.done():
            return  # the running reload loads once more
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop: the names in memory are checked at their look-ups
        self._pending_reload = loop.create_task(self._reload_pending())

    async def _reload_pending(self) -> None:
        while self._pending_dirty:
            self._pending_dirty = False
            try:
                await self._load_pending()
            except Exception:
                log.exception("could not re-load the registrations awaiting approval")
                return

    async def _load_pending(self) -> int:
        store = self._pending_store
        if store is None:
            return 0
        changes = self._pending_changes
        names = await store.pending_names(PENDING_NAMES_LIMIT)
        if changes != self._pending_changes:
            # Changed in this process meanwhile: keep those names too.  One that is gone
            # is dropped at its next look-up.
            for owner in self._pending:
                if len(names) >= PENDING_NAMES_LIMIT:
                    break
                names.add(owner)
        self._pending = names
        # A name no longer pending may stay in `_stale`: its next look-up drops it.
        self._stale |= names
        if len(names) >= PENDING_NAMES_LIMIT:
            log.warning(
                "%d or more registrations await approval: only the oldest %d are told so"
                " when they log in with the right password (the others as unknown names)",
                PENDING_NAMES_LIMIT,
                PENDING_NAMES_LIMIT,
            )
        return len(names)

    async def _held_keys(self, key: _Owner) -> _Keys | None:
        """The keys of the registration awaiting approval under `key`, a name in
        `_pending`; None when it is gone (approved or rejected by another process
        whose stamp bump is not seen yet), and then the name is dropped and its
        next look-up reads the accounts."""
        assert self._pending_store is not None
        keys = await self._pending_store.held_scram_keys(*key)
        if keys:
            return keys
        self._pending.discard(key)  # it stays in `_stale` until the accounts are read
        return None

    async def _keys(
        self, username: str, domain: str, *, held: bool = False
    ) -> tuple[_Keys | None, str | None]:
        """(an account's keys, None); with `held`, for a registration awaiting approval,
        (its keys, `AWAITING_APPROVAL`), for a locked account (its keys,
        `ACCOUNT_LOCKED`); (None, None) for a name that has neither, and for those two
        without `held`."""
        self._check_stamp()
        key = (username, domain)
        hit = self._cache.get(key)  # refreshes recency
        if hit is not None:
            return hit, None
        if held and key in self._pending and self._pending_store is not None:
            pending = await self._held_keys(key)
            if pending is not None:
                return pending, AWAITING_APPROVAL
        if self._complete and key not in self._stale:
            return None, None  # no such account: answered as fast as a known one
        generation = self._generation
        keys, locked = await self._accounts.login_keys(username, domain)
        if locked:
            # Never cached, and kept among the names looked up (a complete cache
            # must not answer it from memory as an unknown name).
            if self._complete:
                self._stale.add(key)
            return (keys, ACCOUNT_LOCKED) if held and keys else (None, None)
        if generation != self._generation:
            return keys or None, None  # changed meanwhile: answer, but remember nothing
        if key not in self._pending:
            self._stale.discard(key)
        if not keys:
            return None, None  # unknown user: never cached
        if self._cache_size:
            self._cache.put(key, keys)  # an eviction ends completeness (`_evicted`)
        return keys, None
