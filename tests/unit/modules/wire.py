"""Drive the real connection driver, negotiation core and modules with client text.

A `Server` is a real `ServerContext` (SQLite file, internal provider, every
built-in module) without sockets; each `Wire` is a real `C2SConnection` over a
fake transport that records what the server writes.  Client text is parsed by
the real stream parser, fed whole, byte by byte or in random chunks (the
`mode`), and every transcript must give the same server output in each mode.

Server output is compared after `normalize`, which replaces the random stream
id with ``{sid}``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatgate.auth.credentials import derive_all
from chatgate.auth.internal import InternalProvider
from chatgate.auth.provider import Capability, CredentialProvider
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.wiring import join_cluster
from chatgate.config import Config
from chatgate.context import ServerContext
from chatgate.modules.registry import builtin_modules
from chatgate.sasl.base import ConnectionFacts
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms
from chatgate.storage.database import Database
from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.xml.parser import XmlStreamParser
from chatgate.xmpp.c2s import C2SConnection
from chatgate.xmpp.directory import SessionDirectory
from chatgate.xmpp.negotiation import NegotiationSettings
from chatgate.xmpp.output import TcpStreamOutput

from ..xmpp.transcript import split

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
SECRET = b"unit-test-secret-0123456789abcde"
_SID = re.compile(r' id="([^"]+)" version=')


def plain(username: str, password: str) -> str:
    data = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>"


class FakeTransport:
    """The `Transport` a connection writes to; reads are driven by `Wire.send`."""

    def __init__(self, name: str, facts: ConnectionFacts, wire: Wire) -> None:
        self.name = name
        self.facts = facts
        self.wire = wire
        self.out = bytearray()
        self.closed = False
        self.tls_upgrade = None
        self.hibernation = None

    def output(self, loop: asyncio.AbstractEventLoop) -> TcpStreamOutput:
        return TcpStreamOutput(self.write, loop)

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def restart_stream(self) -> None:
        self.wire.parser = XmlStreamParser()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class PasswordService:
    """Stands for an external provider (HTTP, LDAP): carol exists there, not in our store."""

    offers = frozenset({Capability.VERIFY_PASSWORD})

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> None:
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        return (username, password) == ("carol", "carols-password")

    async def user_exists(self, username: str, domain: str) -> bool:
        return username == "carol"


@dataclass
class Server:
    ctx: ServerContext
    db: Database

    @classmethod
    async def start(
        cls,
        tmp: Path,
        modules: dict[str, dict[str, Any]],
        *,
        provider: CredentialProvider | None = None,
        directory: SessionDirectory | None = None,
        cluster: ClusterNode | None = None,
        **config: Any,
    ) -> Server:
        """A server on `tmp`; its accounts are in the internal store unless a
        `provider` stands for an external one; its sessions in `directory` when
        given (the local one otherwise).  With a started `cluster` node it joins
        that cluster as `chatgate serve` does (servers on one `tmp` share its
        database, as nodes share PostgreSQL)."""
        cfg = Config.model_validate(
            {"modules": modules, "server": {"data_dir": str(tmp / "var")}, **config}
        )
        db = await Database.open(f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}")
        if provider is None:
            provider = InternalProvider(db.accounts, cache_size=100, data_dir=None)
        ctx = ServerContext(cfg, db, provider, directory=directory)
        if cluster is not None:
            await join_cluster(ctx, cluster)
        registry = builtin_modules()
        for name in registry.names():
            ctx.load(registry.get(name)())
        await ctx.start_modules()
        return cls(ctx, db)

    async def stop(self) -> None:
        for conn in list(self.ctx.connections):
            conn.close_stream()
        await self.ctx.drain()
        if self.ctx.cluster is not None:
            await self.ctx.cluster.close()
        await self.db.close()

    def module(self, name: str) -> Any:
        return self.ctx.modules[name].module

    async def add_user(self, username: str, password: str) -> None:
        await self.db.accounts.create(username, "localhost", derive_all(password))

    def settings(self, *, require_tls: bool, allow_plain: bool = False) -> NegotiationSettings:
        ctx, registry = self.ctx, builtin_mechanisms()
        names = ["SCRAM-SHA-256", "PLAIN"]

        def offered(facts: ConnectionFacts) -> list[str]:
            return offered_mechanisms(
                names,
                registry,
                ctx.provider.offers,
                facts,
                allow_plaintext_without_tls=allow_plain,
            )

        def make(name: str, facts: ConnectionFacts):  # type: ignore[no-untyped-def]
            return registry.get(name)(facts, SECRET, False)

        return NegotiationSettings(
            domain="localhost",
            starttls_available=False,
            require_tls=require_tls,
            offered_mechanisms=offered,
            make_mechanism=make,
            extra_features=ctx.features_after_auth(),
            pre_auth_features=ctx.features_before_auth(),
            host_pre_auth_features=ctx.features_before_auth_by_host(),
            pre_auth_namespaces=frozenset(n for n, _type in ctx.pre_auth_handlers),
        )

    def connect(
        self,
        mode: str = "whole",
        *,
        tls: bool = True,
        require_tls: bool = True,
        allow_plain: bool = False,
        address: str = "192.0.2.7",
    ) -> Wire:
        facts = ConnectionFacts(
            domain="localhost",
            tls_active=tls,
            tls_version="TLSv1.3" if tls else None,
            remote_address=address,
        )
        return Wire(
            self, mode, facts, self.settings(require_tls=require_tls, allow_plain=allow_plain)
        )


class Wire:
    """One client connection: `send` client text, get the server's answer back."""

    def __init__(
        self, server: Server, mode: str, facts: ConnectionFacts, settings: NegotiationSettings
    ) -> None:
        self.server = server
        self.mode = mode
        self.parser = XmlStreamParser()
        self.transport = FakeTransport("tls" if facts.tls_active else "tcp", facts, self)
        self.conn = C2SConnection(server.ctx, self.transport, settings)
        self.sid = ""

    @property
    def closed(self) -> bool:
        return self.transport.closed

    async def send(self, text: str) -> str:
        """Feed `text` in this wire's mode; return everything the server wrote meanwhile."""
        start = len(self.transport.out)
        for chunk in split(text.encode(), self.mode):
            if self.conn.closed:
                break
            try:
                events = self.parser.feed(chunk)
            except PeerProtocolError as exc:
                self.conn.protocol_error(exc)
                break
            self.conn.events(events)
        await self.settle()
        out = self.transport.out[start:].decode()
        found = _SID.search(out)
        if found:
            self.sid = found.group(1)
        return out

    async def settle(self) -> None:
        """Run until the connection and the server have nothing left to do."""
        for _ in range(10_000):
            pending = [*(self.conn._tasks or ()), *self.server.ctx._background]
            if pending:
                await asyncio.wait(pending)
                continue
            await asyncio.sleep(0)
            # A stanza may wait on a future rather than a task (a bind the directory
            # decides later): the connection is busy until it is done.
            if not (self.conn._tasks or self.server.ctx._background or self.conn._busy):
                break
        self.conn.output.flush()

    async def open(self) -> str:
        return await self.send(HEADER)

    async def login_plain(self, username: str, password: str, resource: str = "r") -> str:
        """SASL PLAIN, stream restart and bind; returns the bind result."""
        await self.open()
        out = await self.send(plain(username, password))
        assert "<success" in out, out
        await self.open()
        return await self.send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )

    def normalize(self, text: str) -> str:
        return text.replace(self.sid, "{sid}") if self.sid else text
