"""A real server with its HTTP listener on free ports, and a raw RFC 7395 client.

The client is deliberately small and independent of the server's code: aiohttp's
WebSocket client, scramp for SCRAM, regular expressions for what it reads.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import aiohttp
import scramp

from tests.e2e.conftest import RunningServer, free_ports, serve

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"


def start_web_server(
    tmp: Path,
    http: str = "",
    *,
    auth: str = "",
    tls: str = "",
    limits: str = "",
    https: bool = False,
    plain_c2s: bool = False,
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """`chatgate serve` with c2s on a free port (STARTTLS, or no TLS at all with
    `plain_c2s`) and `[http]` on free ports; `http` is added to the `[http]` table
    (sub-tables may follow it), `auth`, `tls` and `limits` to theirs."""
    c2s, web, secure = free_ports(3)
    data_dir = tmp / "var"
    config = tmp / "chatgate.toml"
    listener = 'tls = "none"\nrequire_tls = false' if plain_c2s else 'tls = "starttls"'
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{data_dir}"

[[listeners]]
port = {c2s}
{listener}

[auth]
{auth}

[tls]
{tls}

[limits]
{limits}

[http]
port = {web}
tls_port = {secure if https else "false"}
{http}
"""
    )
    ports = (0, 0, c2s) if plain_c2s else (c2s, 0, 0)
    server = serve(config, data_dir, ports, listeners=1, env=env)
    server.http_port = web
    server.https_port = secure if https else 0
    return server


class WsClient:
    """One XMPP-over-WebSocket connection, driven message by message."""

    def __init__(self, url: str, *, protocols: tuple[str, ...] = ("xmpp",), **kwargs: object):
        self.url = url
        self.protocols = protocols
        self.kwargs = kwargs
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> WsClient:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url, protocols=self.protocols, **self.kwargs)  # type: ignore[arg-type]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()

    async def send(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def recv(self, timeout: float = 5.0) -> str:
        """The next text message; raises EOFError when the WebSocket closed instead."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise EOFError(f"WebSocket {msg.type.name} ({msg.data!r})")
        return str(msg.data)

    async def recv_until(self, pattern: str, timeout: float = 5.0) -> str:
        while True:
            text = await self.recv(timeout)
            if re.search(pattern, text):
                return text

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the WebSocket (after whatever it still sends)."""
        try:
            while True:
                await self.recv(timeout)
        except EOFError:
            return True
        except TimeoutError:
            return False

    async def open(self) -> str:
        """`<open/>`; returns the features message."""
        await self.send(OPEN)
        opened = await self.recv()
        assert opened.startswith("<open ") and FRAMING in opened, opened
        return await self.recv()

    async def login(self, user: str, password: str, mechanism: str = "SCRAM-SHA-1") -> None:
        features = await self.open()
        assert f"<mechanism>{mechanism}</mechanism>" in features, features
        client = scramp.ScramClient([mechanism], user, password)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        await self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{first}</auth>"
        )
        challenge = await self.recv()
        client.set_server_first(_payload(challenge))
        final = base64.b64encode(client.get_client_final().encode()).decode()
        await self.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>")
        success = await self.recv()
        assert success.startswith("<success"), success
        client.set_server_final(_payload(success))

    async def bind(self, resource: str) -> str:
        features = await self.open()
        assert "urn:ietf:params:xml:ns:xmpp-bind" in features, features
        await self.send(
            "<iq xmlns='jabber:client' type='set' id='bind1'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        result = await self.recv()
        found = re.search(r"<jid>([^<]+)</jid>", result)
        assert found is not None, result
        return found.group(1)


def _payload(element: str) -> str:
    found = re.search(r">([^<]*)<", element)
    assert found is not None, element
    return base64.b64decode(found.group(1)).decode()


HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"


class BoshClient:
    """One BOSH session (XEP-0124/0206), one request at a time: each request is
    answered when the server has something to say or `wait` runs out."""

    def __init__(self, url: str, *, wait: int = 5, **kwargs: object) -> None:
        self.url = url
        self.wait = wait
        self.kwargs = kwargs
        self.rid = 4_000_000
        self.sid: str | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BoshClient:
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.http is not None:
            await self.http.close()

    async def request(self, children: str = "", **attrs: str) -> str:
        """POST one `<body/>` (the next rid, the session's sid); the response body."""
        assert self.http is not None
        self.rid += 1
        attrs = {"rid": str(self.rid), **attrs}
        if self.sid is not None:
            attrs.setdefault("sid", self.sid)
        text = " ".join(f"{k.replace('__', ':')}='{v}'" for k, v in attrs.items())
        body = f"<body {text} xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}'>{children}</body>"
        async with self.http.post(
            self.url,
            data=body,
            headers={"Content-Type": "text/xml; charset=utf-8"},
            **self.kwargs,  # type: ignore[arg-type]
        ) as response:
            answer = await response.text()
            assert response.status == 200, (response.status, answer)
            return answer

    async def recv_until(self, pattern: str, limit: int = 10) -> str:
        """Empty requests until a response matches `pattern`."""
        for _ in range(limit):
            answer = await self.request()
            if re.search(pattern, answer):
                return answer
        raise AssertionError(f"no response matched {pattern!r}")

    async def open(self) -> str:
        """Session creation; returns the creation response (with the features)."""
        answer = await self.request(
            to="localhost",
            wait=str(self.wait),
            hold="1",
            ver="1.6",
            xmpp__version="1.0",
            content="text/xml; charset=utf-8",
        )
        found = re.search(r"sid=['\"]([^'\"]+)['\"]", answer)
        assert found is not None, answer
        self.sid = found.group(1)
        if "<stream:features" not in answer:
            answer = await self.recv_until("<stream:features")
        return answer

    async def login(self, user: str, password: str, mechanism: str = "SCRAM-SHA-1") -> None:
        features = await self.open()
        assert f"<mechanism>{mechanism}</mechanism>" in features, features
        client = scramp.ScramClient([mechanism], user, password)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        challenge = await self.request(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{first}</auth>"
        )
        if "<challenge" not in challenge:
            challenge = await self.recv_until("<challenge")
        client.set_server_first(_payload(_element(challenge, "challenge")))
        final = base64.b64encode(client.get_client_final().encode()).decode()
        success = await self.request(
            f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>"
        )
        if "<success" not in success:
            success = await self.recv_until("<success")
        client.set_server_final(_payload(_element(success, "success")))

    async def bind(self, resource: str) -> str:
        features = await self.request(to="localhost", xmpp__restart="true")
        if "xmpp-bind" not in features:
            features = await self.recv_until("xmpp-bind")
        result = await self.request(
            "<iq xmlns='jabber:client' type='set' id='bind1'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        if "<jid>" not in result:
            result = await self.recv_until("<jid>")
        found = re.search(r"<jid>([^<]+)</jid>", result)
        assert found is not None, result
        return found.group(1)


def _element(body: str, name: str) -> str:
    found = re.search(rf"<{name}\b[^>]*>[^<]*</{name}>|<{name}\b[^>]*/>", body)
    assert found is not None, body
    return found.group(0)
