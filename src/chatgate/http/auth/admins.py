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
import hashlib
import hmac
import logging
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chatgate.http.auth.base import GROUPS
from chatgate.http.auth.digest_core import ha1
from chatgate.http.auth.login import valid_name
from chatgate.http.auth.passwords import check_dummy, check_password, hash_password
from chatgate.storage.repositories.admin import AdminUserRow

if TYPE_CHECKING:
    from chatgate.http.admin_options import AdminOptions
    from chatgate.storage.database import Database

__all__ = ["AdminAccounts", "AdminNameTaken", "InvalidAdmin", "NoSuchAdmin", "bounded_check"]

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


#: Argon2id checks running at once in this process.  Each takes 64 MiB and a
#: thread; the login gate bounds attempts per address and per account, not
#: across addresses, so without this a guesser with many addresses pinned
#: hundreds of MiB (the attack tests: 16 guesses from 8 addresses, 380 MiB).
MAX_PARALLEL_CHECKS = 2
#: Passwords proven right, remembered (about 100 bytes each).
MEMO_ENTRIES = 1024

_check_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _slots() -> asyncio.Semaphore:
    """This loop's semaphore (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    slots = _check_slots.get(loop)
    if slots is None:
        slots = _check_slots[loop] = asyncio.Semaphore(MAX_PARALLEL_CHECKS)
    return slots


async def bounded_check(check: Callable[..., bool], *args: str) -> bool:
    """A password hash check in a thread, at most `MAX_PARALLEL_CHECKS` at once."""
    async with _slots():
        return await asyncio.to_thread(check, *args)


class AdminAccounts:
    def __init__(self, db: Database, options: AdminOptions) -> None:
        self.db = db
        self.options = options
        #: HMAC(key, name, stored hash, password) of passwords proven right: Basic
        #: sends the password with every request, and an Argon2id check per request
        #: would make a script's parallel calls queue (and be throttled as logins).
        #: The stored hash is in the key, so a changed password is never a hit.
        self._memo_key = os.urandom(32)
        self._memo: OrderedDict[bytes, None] = OrderedDict()

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
        row = await self._row(name, password, check_groups(groups))
        if not await self.db.admin_users.add(row):
            raise AdminNameTaken(f"administrator {name} already exists")
        return row

    async def _row(self, name: str, password: str, groups: tuple[str, ...]) -> AdminUserRow:
        secrets = await self._secrets(name, password)
        return AdminUserRow(
            name=name,
            password_hash=str(secrets["password_hash"]),
            digest_realm=secrets["digest_realm"],  # type: ignore[arg-type]
            digest_md5=secrets["digest_md5"],  # type: ignore[arg-type]
            digest_sha256=secrets["digest_sha256"],  # type: ignore[arg-type]
            groups=groups,
            created_at=int(time.time()),
        )

    async def add_first(self, name: str, password: str, groups: Sequence[str]) -> bool:
        """`add`, only if no administrator exists yet (atomic across processes);
        False if one does.  Raises InvalidAdmin."""
        check_name(name)
        row = await self._row(name, password, check_groups(groups))
        return await self.db.admin_users.add_first(row)

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
            await bounded_check(check_dummy, password)
            return None
        digest = self._memo_digest(row, password)
        if digest in self._memo:
            self._memo.move_to_end(digest)
            return row
        if await bounded_check(check_password, row.password_hash, password):
            self._memo[digest] = None
            if len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
            return row
        return None

    async def proven(self, name: str, password: str) -> AdminUserRow | None:
        """The administrator `name` if `password` was proven theirs before and their
        stored password has not changed since: one read and one HMAC, no Argon2id
        check and no login attempt (a miss is checked by `verify`, through the gate)."""
        row = await self.get(name)
        if row is None or self._memo_digest(row, password) not in self._memo:
            return None
        return row

    def _memo_digest(self, row: AdminUserRow, password: str) -> bytes:
        text = f"{row.name}\0{row.password_hash}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._memo_key, text, hashlib.sha256).digest()

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
