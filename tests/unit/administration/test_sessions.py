"""The live sessions an operator sees and kicks, read from real connection drivers
(`tests/unit/modules/wire.py`: the real context, negotiation and modules over a
recording transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.administration import sessions
from chatgate.administration.errors import NotFound

from ..modules.wire import Server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    server = await Server.start(tmp_path, {})
    await server.add_user("alice", "alice-password")
    await server.add_user("bob", "bob-password")
    try:
        yield server
    finally:
        await server.stop()


async def test_lists_bound_sessions_with_transport_address_tls_and_mechanism(
    server: Server,
) -> None:
    alice = server.connect(address="192.0.2.10")
    await alice.login_plain("alice", "alice-password", "phone")
    bob = server.connect(address="192.0.2.11", tls=False, require_tls=False, allow_plain=True)
    await bob.login_plain("bob", "bob-password", "desk")
    negotiating = server.connect(address="192.0.2.12")
    await negotiating.open()

    listed = sessions.list_sessions(server.ctx)

    assert [s.jid for s in listed] == ["alice@localhost/phone", "bob@localhost/desk"]
    first, second = listed
    assert (first.account, first.resource) == ("alice@localhost", "phone")
    assert (first.transport, first.direct_tls) == ("tcp", True)
    assert (first.address, first.tls_version, first.mechanism) == (
        "192.0.2.10",
        "TLSv1.3",
        "PLAIN",
    )
    assert (second.transport, second.direct_tls, second.tls_version) == ("tcp", False, None)
    assert sessions.list_sessions(server.ctx, account="bob@localhost") == [second]


async def test_kick_ends_the_stream_with_policy_violation(server: Server) -> None:
    alice = server.connect()
    await alice.login_plain("alice", "alice-password", "phone")
    start = len(alice.transport.out)

    ended = sessions.kick(server.ctx, "alice@localhost/phone")
    await alice.settle()

    assert ended.jid == "alice@localhost/phone"
    written = alice.transport.out[start:].decode()
    assert "<policy-violation" in written and sessions.KICK_TEXT in written
    assert written.endswith("</stream:stream>")
    assert alice.closed
    assert sessions.list_sessions(server.ctx) == []
    assert not server.ctx.router.directory.bound_here("alice@localhost")


async def test_kick_of_an_unknown_or_bare_jid_is_not_found(server: Server) -> None:
    alice = server.connect()
    await alice.login_plain("alice", "alice-password", "phone")

    with pytest.raises(NotFound):
        sessions.kick(server.ctx, "alice@localhost")
    with pytest.raises(NotFound):
        sessions.kick(server.ctx, "alice@localhost/laptop")
    assert not alice.closed
    with pytest.raises(NotFound):
        sessions.get_session(server.ctx, "nobody@localhost/x")
    assert sessions.get_session(server.ctx, "alice@localhost/phone").mechanism == "PLAIN"


async def test_kick_account_ends_every_resource(server: Server) -> None:
    phone = server.connect()
    await phone.login_plain("alice", "alice-password", "phone")
    desk = server.connect()
    await desk.login_plain("alice", "alice-password", "desk")
    bob = server.connect()
    await bob.login_plain("bob", "bob-password", "r")

    ended = sessions.kick_account(server.ctx, "alice@localhost")
    await phone.settle()

    assert sorted(s.resource for s in ended) == ["desk", "phone"]
    assert phone.closed and desk.closed and not bob.closed
    assert [s.jid for s in sessions.list_sessions(server.ctx)] == ["bob@localhost/r"]
