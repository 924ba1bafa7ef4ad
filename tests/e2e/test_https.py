"""The HTTPS listener end to end: `chatgate serve` with `[http] tls_port`, real TLS clients.

What it proves: HTTPS runs on the c2s TLS stack (`http/tls.py`), so a web
session gets c2s's client-certificate policy and channel bindings: XEP-0156
discovery says wss://, SASL EXTERNAL logs in over WebSocket with a client
certificate (id-on-xmppAddr) and no password, `needed` refuses a client
without a certificate at the TLS step, and SCRAM-SHA-1-PLUS binds to
tls-server-end-point and tls-exporter.

Clients: the standard library's `ssl` (urllib and aiohttp's WebSocket client;
scramp hashes the certificate it received for tls-server-end-point) and, for
tls-exporter, which `ssl` cannot compute, a few lines of RFC 6455 client over a
pyOpenSSL connection.  SCRAM is scramp.  BOSH and the chat page are off here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import ssl
import struct
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import scramp.core
from OpenSSL import SSL
from scramp import ScramClient

from tests.certgen import make_ca, make_client
from tests.e2e.conftest import RunningServer
from tests.e2e.rawclient import _scramp_knows_tls_exporter
from tests.e2e.web import start_web_server

pytestmark = pytest.mark.e2e

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = (
    "<iq xmlns='jabber:client' type='set' id='b1'>"
    "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
)
MECHANISMS = ["EXTERNAL", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"]


@dataclass
class Certs:
    ca: Path
    alice: tuple[Path, Path]


@dataclass
class HttpsServer:
    server: RunningServer
    https_port: int

    @property
    def certificate(self) -> Path:
        return self.server.certificate


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca()
    ca_path, _ = ca.write(folder, "ca")
    alice = make_client(xmpp_addrs=("alice@localhost",), issuer=ca).write(folder, "alice")
    return Certs(ca_path, alice)


def _start(tmp: Path, certs: Certs, policy: str) -> HttpsServer:
    server = start_web_server(
        tmp,
        f'client_certificates = "{policy}"\n[http.chat]\nenabled = false\n'
        "[http.bosh]\nenabled = false\n",
        auth=f"mechanisms = {json.dumps(MECHANISMS)}\n",
        tls=f'client_certificates = "wanted"\ntrust_files = ["{certs.ca}"]\n',
        https=True,
    )
    server.add_user("alice", "pencil-case")
    return HttpsServer(server, server.https_port)


def _serve(tmp: pytest.TempPathFactory, certs: Certs, policy: str) -> Iterator[HttpsServer]:
    srv = _start(tmp.mktemp(policy), certs, policy)
    yield srv
    code = srv.server.stop()
    log = srv.server.log_text()
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[HttpsServer]:
    yield from _serve(tmp_path_factory, certs, "wanted")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[HttpsServer]:
    yield from _serve(tmp_path_factory, certs, "needed")


def _context(
    server: HttpsServer, cert: tuple[Path, Path] | None = None, version: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.certificate))
    if cert is not None:
        ctx.load_cert_chain(*map(str, cert))
    if version is not None:
        v = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
        ctx.minimum_version = ctx.maximum_version = v
    return ctx


def _mechanisms(features: str) -> list[str]:
    return re.findall(r"<mechanism>([^<]+)</mechanism>", features)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- discovery ----------------------------------------------------------------------------------


def test_host_meta_over_https_names_the_wss_endpoint(server: HttpsServer) -> None:
    url = f"https://localhost:{server.https_port}/.well-known/host-meta.json"
    with urllib.request.urlopen(url, context=_context(server), timeout=10) as response:
        assert response.status == 200
        links = json.load(response)["links"]
    hrefs = {link["rel"]: link["href"] for link in links}
    assert hrefs["urn:xmpp:alt-connections:websocket"] == (
        f"wss://localhost:{server.https_port}/xmpp-websocket"
    )


# -- WebSocket with aiohttp's client (the standard library's TLS) -------------------------------


class _AiohttpStream:
    """One RFC 7395 stream on an aiohttp WebSocket: one element per message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self) -> str:
        return await self.ws.receive_str(timeout=10)

    async def open(self) -> str:
        """Send <open/>; return the <stream:features/> that follow the server's <open/>."""
        await self.send(OPEN)
        assert (await self.receive()).startswith("<open ")
        features = await self.receive()
        assert "<stream:features" in features, features
        return features

    async def bind(self) -> str:
        await self.open()
        await self.send(BIND)
        answer = await self.receive()
        match = re.search(r"<jid>([^<]+)</jid>", answer)
        assert match, answer
        return match.group(1)


async def _ws(
    server: HttpsServer, ctx: ssl.SSLContext
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            f"wss://localhost:{server.https_port}/xmpp-websocket", protocols=("xmpp",), ssl=ctx
        )
    except BaseException:
        await session.close()
        raise
    assert ws.protocol == "xmpp"
    return session, ws


async def test_external_over_websocket_with_a_client_certificate_and_no_password(
    server: HttpsServer, certs: Certs
) -> None:
    session, ws = await _ws(server, _context(server, certs.alice))
    try:
        stream = _AiohttpStream(ws)
        features = await stream.open()
        assert "EXTERNAL" in _mechanisms(features)
        await stream.send(f"<auth xmlns='{SASL}' mechanism='EXTERNAL'>=</auth>")
        assert (await stream.receive()).startswith("<success")
        assert (await stream.bind()).startswith("alice@localhost/")
    finally:
        await ws.close()
        await session.close()
    assert "alice@localhost authenticated with EXTERNAL" in server.server.log_text()


async def test_external_is_not_offered_without_a_certificate(server: HttpsServer) -> None:
    session, ws = await _ws(server, _context(server))
    try:
        features = await _AiohttpStream(ws).open()
        assert "EXTERNAL" not in _mechanisms(features)
        assert "SCRAM-SHA-1-PLUS" in _mechanisms(features)
    finally:
        await ws.close()
        await session.close()


def _scram_messages(mechanism: str, cb_type: str, cb_data: bytes) -> tuple[ScramClient, str]:
    with _scramp_knows_tls_exporter():
        client = ScramClient(
            [mechanism], "alice", "pencil-case", channel_binding=(cb_type, cb_data)
        )
        return client, client.get_client_first()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_scram_sha1_plus_with_tls_server_end_point_over_wss(
    server: HttpsServer, version: str
) -> None:
    session, ws = await _ws(server, _context(server, version=version))
    try:
        der = ws.get_extra_info("ssl_object").getpeercert(binary_form=True)
        cb_data = scramp.core.CBindData.from_der(der).data  # the client's own hash
        stream = _AiohttpStream(ws)
        features = await stream.open()
        assert "tls-server-end-point" in re.findall(
            r"<channel-binding type=[\"']([^\"']+)[\"']", features
        )
        client, first = _scram_messages("SCRAM-SHA-1-PLUS", "tls-server-end-point", cb_data)
        await stream.send(
            f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1-PLUS'>{_b64(first.encode())}</auth>"
        )
        challenge = await stream.receive()
        client.set_server_first(base64.b64decode(re.sub(r"<[^>]+>", "", challenge)).decode())
        final = client.get_client_final()
        await stream.send(f"<response xmlns='{SASL}'>{_b64(final.encode())}</response>")
        success = await stream.receive()
        assert success.startswith("<success"), success
        client.set_server_final(base64.b64decode(re.sub(r"<[^>]+>", "", success)).decode())
        assert (await stream.bind()).startswith("alice@localhost/")
    finally:
        await ws.close()
        await session.close()


# -- tls-exporter: a minimal WebSocket client over pyOpenSSL ------------------------------------


class _OpenSslWebSocket:
    """RFC 6455 client framing over a blocking pyOpenSSL connection: enough for
    text messages of one frame each, which is what RFC 7395 servers send."""

    def __init__(self, port: int, cafile: Path, version: str) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(str(cafile))
        ctx.set_verify(SSL.VERIFY_PEER)
        v = SSL.TLS1_2_VERSION if version == "1.2" else SSL.TLS1_3_VERSION
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
        ctx.set_alpn_protos([b"h2", b"http/1.1"])  # as a browser offers
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.settimeout(10)
        self.conn = SSL.Connection(ctx, sock)
        self.conn.set_tlsext_host_name(b"localhost")
        self.conn.set_connect_state()
        sock.setblocking(True)
        self.conn.do_handshake()
        self.alpn = self.conn.get_alpn_proto_negotiated()
        self.buffer = b""
        key = _b64(os.urandom(16))
        self.conn.sendall(
            (
                "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def exporter(self) -> bytes:
        return self.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")

    def _read(self) -> None:
        data = self.conn.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buffer += data

    def _need(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._read()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.conn.sendall(header + mask + masked)

    def receive(self) -> str:
        first, second = self._need(2)
        assert first == 0x81, hex(first)  # FIN + text: one frame per element
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        return self._need(n).decode()

    def close(self) -> None:
        self.conn.close()


def _login_with_exporter(server: HttpsServer, version: str) -> tuple[bytes, str]:
    ws = _OpenSslWebSocket(server.https_port, server.certificate, version)
    try:
        ws.send(OPEN)
        assert ws.receive().startswith("<open ")
        features = ws.receive()
        assert "tls-exporter" in re.findall(r"<channel-binding type=[\"']([^\"']+)[\"']", features)
        client, first = _scram_messages("SCRAM-SHA-1-PLUS", "tls-exporter", ws.exporter())
        ws.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1-PLUS'>{_b64(first.encode())}</auth>")
        challenge = ws.receive()
        client.set_server_first(base64.b64decode(re.sub(r"<[^>]+>", "", challenge)).decode())
        ws.send(f"<response xmlns='{SASL}'>{_b64(client.get_client_final().encode())}</response>")
        success = ws.receive()
        assert success.startswith("<success"), success
        client.set_server_final(base64.b64decode(re.sub(r"<[^>]+>", "", success)).decode())
        ws.send(OPEN)
        assert ws.receive().startswith("<open ")
        ws.receive()  # features
        ws.send(BIND)
        match = re.search(r"<jid>([^<]+)</jid>", ws.receive())
        assert match
        return ws.alpn, match.group(1)
    finally:
        ws.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_scram_sha1_plus_with_tls_exporter_over_wss(
    server: HttpsServer, version: str
) -> None:
    alpn, jid = await asyncio.to_thread(_login_with_exporter, server, version)
    assert alpn == b"http/1.1"  # a browser's h2 is never chosen
    assert jid.startswith("alice@localhost/")


# -- needed --------------------------------------------------------------------------------------


def test_needed_refuses_a_client_without_certificate_at_the_tls_step(
    strict_server: HttpsServer, certs: Certs
) -> None:
    url = f"https://localhost:{strict_server.https_port}/.well-known/host-meta.json"
    with (
        pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)),
        urllib.request.urlopen(url, context=_context(strict_server), timeout=10) as response,
    ):
        response.read()
    assert "HTTPS: TLS failed from 127.0.0.1: TLS handshake failed" in (
        strict_server.server.log_text()
    )
    # The same listener still serves a client with a trusted certificate.
    with urllib.request.urlopen(
        url, context=_context(strict_server, certs.alice), timeout=10
    ) as response:
        assert response.status == 200


async def test_needed_admits_external_over_websocket(
    strict_server: HttpsServer, certs: Certs
) -> None:
    session, ws = await _ws(strict_server, _context(strict_server, certs.alice))
    try:
        stream = _AiohttpStream(ws)
        assert "EXTERNAL" in _mechanisms(await stream.open())
        await stream.send(f"<auth xmlns='{SASL}' mechanism='EXTERNAL'>=</auth>")
        assert (await stream.receive()).startswith("<success")
        assert (await stream.bind()).startswith("alice@localhost/")
    finally:
        await ws.close()
        await session.close()
