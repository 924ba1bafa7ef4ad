"""Stream keys: random per-account secrets a publisher puts in its media URL
instead of its XMPP password (``rtmp://host/live/alice?key=...``).

`LocalStreamKeys` keeps them in this process (tests, a server without
storage): indexed by their HMAC under a random pepper, never by the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from chatgate.streams.stores import KeyInfo, KeyOwner

__all__ = ["LocalStreamKeys"]


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
