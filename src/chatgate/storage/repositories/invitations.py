"""Invitations to register (XEP-0401/0445): tokens an administrator hands out.

This repository owns the ``registration_invites`` table (migration 0002).  A
token is never stored: its SHA-256 (`invite_hash`) is, and identifies it.  An
invitation is usable while it has uses left and has not expired; one made for
a username reserves that name while it is usable.

Besides the repository (one transaction per method), two functions work inside
a transaction another repository opened, so that redeeming an invitation is
atomic with what it admits: `claim_invitation` (refuse a name another usable
invitation reserves, redeem the presented token) and `reserved_names` (the
same refusal for many names at once, for `chatgate user import`).

Nothing here reads the clock: expiry checks take `now`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.errors import AccountExists, StorageError
from chatgate.storage.models import RegistrationInvite, utcnow

__all__ = [
    "InvitationRepository",
    "Invite",
    "InviteUnavailable",
    "StoredInvite",
    "claim_invitation",
    "invite_hash",
    "invite_usable",
    "reserved_names",
]


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Invite:
    """A usable invitation: `username` is the name it reserves, if any."""

    domain: str
    username: str | None
    uses_left: int
    expires: datetime | None


@dataclass(frozen=True, slots=True)
class StoredInvite:
    """An invitation as an administrator sees it, usable or not.  The token itself
    is not stored: `token_hash` (hex SHA-256) identifies it."""

    token_hash: str
    domain: str
    username: str | None
    uses_left: int
    expires: datetime | None
    created: datetime

    def usable(self, now: datetime) -> bool:
        return invite_usable(Invite(self.domain, self.username, self.uses_left, self.expires), now)


class InviteUnavailable(StorageError):
    """The invitation is unknown, used up or expired (it may have been used meanwhile)."""


def invite_hash(token: str) -> str:
    """How a token is stored and looked up: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def invite_usable(invite: Invite, now: datetime) -> bool:
    """Uses left and not expired at `now`."""
    return invite.uses_left > 0 and (invite.expires is None or invite.expires > now)


# ---------------------------------------------------------------- repository


class InvitationRepository:
    """Invitation tokens: add, look up, list, revoke.  Every method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def add_invite(
        self,
        token: str,
        domain: str,
        *,
        username: str | None = None,
        uses: int = 1,
        expires: datetime | None = None,
    ) -> bool:
        """Store an invitation; False (and nothing changed) when the token exists."""
        if uses < 1:
            raise ValueError("an invitation needs at least one use")
        try:
            async with self._writer.begin() as conn:
                await conn.execute(
                    insert(RegistrationInvite).values(
                        token_hash=invite_hash(token),
                        domain=domain,
                        username=username,
                        uses_left=uses,
                        expires=expires,
                        created=utcnow(),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def invite(self, token: str, domain: str, now: datetime) -> Invite | None:
        """The invitation if it can be redeemed now (known, uses left, not expired)."""
        query = select(
            RegistrationInvite.domain,
            RegistrationInvite.username,
            RegistrationInvite.uses_left,
            RegistrationInvite.expires,
        ).where(
            RegistrationInvite.token_hash == invite_hash(token),
            RegistrationInvite.domain == domain,
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        invite = Invite(*row)
        return invite if invite_usable(invite, now) else None

    async def invites(self, domain: str | None = None) -> list[StoredInvite]:
        """Every stored invitation, usable, used up or expired, oldest first."""
        query = select(
            RegistrationInvite.token_hash,
            RegistrationInvite.domain,
            RegistrationInvite.username,
            RegistrationInvite.uses_left,
            RegistrationInvite.expires,
            RegistrationInvite.created,
        ).order_by(RegistrationInvite.created, RegistrationInvite.token_hash)
        if domain is not None:
            query = query.where(RegistrationInvite.domain == domain)
        async with self._engine.connect() as conn:
            return [StoredInvite(*row) for row in (await conn.execute(query)).all()]

    async def revoke_invite(self, token: str) -> bool:
        """Delete the invitation with this token at once; False when it is unknown.
        A registration that presented it earlier in its stream fails (forbidden)."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(RegistrationInvite).where(
                    RegistrationInvite.token_hash == invite_hash(token)
                )
            )
            return result.rowcount > 0

    async def revoke_invite_hash(self, prefix: str) -> list[str]:
        """Delete the invitation whose token hash starts with `prefix` (lowercase hex,
        as `invites` shows it), when exactly one does.  Returns the matching hashes:
        none, the one deleted, or several (then nothing is deleted)."""
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            return []
        async with self._writer.begin() as conn:
            rows = await conn.execute(
                select(RegistrationInvite.token_hash).where(
                    RegistrationInvite.token_hash.startswith(prefix)
                )
            )
            matches = [row[0] for row in rows.all()]
            if len(matches) == 1:
                await conn.execute(
                    delete(RegistrationInvite).where(RegistrationInvite.token_hash == matches[0])
                )
            return matches


# ---------------------------------------------------------------- inside a transaction


async def claim_invitation(
    conn: AsyncConnection, username: str, domain: str, token: str | None, now: datetime
) -> None:
    """Inside a write transaction: refuse (AccountExists) a name another usable
    invitation reserves; redeem `token` if given (InviteUnavailable when it is
    unknown, used up, expired, for another domain or for another name)."""
    presented = None if token is None else invite_hash(token)
    rows = await conn.execute(
        select(
            RegistrationInvite.token_hash,
            RegistrationInvite.domain,
            RegistrationInvite.username,
            RegistrationInvite.uses_left,
            RegistrationInvite.expires,
        ).where(
            RegistrationInvite.domain == domain,
            RegistrationInvite.username == username,
        )
    )
    for token_hash, invite_domain, invite_username, uses_left, expires in rows.all():
        other = Invite(invite_domain, invite_username, uses_left, expires)
        if token_hash != presented and invite_usable(other, now):
            raise AccountExists(username, domain)
    if presented is None:
        return
    row = (
        await conn.execute(
            select(
                RegistrationInvite.domain,
                RegistrationInvite.username,
                RegistrationInvite.uses_left,
                RegistrationInvite.expires,
            )
            .where(RegistrationInvite.token_hash == presented)
            # PostgreSQL: a second redemption waits here, then reads the uses left
            .with_for_update()
        )
    ).one_or_none()
    invite = None if row is None else Invite(*row)
    if invite is None or invite.domain != domain or not invite_usable(invite, now):
        raise InviteUnavailable("the invitation is unknown, used up or expired")
    if invite.username is not None and invite.username != username:
        raise InviteUnavailable(f"the invitation is for {invite.username!r}")
    used = await conn.execute(
        update(RegistrationInvite)
        .where(RegistrationInvite.token_hash == presented, RegistrationInvite.uses_left > 0)
        .values(uses_left=RegistrationInvite.uses_left - 1)
    )
    if used.rowcount != 1:  # cannot happen under the row lock; never go below zero
        raise InviteUnavailable("the invitation is used up")


async def reserved_names(
    conn: AsyncConnection, accounts: Sequence[tuple[str, str]], now: datetime
) -> set[tuple[str, str]]:
    """The (username, domain) pairs among `accounts` that a usable invitation reserves."""
    if not accounts:
        return set()
    rows = await conn.execute(
        select(RegistrationInvite.username, RegistrationInvite.domain).where(
            tuple_(RegistrationInvite.username, RegistrationInvite.domain).in_(accounts),
            RegistrationInvite.uses_left > 0,
            or_(RegistrationInvite.expires.is_(None), RegistrationInvite.expires > now),
        )
    )
    return {(u, d) for u, d in rows.all() if u is not None}
