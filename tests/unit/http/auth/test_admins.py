"""The administrators chatgate keeps: names, groups, password changes and removal
ending console sessions, and the constant-time check of unknown names."""

from __future__ import annotations

import time

import pytest

from chatgate.http.admin_options import AdminOptions
from chatgate.http.auth.admins import AdminAccounts, AdminNameTaken, InvalidAdmin, NoSuchAdmin
from chatgate.http.auth.digest_core import ha1
from chatgate.storage.database import Database
from chatgate.storage.repositories.admin import ConsoleSessionRow


async def session_of(db: Database, admin: str) -> None:
    now = int(time.time())
    row = ConsoleSessionRow(f"h-{admin}-{now}", admin, ("admin",), "basic", "csrf", now, now)
    await db.console_sessions.add(row)


async def test_add_verify_and_change(db: Database) -> None:
    accounts = AdminAccounts(db, AdminOptions(auth=["digest", "basic"]))
    row = await accounts.add("root", "pw-one", ["readOnly", "admin"])
    assert row.groups == ("admin", "readOnly")  # in GROUPS' order
    assert row.digest_realm == "chatgate"
    assert row.digest_sha256 == ha1("SHA-256", "root", "chatgate", "pw-one")
    assert row.digest_md5 == ha1("MD5", "root", "chatgate", "pw-one")
    assert await accounts.verify("root", "pw-one") is not None
    assert await accounts.verify("root", "pw-two") is None
    assert await accounts.verify("nobody", "pw-one") is None
    assert await accounts.count() == 1
    with pytest.raises(AdminNameTaken):
        await accounts.add("root", "x", ["admin"])
    await session_of(db, "root")
    await accounts.set_password("root", "pw-two")
    assert await db.console_sessions.remove_admin("root") == 0  # already ended
    assert await accounts.verify("root", "pw-two") is not None
    stored = await db.admin_users.get("root")
    assert stored is not None and stored.digest_md5 == ha1("MD5", "root", "chatgate", "pw-two")
    await session_of(db, "root")
    await accounts.set_groups("root", ["advUser"])
    assert await db.console_sessions.remove_admin("root") == 0
    assert [r.groups for r in await accounts.all()] == [("advUser",)]
    await session_of(db, "root")
    await accounts.remove("root")
    assert await db.console_sessions.remove_admin("root") == 0
    assert await accounts.count() == 0
    with pytest.raises(NoSuchAdmin):
        await accounts.remove("root")
    with pytest.raises(NoSuchAdmin):
        await accounts.set_password("root", "x")


@pytest.mark.parametrize("name", ["", "a:b", "a b", "tab\there", "x" * 65])
async def test_invalid_names_are_refused(db: Database, name: str) -> None:
    with pytest.raises(InvalidAdmin):
        await AdminAccounts(db, AdminOptions()).add(name, "pw", ["admin"])


@pytest.mark.parametrize("groups", [[], ["root"], ["admin", "wheel"]])
async def test_invalid_groups_are_refused(db: Database, groups: list[str]) -> None:
    with pytest.raises(InvalidAdmin):
        await AdminAccounts(db, AdminOptions()).add("ok", "pw", groups)
