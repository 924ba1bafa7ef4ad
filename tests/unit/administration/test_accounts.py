"""Accounts through the operations layer: the account service's rules, paging,
search and what a lock or deletion does to live sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.administration import accounts
from chatgate.administration.errors import Conflict, Invalid, NotFound

from ..modules.wire import Server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    server = await Server.start(tmp_path, {})
    try:
        yield server
    finally:
        await server.stop()


async def test_create_then_get_and_list(server: Server) -> None:
    made = await accounts.create_account(server.ctx, "Alice", "alice-password")
    assert (made.jid, made.locked, made.sessions) == ("alice@localhost", False, ())
    got = await accounts.get_account(server.ctx, "alice@localhost")
    assert got == made
    page = await accounts.list_accounts(server.ctx)
    assert [a.jid for a in page.items] == ["alice@localhost"] and page.next_after is None


async def test_create_refusals_name_the_field(server: Server) -> None:
    with pytest.raises(Invalid) as short:
        await accounts.create_account(server.ctx, "bob", "short")
    assert short.value.field == "password"
    with pytest.raises(Invalid) as bad:
        await accounts.create_account(server.ctx, "bad name@", "long-enough-password")
    assert bad.value.field == "username"
    with pytest.raises(Conflict):
        await accounts.create_account(server.ctx, "admin", "long-enough-password")
    made = await accounts.create_account(
        server.ctx, "admin", "long-enough-password", allow_reserved=True
    )
    assert made.jid == "admin@localhost"
    with pytest.raises(Conflict):
        await accounts.create_account(server.ctx, "admin", "another-password", allow_reserved=True)
    with pytest.raises(Invalid) as domain:
        await accounts.create_account(
            server.ctx, "x", "long-enough-password", domain="other.example"
        )
    assert domain.value.field == "domain"


async def test_paging_and_search(server: Server) -> None:
    for name in ("ann", "bea", "cat", "dan", "eve"):
        await server.add_user(name, "password-123")
    first = await accounts.list_accounts(server.ctx, limit=2)
    assert [a.username for a in first.items] == ["ann", "bea"] and first.total == 5
    second = await accounts.list_accounts(server.ctx, limit=2, after=first.next_after)
    assert [a.username for a in second.items] == ["cat", "dan"]
    last = await accounts.list_accounts(server.ctx, limit=2, after=second.next_after)
    assert [a.username for a in last.items] == ["eve"] and last.next_after is None
    found = await accounts.list_accounts(server.ctx, search="A")
    assert [a.username for a in found.items] == ["ann", "bea", "cat", "dan"]


async def test_password_lock_and_delete(server: Server) -> None:
    await server.add_user("alice", "alice-password")
    wire = server.connect()
    await wire.login_plain("alice", "alice-password", "phone")
    assert (await accounts.get_account(server.ctx, "alice@localhost")).sessions == (
        "alice@localhost/phone",
    )

    await accounts.change_password(server.ctx, "alice@localhost", "a-new-password")
    assert not wire.closed  # a password change leaves sessions open
    assert await accounts.set_locked(server.ctx, "alice@localhost", True)
    await wire.settle()
    assert wire.closed
    assert (await accounts.get_account(server.ctx, "alice@localhost")).locked
    assert not await accounts.set_locked(server.ctx, "alice@localhost", True)
    assert await accounts.set_locked(server.ctx, "alice@localhost", False)

    await accounts.delete_account(server.ctx, "alice@localhost")
    with pytest.raises(NotFound):
        await accounts.get_account(server.ctx, "alice@localhost")
    with pytest.raises(NotFound):
        await accounts.delete_account(server.ctx, "alice@localhost")
    with pytest.raises(NotFound):
        await accounts.change_password(server.ctx, "nobody@localhost", "whatever-password")
    with pytest.raises(NotFound):
        await accounts.set_locked(server.ctx, "not a jid@@", True)
