"""Stream keys: random per-account secrets a publisher puts in its media URL
instead of its XMPP password (``rtmp://host/live/alice?key=...``).

`LocalStreamKeys` keeps them in this process (tests, a server without
storage): indexed by their HMAC under a random pepper, never by the key itself.
`DatabaseStreamKeys` keeps them in the database (``stream_keys``, through
`storage.repositories.streams`), shared by every process on it and by the
``chatgate streams`` commands.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import time
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatgate.lru import ENTRY_OVERHEAD, LruCache
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.streams import StreamKeyTaken
from chatgate.streams.stores import ChangeSignal, KeyInfo, KeyOwner

if TYPE_CHECKING:
    from chatgate.storage.repositories.secrets import SecretStore
    from chatgate.storage.repositories.streams import StreamKeyRepository

__all__ = ["CIPHER_SECRET", "PEPPER_SECRET", "DatabaseStreamKeys", "LocalStreamKeys"]

log = logging.getLogger(__name__)

_getsizeof = sys.getsizeof


class LocalStreamKeys:
    """`StreamKeyStore` in this process's memory."""

    def __init__(self, pepper: bytes | None = None) -> None:
        self._pepper = pepper if pepper is not None else secrets.token_bytes(32)
        self._owners: dict[bytes, KeyOwner] = {}
        self._keys: dict[str, tuple[str, bytes, float]] = {}

    def _digest(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    async def issue(self, account: str) -> str:
        key = secrets.token_urlsafe(24)
        await self.put(account, key)
        return key

    async def put(self, account: str, key: str) -> KeyOwner:
        if not key or not key.isprintable():
            raise ValueError("a stream key is printable text")
        await self.revoke(account)
        digest = self._digest(key)
        owner = self._owners[digest] = KeyOwner(account, digest[:9].hex())
        self._keys[account] = (key, digest, time.time())
        return owner

    async def revoke(self, account: str) -> KeyOwner | None:
        held = self._keys.pop(account, None)
        return None if held is None else self._owners.pop(held[1], None)

    async def listing(self) -> list[KeyInfo]:
        return [
            KeyInfo(account, self._owners[digest].key_id, created)
            for account, (_, digest, created) in sorted(self._keys.items())
        ]

    async def owner(self, key: str) -> KeyOwner | None:
        return self._owners.get(self._digest(key))

    async def key_of(self, account: str) -> str | None:
        held = self._keys.get(account)
        return None if held is None else held[0]


# ---------------------------------------------------------------- on the database

#: Installation secrets (`SecretStore` names) of the database store.
PEPPER_SECRET: Final = "stream-key-pepper"
CIPHER_SECRET: Final = "stream-key-cipher"

#: A key `put` accepts: 6 to 128 printable ASCII characters, no space (Wowza's
#: ``publish.password`` entries are such words; issued keys are 32 of them).
_KEY_TEXT: Final = re.compile(r"[\x21-\x7e]{6,128}")
_NONCE_BYTES: Final = 12

#: Positive look-ups cached (digest -> owner): a few hundred bytes each.
DEFAULT_CACHE_SIZE: Final = 10_000
_MAX_OWNER_BYTES: Final = 4 * 2047 + 512  # a bare JID of the widest characters, key id, digest


def _weigh(digest: bytes, owner: KeyOwner) -> int:
    return (
        _getsizeof(digest)
        + _getsizeof(owner)
        + _getsizeof(owner.account)
        + _getsizeof(owner.key_id)
    )


def _split(account: str) -> tuple[str, str] | None:
    """(username, domain) of a bare JID ``localpart@domain``; None when it is not one."""
    if not isinstance(account, str):
        return None
    username, at, domain = account.partition("@")
    if not (at and username and domain and account.isprintable()) or "@" in domain or "/" in domain:
        return None
    return (username, domain)


class DatabaseStreamKeys:
    """`StreamKeyStore` on the database: shared by every process on it.

    A key is stored as its HMAC-SHA-256 under the installation's pepper (the
    look-up index: `owner` is one indexed read) and sealed with AES-256-GCM under
    the installation's cipher key, the account as associated data (a sealed key
    copied to another account's row does not open), for `key_of`.  Neither
    secret is in the database row, but both are in the database
    (``installation_secrets``): the seal keeps keys out of a leaked dump of the
    streams tables, backups of one table and logs of queries, not from whoever
    holds the whole database.

    Positive look-ups are cached (at most `cache_size`, digest -> owner; never
    misses, which anyone can make up); the cache is dropped when `signal` fires,
    which this store raises itself after every change, so a key revoked by
    another process stops working here within the signal's check interval.
    """

    def __init__(
        self,
        repository: StreamKeyRepository,
        *,
        pepper: bytes,
        cipher_key: bytes,
        signal: ChangeSignal,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """`pepper` at least 16 bytes, `cipher_key` 32 (AES-256); `ValueError`
        otherwise.  `signal` must be this store's own watcher (see `signal.py`)."""
        if len(pepper) < 16:
            raise ValueError("the stream key pepper must have at least 16 bytes")
        if len(cipher_key) != 32:
            raise ValueError("the stream key cipher key must have 32 bytes (AES-256)")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._repository = repository
        self._pepper = pepper
        self._cipher = AESGCM(cipher_key)
        self._signal = signal
        entries = max(1, cache_size)
        self._cache_size = cache_size
        self._cache: LruCache[bytes, KeyOwner] = LruCache(
            entries, entries * (ENTRY_OVERHEAD + _MAX_OWNER_BYTES), _weigh
        )
        # Bumped when the cache is dropped: a read begun before must not fill it.
        self._generation = 0

    @classmethod
    async def open(
        cls,
        repository: StreamKeyRepository,
        secrets_store: SecretStore,
        signal: ChangeSignal,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> DatabaseStreamKeys:
        """The store with the installation's pepper and cipher key (made on first use)."""
        pepper = await secrets_store.get_or_create(PEPPER_SECRET, os.urandom(32))
        cipher_key = await secrets_store.get_or_create(CIPHER_SECRET, os.urandom(32))
        return cls(
            repository, pepper=pepper, cipher_key=cipher_key, signal=signal, cache_size=cache_size
        )

    def _digest(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode("ascii"), hashlib.sha256).digest()

    def _drop_cache(self) -> None:
        self._cache.clear()
        self._generation += 1

    def _changed(self) -> None:
        self._drop_cache()
        self._signal.raise_()

    # ------------------------------------------------------------ the hot path

    async def owner(self, key: str) -> KeyOwner | None:
        if not isinstance(key, str) or _KEY_TEXT.fullmatch(key) is None:
            return None  # never stored: `put` takes no other
        if self._signal.changed():
            self._drop_cache()
        digest = self._digest(key)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        generation = self._generation
        found = await self._repository.owner_of(digest)
        if found is None:
            return None
        username, domain, key_id = found
        owner = KeyOwner(f"{username}@{domain}", key_id)
        if self._cache_size and generation == self._generation:
            self._cache.put(digest, owner)
        return owner

    async def key_of(self, account: str) -> str | None:
        parts = _split(account)
        if parts is None:
            return None
        sealed = await self._repository.sealed_of(parts)
        if sealed is None:
            return None
        try:
            key = self._cipher.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], account.encode("utf-8")
            )
        except InvalidTag:
            log.warning("stream keys: the stored key of %s does not open; ignored", account)
            return None
        return key.decode("ascii")

    # ------------------------------------------------------------ management

    async def issue(self, account: str) -> str:
        """A new random key (32 URL-safe characters) for `account`, replacing any
        it had; `ValueError` when the account does not exist."""
        key = secrets.token_urlsafe(24)
        await self.put(account, key)
        return key

    async def put(self, account: str, key: str) -> KeyOwner:
        """`ValueError` for a key that is not 6 to 128 printable ASCII characters
        without spaces, for an account that does not exist, and for a key another
        account has."""
        if not isinstance(key, str) or _KEY_TEXT.fullmatch(key) is None:
            raise ValueError("a stream key is 6 to 128 printable ASCII characters, no spaces")
        parts = _split(account)
        if parts is None:
            raise ValueError(f"not an account (localpart@domain): {account!r}")
        digest = self._digest(key)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._cipher.encrypt(nonce, key.encode("ascii"), account.encode("utf-8"))
        owner = KeyOwner(account, digest[:9].hex())
        try:
            await self._repository.put(parts, digest, owner.key_id, sealed)
        except AccountNotFound:
            raise ValueError(f"no account {account}: a stream key needs one") from None
        except StreamKeyTaken:
            raise ValueError(f"this stream key is another account's, not {account}'s") from None
        self._changed()
        return owner

    async def revoke(self, account: str) -> KeyOwner | None:
        parts = _split(account)
        if parts is None:
            return None
        key_id = await self._repository.revoke(parts)
        if key_id is None:
            return None
        self._changed()
        return KeyOwner(account, key_id)

    async def listing(self) -> list[KeyInfo]:
        rows = await self._repository.listing()
        infos = [KeyInfo(f"{r.username}@{r.domain}", r.key_id, r.created.timestamp()) for r in rows]
        infos.sort(key=lambda info: info.account)
        return infos
