"""How many accounts of a domain hold each kind of XEP-0078 secret: a census, no secrets.

Legacy authentication offers an account <digest/> when it holds a digest
secret and a zero-knowledge sequence when it holds a chain with logins left.
Which ones an account holds depends on the settings when its password was last
set, so a server that switched `digest` on later has accounts of both kinds.
A username without an account must be answered like one of them, in the same
proportions (`modules/legacy_decoy.py`); this counts them.

Secrets made stale by a password set elsewhere (see `LegacyRepository.secrets`)
are counted as held: telling them apart needs every account's salts, and such
accounts are rare.  Anonymous accounts are not counted (legacy authentication
never serves them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.models import Account, LegacySecret

__all__ = ["LegacyCensus", "LegacyCensusRepository"]

#: (holds a digest secret, holds a zero-knowledge chain with logins left)
SecretKind = tuple[bool, bool]


@dataclass(frozen=True, slots=True)
class LegacyCensus:
    """Accounts of one domain per kind of legacy secrets held; kinds with none are absent."""

    counts: dict[SecretKind, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class LegacyCensusRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def census(self, domain: str) -> LegacyCensus:
        """Count `domain`'s accounts per kind of legacy secrets held (one query)."""
        digest = LegacySecret.digest_password.is_not(None)
        chain = and_(LegacySecret.zk_hash.is_not(None), LegacySecret.zk_sequence > 0)
        kind = (
            func.coalesce(digest, False).label("digest"),
            func.coalesce(chain, False).label("chain"),
        )
        query = (
            select(*kind, func.count())
            .select_from(Account)
            .outerjoin(LegacySecret, LegacySecret.account_id == Account.id)
            .where(Account.domain == domain, Account.anonymous.is_(False))
            .group_by(*kind)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        counts: dict[SecretKind, int] = {}
        for has_digest, has_chain, count in rows:
            key = (bool(has_digest), bool(has_chain))
            counts[key] = counts.get(key, 0) + int(count)
        return LegacyCensus(counts)
