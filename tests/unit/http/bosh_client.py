"""A real chatgate server in this process (HTTP listener with BOSH, a plain TCP
listener) and a small BOSH client that speaks XEP-0124/0206 over aiohttp, with
SCRAM from scramp: nothing of the server side is faked.

The server is `chatgate.server.Server`, the one `chatgate serve` runs, so the
tests see the endpoint's session store (`bosh_sessions`) and the live
connections (`ctx.connections`) directly.
"""

from __future__ import annotations

import base64
import itertools
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from scramp import ScramClient

from chatgate.auth.credentials import derive_all
from chatgate.config import Config
from chatgate.http.bosh import BoshEndpoint
from chatgate.server import Server

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


@dataclass
class BoshServer:
    server: Server
    url: str
    tcp_port: int

    @property
    def endpoint(self) -> BoshEndpoint:
        assert self.server.http is not None and self.server.http.bosh is not None
        return self.server.http.bosh

    @property
    def bosh_sessions(self) -> int:
        return len(self.endpoint.sessions)

    @property
    def connections(self) -> int:
        assert self.server.ctx is not None
        return len(self.server.ctx.connections)

    async def add_user(self, name: str, password: str) -> None:
        assert self.server.ctx is not None
        ctx = self.server.ctx
        await ctx.db.accounts.create(name, "localhost", derive_all(password, iterations=4096))
        # as `chatgate user add` makes a running server do: forget the cached "no such user"
        ctx.provider.invalidate(name, "localhost")  # type: ignore[attr-defined]


async def start_web(
    tmp: Path,
    http: dict[str, Any],
    auth: dict[str, Any] | None = None,
    streams: dict[str, Any] | None = None,
) -> Server:
    """A whole server in this process: c2s on a free port, the HTTP listener on a free
    plain port with `http`'s options (no HTTPS, no web chat unless `http` says), and
    `[streams]` as `streams` says."""
    config = Config.model_validate(
        {
            "server": {"domain": "localhost", "data_dir": str(tmp / "var")},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"},
            "listeners": [{"port": 0, "tls": "none", "require_tls": False}],
            "auth": auth or {},
            "http": {"port": 0, "tls_port": False, "chat": {"enabled": False}, **http},
            "streams": streams or {},
        }
    )
    server = Server(config)
    await server.start()
    return server


def base_url(server: Server) -> str:
    """`http://host:port` of the server's plain HTTP port."""
    assert server.http is not None
    scheme, host, port = server.http.bound[0]
    return f"{scheme}://{host}:{port}"


async def start_server(tmp: Path, **bosh: Any) -> Server:
    options = {"max_wait": 2, "max_hold": 2, "inactivity": 5, "polling": 0, **bosh}
    return await start_web(
        tmp,
        {"bosh": options, "websocket": {"enabled": True}},
        {"mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"], "allow_plain_without_tls": True},
    )


@pytest.fixture
async def bosh_server(tmp_path: Path) -> AsyncIterator[BoshServer]:
    server = await start_server(tmp_path)
    yield wrap(server)
    await server.stop()


def wrap(server: Server) -> BoshServer:
    assert server.http is not None
    scheme, host, port = server.http.bound[0]
    return BoshServer(server, f"{scheme}://{host}:{port}/http-bind", server.listeners[0].port)


@dataclass
class Reply:
    status: int
    text: str
    headers: Any

    @property
    def body(self) -> ET.Element:
        return ET.fromstring(self.text)

    @property
    def type(self) -> str | None:
        return self.body.get("type")

    @property
    def condition(self) -> str | None:
        return self.body.get("condition")

    def children(self) -> list[ET.Element]:
        return list(self.body)


class BoshClient:
    """One BOSH session from the client's side: rids, sid, and the raw exchange."""

    def __init__(self, http: aiohttp.ClientSession, url: str, first_rid: int = 1000) -> None:
        self.http = http
        self.url = url
        self.rids = itertools.count(first_rid)
        self.sid = ""
        self.creation: Reply | None = None

    def next_rid(self) -> int:
        return next(self.rids)

    async def raw(self, data: str | bytes) -> Reply:
        async with self.http.post(self.url, data=data) as response:
            return Reply(response.status, await response.text(), response.headers)

    def wrap(self, payload: str = "", rid: int | None = None, **attrs: str) -> str:
        rid = self.next_rid() if rid is None else rid
        extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        return (
            f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' rid='{rid}'{sid}{extra}>"
            f"{payload}</body>"
        )

    async def send(self, payload: str = "", rid: int | None = None, **attrs: str) -> Reply:
        return await self.raw(self.wrap(payload, rid, **attrs))

    async def create(self, wait: int = 2, hold: int = 1, **attrs: str) -> Reply:
        body = (
            f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' rid='{self.next_rid()}'"
            f" to='localhost' xml:lang='en' wait='{wait}' hold='{hold}' ver='1.11'"
            f" xmpp:version='1.0'"
            + "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
            + "/>"
        )
        reply = self.creation = await self.raw(body)
        self.sid = reply.body.get("sid") or ""
        return reply

    async def restart(self) -> Reply:
        return await self.send(to="localhost", xml__lang="en", xmpp__restart="true")

    async def login(self, user: str, password: str, resource: str = "web") -> str:
        """Session creation, SCRAM-SHA-1 (scramp), restart and bind; returns the full JID."""
        created = await self.create()
        assert created.status == 200, created.text
        scram = ScramClient(["SCRAM-SHA-1"], user, password)
        first = base64.b64encode(scram.get_client_first().encode()).decode()
        reply = await self.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>")
        challenge = reply.body.find(q(SASL, "challenge"))
        assert challenge is not None, reply.text
        scram.set_server_first(base64.b64decode(challenge.text or "").decode())
        final = base64.b64encode(scram.get_client_final().encode()).decode()
        reply = await self.send(f"<response xmlns='{SASL}'>{final}</response>")
        success = reply.body.find(q(SASL, "success"))
        assert success is not None, reply.text
        scram.set_server_final(base64.b64decode(success.text or "").decode())
        reply = await self.restart()
        assert reply.body.find(f"{q(STREAMS, 'features')}/{q(BIND, 'bind')}") is not None, (
            reply.text
        )
        reply = await self.send(
            f"<iq xmlns='{CLIENT}' type='set' id='b1'><bind xmlns='{BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        jid = reply.body.find(f"{q(CLIENT, 'iq')}/{q(BIND, 'bind')}/{q(BIND, 'jid')}")
        assert jid is not None, reply.text
        return jid.text or ""
