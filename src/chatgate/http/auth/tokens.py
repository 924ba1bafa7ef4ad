"""Bearer tokens for automation: created, listed, revoked, checked.

A token reads ``cg_<id>_<secret>``: the id (12 hex digits) finds the row, the
secret (32 random bytes, base64url) proves it.  Only SHA-256 of the secret is
stored: a database dump opens nothing, and a slow hash is not needed for 256
random bits.  The token is shown once, when it is created.  `check` compares
in constant time and compares something even for an unknown id; `last_used_at`
is written at most once a minute per token (a busy script must not turn every
request into a database write).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from chatgate.http.auth.admins import check_groups
from chatgate.http.auth.base import Principal
from chatgate.storage.repositories.admin import AdminTokenRow

if TYPE_CHECKING:
    from chatgate.storage.database import Database

__all__ = ["PREFIX", "BearerTokens"]

PREFIX: Final = "cg"
#: seconds between two writes of one token's `last_used_at`
USE_RECORD_INTERVAL: Final = 60
_DUMMY_HASH: Final = hashlib.sha256(b"chatgate: no such token").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a token that has our shape, else None."""
    prefix, _, rest = token.strip().partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(token_id) != 12 or not secret or len(secret) > 128:
        return None
    if any(c not in "0123456789abcdef" for c in token_id):
        return None
    return token_id, secret


class BearerTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        label: str,
        groups: Sequence[str],
        created_by: str,
        ttl_seconds: float | None = None,
        now: float | None = None,
    ) -> tuple[str, AdminTokenRow]:
        """A new token: (the token, shown once; its row).  Raises InvalidAdmin for
        unknown groups, ValueError for an empty label or a ttl not above 0."""
        label = label.strip()
        if not label or len(label) > 200:
            raise ValueError("a token's label is 1 to 200 characters")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError("a token's lifetime must be positive")
        now = time.time() if now is None else now
        token_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        row = AdminTokenRow(
            id=token_id,
            label=label,
            secret_hash=_digest(secret),
            groups=check_groups(groups),
            created_by=created_by,
            created_at=int(now),
            expires_at=None if ttl_seconds is None else int(now + ttl_seconds),
            last_used_at=None,
        )
        await self.db.admin_tokens.add(row)
        return f"{PREFIX}_{token_id}_{secret}", row

    async def list(self) -> list[AdminTokenRow]:
        return await self.db.admin_tokens.all()

    async def revoke(self, token_id: str) -> bool:
        """Forget a token (its next use is refused); False when there is none."""
        return await self.db.admin_tokens.remove(token_id)

    async def check(self, token: str, now: float | None = None) -> Principal | None:
        """Who `token` proves, or None (malformed, unknown, wrong, expired)."""
        now = time.time() if now is None else now
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        row = await self.db.admin_tokens.get(token_id)
        stored = _DUMMY_HASH if row is None else row.secret_hash
        right = hmac.compare_digest(_digest(secret).encode(), stored.encode())
        if row is None or not right:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        if row.last_used_at is None or now - row.last_used_at >= USE_RECORD_INTERVAL:
            await self.db.admin_tokens.used(row.id, int(now))
        return Principal(row.label, frozenset(row.groups), "bearer", token_id=row.id)
