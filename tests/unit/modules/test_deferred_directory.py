"""A session directory that answers later, as a shared store (Redis) will: binding,
XEP-0078 logins, conflicts, a client leaving mid-claim and anonymous existence all go
through the awaitable answers the `SessionDirectory` protocol allows, through the real
connection driver and modules.

`DeferredDirectory` wraps the local directory and yields to the event loop before
each answer it may defer (a round trip to a store), so every test here fails if a
caller treats the answer as immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any

from chatgate.config import ResourceConflict
from chatgate.modules.anonymous import AnonymousCleanup
from chatgate.modules.legacy_auth import derive_legacy_secrets
from chatgate.vhost import VirtualHost
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.directory import Claimed, LocalSessionDirectory, SessionFactory
from chatgate.xmpp.session import C2SSession

from .wire import Server, plain

BIND = (
    "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>{}</resource></bind></iq>"
)


class DeferredDirectory:
    """The local directory behind answers that arrive a loop turn later."""

    def __init__(self, conflict: ResourceConflict = ResourceConflict.NEWEST_WINS) -> None:
        self.inner = LocalSessionDirectory(conflict, 10)
        self.claims = 0
        self.releases_finished = 0

    @property
    def local(self) -> Mapping[str, Mapping[str, C2SSession]]:
        return self.inner.local

    @property
    def table(self) -> Mapping[str, Mapping[str, C2SSession]]:
        return self.inner.table

    def mark_interested(self, session: C2SSession) -> None:
        self.inner.mark_interested(session)

    def mark_hibernated(self, session: C2SSession, hibernated: bool) -> None:
        self.inner.mark_hibernated(session, hibernated)

    hibernated_elsewhere: frozenset[object] = frozenset()

    def claim(self, session_for: SessionFactory, resource: str | None) -> Awaitable[Claimed]:
        async def later() -> Claimed:
            await asyncio.sleep(0)
            self.claims += 1
            return self.inner.claim(session_for, resource)

        return later()

    def release(self, session: C2SSession) -> Awaitable[None]:
        self.inner.release(session)  # gone from `local` at once, as the protocol says

        async def later() -> None:
            await asyncio.sleep(0)
            self.releases_finished += 1

        return later()

    def mark_available(self, session: C2SSession, priority: int, presence: Element) -> None:
        self.inner.mark_available(session, priority, presence)

    def mark_unavailable(self, session: C2SSession) -> None:
        self.inner.mark_unavailable(session)

    def is_bound(self, session: C2SSession) -> bool:
        return self.inner.is_bound(session)

    def bound_here(self, bare: str) -> bool:
        return self.inner.bound_here(bare)

    def bound_anywhere(self, bare: str) -> Awaitable[bool]:
        async def later() -> bool:
            await asyncio.sleep(0)
            return self.inner.bound_anywhere(bare)

        return later()

    def close_sessions(self, bare: str, condition: StreamErrorCondition, text: str) -> int:
        return self.inner.close_sessions(bare, condition, text)


@contextlib.asynccontextmanager
async def server(
    tmp: Path, directory: DeferredDirectory, modules: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, modules or {}, directory=directory, **config)
    try:
        await srv.add_user("alice", "wonderland")
        yield srv
    finally:
        await srv.stop()


async def authenticated(srv: Server, mode: str) -> Any:
    wire = srv.connect(mode)
    await wire.open()
    assert "<success" in await wire.send(plain("alice", "wonderland"))
    await wire.open()
    return wire


async def test_bind_waits_for_the_directory_and_later_stanzas_wait_behind_it(
    tmp_path: Path, mode: str
) -> None:
    directory = DeferredDirectory()
    async with server(tmp_path, directory) as srv:
        wire = await authenticated(srv, mode)
        # The message comes in the same read as the bind: it must be routed as the
        # bound session's, after the bind's answer (RFC 6120 §10.1, in order).
        out = await wire.send(
            BIND.format("phone")
            + "<message to='alice@localhost/phone' id='m1'><body>to myself</body></message>"
        )
        result = out.index("<iq type='result' id=\"bind\">")
        assert "<jid>alice@localhost/phone</jid>" in out
        echoed = out.index('<message to="alice@localhost/phone" id="m1"')
        assert result < echoed and 'from="alice@localhost/phone"' in out[echoed:]
        assert directory.claims == 1
        assert set(directory.local["alice@localhost"]) == {"phone"}
        wire.conn.close_stream()
        await wire.settle()
        assert directory.local == {} and directory.releases_finished == 1


async def test_a_refused_claim_is_a_bind_error_and_the_client_may_retry(
    tmp_path: Path, mode: str
) -> None:
    directory = DeferredDirectory(ResourceConflict.REJECT_NEW)
    async with server(tmp_path, directory) as srv:
        first = await authenticated(srv, mode)
        assert "<jid>alice@localhost/phone</jid>" in await first.send(BIND.format("phone"))
        second = await authenticated(srv, mode)
        out = await second.send(BIND.format("phone"))
        assert "<iq type='error' id=\"bind\">" in out and "<conflict " in out
        assert "<jid>alice@localhost/desk</jid>" in await second.send(BIND.format("desk"))
        assert set(directory.local["alice@localhost"]) == {"phone", "desk"}


async def test_a_client_leaving_mid_claim_leaves_no_session(tmp_path: Path, mode: str) -> None:
    directory = DeferredDirectory()
    async with server(tmp_path, directory) as srv:
        older = await authenticated(srv, mode)
        assert "<jid>alice@localhost/phone</jid>" in await older.send(BIND.format("phone"))
        wire = await authenticated(srv, mode)
        # The bind is read, then the connection drops before the directory answers.
        wire.conn.events(wire.parser.feed(BIND.format("phone").encode()))
        wire.conn.connection_lost()
        await wire.settle()
        assert directory.claims == 2
        assert directory.local == {}  # the claim was undone
        assert "<jid>" not in wire.transport.out.decode().rpartition("<stream:features>")[2]
        # The claim had replaced the older session (newest wins): it was told so.
        assert older.closed and "<conflict " in older.transport.out.decode()


class ReplacedAtOnceDirectory(DeferredDirectory):
    """Decides the claim, then closes the new session at once (as the cluster's
    directory does when another node's newer bind of the resource is heard in the
    same loop turn as the claim's answer), before the connection sees the answer."""

    def claim(self, session_for: SessionFactory, resource: str | None) -> Awaitable[Claimed]:
        decided: asyncio.Future[Claimed] = asyncio.get_running_loop().create_future()

        def answer() -> None:
            claimed = self.inner.claim(session_for, resource)
            decided.set_result(claimed)
            claimed[0].close(StreamErrorCondition.CONFLICT, "replaced by a new connection")

        asyncio.get_running_loop().call_soon(answer)
        return decided


async def test_a_session_replaced_before_its_bind_is_answered_gets_the_answer_first(
    tmp_path: Path, mode: str
) -> None:
    directory = ReplacedAtOnceDirectory()
    async with server(tmp_path, directory) as srv:
        wire = await authenticated(srv, mode)
        wire.conn.events(wire.parser.feed(BIND.format("phone").encode()))
        await wire.settle()
        out = wire.transport.out.decode().rpartition("<stream:features>")[2]
        assert "<jid>alice@localhost/phone</jid>" in out and "<conflict " in out
        assert out.index("<jid>") < out.index("<conflict "), out
        assert wire.conn.closed


async def test_legacy_login_waits_for_the_directory(tmp_path: Path, mode: str) -> None:
    directory = DeferredDirectory()
    async with server(tmp_path, directory, {"legacy_auth": {"enabled": True}}) as srv:
        options = srv.module("legacy_auth").options
        secrets = derive_legacy_secrets("wonderland", "alice", "localhost", options)
        await srv.db.legacy.set_secrets(("alice", "localhost"), secrets)
        wire = srv.connect(mode)
        await wire.open()
        out = await wire.send(
            "<iq type='set' id='a1'><query xmlns='jabber:iq:auth'><username>alice</username>"
            "<password>wonderland</password><resource>globe</resource></query></iq>"
        )
        assert out == '<iq type="result" id="a1"/>'
        assert directory.claims == 1 and set(directory.local["alice@localhost"]) == {"globe"}
        out = await wire.send("<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
        assert 'to="alice@localhost/globe"' in out


async def test_an_anonymous_identity_exists_while_the_directory_says_it_is_bound(
    tmp_path: Path,
) -> None:
    directory = DeferredDirectory()
    hosts = {"guest.localhost": {"anonymous": True}}
    async with server(tmp_path, directory, hosts=hosts) as srv:
        ctx = srv.ctx
        guest = VirtualHost(
            "guest.localhost", ctx.config.host("guest.localhost"), ctx.provider, None, False
        )
        ctx.hosts["guest.localhost"] = guest
        # Loaded again now that an anonymous host is served (it subscribes only then).
        ctx.unload("anonymous")
        ctx.load(AnonymousCleanup())
        await srv.db.accounts.create("guest1", "guest.localhost", {}, anonymous=True)

        def session_for(resource: str) -> C2SSession:
            return C2SSession(
                username="guest1",
                domain="guest.localhost",
                resource=resource,
                stream_id="s",
                write=lambda _data: None,
                close=lambda _condition, _text: None,
                transport="test",
            )

        one, _ = await directory.claim(session_for, "a")
        two, _ = await directory.claim(session_for, "b")
        assert await ctx.account_exists("guest1", "guest.localhost")
        # One session ends: the identity lives on (the anonymous module asks the
        # directory, which answers later).
        await directory.release(one)
        ctx.session_closed(one)
        await ctx.drain()
        assert await srv.db.accounts.exists("guest1", "guest.localhost")
        # The last one ends: the identity and its row are gone.
        await directory.release(two)
        ctx.session_closed(two)
        await ctx.drain()
        assert not await ctx.account_exists("guest1", "guest.localhost")
        assert not await srv.db.accounts.exists("guest1", "guest.localhost")
