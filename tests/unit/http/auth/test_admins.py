"""The administrators chatgate keeps: names, groups, password changes and removal
ending console sessions, and the constant-time check of unknown names."""

from __future__ import annotations

import asyncio
import time

import pytest

from chatgate.http.admin_options import AdminOptions
from chatgate.http.auth import admins
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


async def test_a_proven_password_is_remembered_until_it_changes(db: Database) -> None:
    accounts = AdminAccounts(db, AdminOptions())
    await accounts.add("root", "pw-one", ["admin"])
    assert await accounts.proven("root", "pw-one") is None  # never checked yet
    assert await accounts.verify("root", "pw-one") is not None
    assert await accounts.proven("root", "pw-one") is not None
    assert await accounts.proven("root", "pw-two") is None
    # another process (the CLI) changes the password: the stored hash moves
    await AdminAccounts(db, AdminOptions()).set_password("root", "pw-two")
    assert await accounts.proven("root", "pw-one") is None
    await AdminAccounts(db, AdminOptions()).remove("root")
    assert await accounts.proven("root", "pw-two") is None


async def test_no_more_than_two_hash_checks_at_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Argon2id check takes 64 MiB: a crowd of guesses from many addresses
    waits for two slots instead of running one per executor thread."""
    running, peak = 0, 0
    real = admins.check_password

    def counted(stored: str, password: str) -> bool:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            time.sleep(0.02)
            return real(stored, password)
        finally:
            running -= 1

    monkeypatch.setattr(admins, "check_password", counted)
    accounts = AdminAccounts(db, AdminOptions())
    await accounts.add("root", "pw-one", ["admin"])
    results = await asyncio.gather(*(accounts.verify("root", f"guess-{i}") for i in range(8)))
    assert results == [None] * 8
    assert peak == admins.MAX_PARALLEL_CHECKS


async def test_the_first_administrator_is_made_once(db: Database) -> None:
    accounts = AdminAccounts(db, AdminOptions())
    made = await asyncio.gather(
        *(accounts.add_first(f"a{i}", "pw-long-1", ["admin"]) for i in range(4))
    )
    assert sorted(made) == [False, False, False, True]
    assert await accounts.count() == 1
    assert await accounts.add_first("late", "pw-long-1", ["admin"]) is False
