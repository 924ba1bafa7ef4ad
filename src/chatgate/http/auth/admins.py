"""Administrators chatgate keeps: the `basic` and `digest` methods' users.

Passwords are stored as Argon2id hashes (`passwords.py`); a bcrypt hash taken
from a Wowza `admin.password` is checked as it is.  `digest` needs what the
client's response is computed from, HA1 = H(name:realm:password), which is as
good as the password against that realm: it is stored only for the algorithms
`[admin] digest_algorithms` lists, and only when some route set uses `digest`
(an administrator made before digest was turned on must set the password again).

Removing an administrator, or changing its password or groups, ends its console
sessions (they carry the groups they logged in with).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatgate.http.auth.base import GROUPS
from chatgate.http.auth.digest_core import ha1
from chatgate.http.auth.login import valid_name
from chatgate.http.auth.passwords import check_dummy, check_password, hash_password
from chatgate.storage.repositories.admin import AdminUserRow

if TYPE_CHECKING:
    from chatgate.http.admin_options import AdminOptions
    from chatgate.storage.database import Database

__all__ = ["AdminAccounts", "AdminNameTaken", "InvalidAdmin", "NoSuchAdmin"]

log = logging.getLogger("chatgate.http.auth")


class InvalidAdmin(ValueError):
    """A name, password or group list the store refuses (the message says which)."""


class AdminNameTaken(Exception):
    pass


class NoSuchAdmin(LookupError):
    pass


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """`groups` in a stable order, each one of `GROUPS`.  Raises InvalidAdmin."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InvalidAdmin(f"unknown group {unknown[0]!r} (groups: {', '.join(GROUPS)})")
    if not groups:
        raise InvalidAdmin("name at least one group")
    return tuple(g for g in GROUPS if g in groups)


def check_name(name: str) -> str:
    if not valid_name(name):
        raise InvalidAdmin(
            f"invalid administrator name {name!r}: 1 to 64 characters, no ':' and no spaces"
        )
    return name


class AdminAccounts:
    def __init__(self, db: Database, options: AdminOptions) -> None:
        self.db = db
        self.options = options

    # ------------------------------------------------------------ secrets

    def digest_algorithms(self) -> tuple[str, ...]:
        """Algorithms whose HA1 a password set stores: `digest_algorithms` when a
        route set uses `digest`, else none."""
        options = self.options
        used = any("digest" in options.methods_for(s) for s in ("api", "console", "metrics"))
        return tuple(options.digest_algorithms) if used else ()

    async def _secrets(self, name: str, password: str) -> dict[str, object]:
        if not password:
            raise InvalidAdmin("the password is empty")
        try:
            hashed = await asyncio.to_thread(hash_password, password)
        except ValueError as exc:
            raise InvalidAdmin(str(exc)) from None
        algorithms = self.digest_algorithms()
        realm = self.options.realm
        return {
            "password_hash": hashed,
            "digest_realm": realm if algorithms else None,
            "digest_md5": ha1("MD5", name, realm, password) if "MD5" in algorithms else None,
            "digest_sha256": (
                ha1("SHA-256", name, realm, password) if "SHA-256" in algorithms else None
            ),
        }

    # ------------------------------------------------------------ changes

    async def add(self, name: str, password: str, groups: Sequence[str]) -> AdminUserRow:
        """Store a new administrator.  Raises InvalidAdmin, AdminNameTaken."""
        check_name(name)
        chosen = check_groups(groups)
        secrets = await self._secrets(name, password)
        row = AdminUserRow(
            name=name,
            password_hash=str(secrets["password_hash"]),
            digest_realm=secrets["digest_realm"],  # type: ignore[arg-type]
            digest_md5=secrets["digest_md5"],  # type: ignore[arg-type]
            digest_sha256=secrets["digest_sha256"],  # type: ignore[arg-type]
            groups=chosen,
            created_at=int(time.time()),
        )
        if not await self.db.admin_users.add(row):
            raise AdminNameTaken(f"administrator {name} already exists")
        return row

    async def add_hashed(self, name: str, password_hash: str, groups: Sequence[str]) -> None:
        """Store an administrator whose hash comes from elsewhere (a Wowza bcrypt
        line); `digest` cannot log it in.  Raises InvalidAdmin, AdminNameTaken."""
        check_name(name)
        row = AdminUserRow(
            name, password_hash, None, None, None, check_groups(groups), int(time.time())
        )
        if not await self.db.admin_users.add(row):
            raise AdminNameTaken(f"administrator {name} already exists")

    async def set_password(self, name: str, password: str) -> None:
        """Raises InvalidAdmin, NoSuchAdmin.  Ends the administrator's console sessions."""
        secrets = await self._secrets(name, password)
        if not await self.db.admin_users.update(name, **secrets):
            raise NoSuchAdmin(name)
        await self.db.console_sessions.remove_admin(name)

    async def set_groups(self, name: str, groups: Sequence[str]) -> None:
        """Raises InvalidAdmin, NoSuchAdmin.  Ends the administrator's console sessions."""
        if not await self.db.admin_users.update(name, groups=check_groups(groups)):
            raise NoSuchAdmin(name)
        await self.db.console_sessions.remove_admin(name)

    async def remove(self, name: str) -> None:
        """Raises NoSuchAdmin.  Ends the administrator's console sessions."""
        if not await self.db.admin_users.remove(name):
            raise NoSuchAdmin(name)
        await self.db.console_sessions.remove_admin(name)

    # ------------------------------------------------------------ reading

    async def get(self, name: str) -> AdminUserRow | None:
        return await self.db.admin_users.get(name) if valid_name(name) else None

    async def all(self) -> list[AdminUserRow]:
        return await self.db.admin_users.all()

    async def count(self) -> int:
        return await self.db.admin_users.count()

    async def verify(self, name: str, password: str) -> AdminUserRow | None:
        """The administrator `name` if `password` is theirs.  An unknown name costs
        one Argon2id check too, so timing does not tell who exists."""
        row = await self.get(name)
        if row is None:
            await asyncio.to_thread(check_dummy, password)
            return None
        if await asyncio.to_thread(check_password, row.password_hash, password):
            return row
        return None

    async def digest_secret(self, name: str, algorithm: str) -> tuple[str, AdminUserRow] | None:
        """(HA1, row) for a digest login under `[admin] realm`; None (logged) when
        the administrator has none for this realm and algorithm."""
        row = await self.get(name)
        if row is None:
            return None
        realm = self.options.realm
        if row.digest_realm != realm:
            log.warning(
                "admin: digest login of %s refused: its digest secret was stored for realm"
                " %r, [admin] realm is %r; set its password again"
                " (chatgate admin user passwd %s)",
                name,
                row.digest_realm,
                realm,
                name,
            )
            return None
        secret = row.digest_md5 if algorithm == "MD5" else row.digest_sha256
        if secret is None:
            log.warning(
                "admin: digest login of %s refused: no %s secret stored (it is stored for"
                " [admin] digest_algorithms when the password is set); set its password"
                " again (chatgate admin user passwd %s)",
                name,
                algorithm,
                name,
            )
            return None
        return secret, row
