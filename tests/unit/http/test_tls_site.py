"""`TlsSite`: an aiohttp application served over the c2s TLS stack, on real sockets.

The server is `TlsSite` with a `ServerTls` built as the server builds it
(`build_server_tls`) and a small aiohttp application whose handlers report
what a request sees (`secure`, `scheme`, the connection's `TlsDetails`).
Clients are independent of our code: aiohttp's client on the standard
library's `ssl` (which computes tls-unique, and scramp the tls-server-end-point
hash of the certificate it received), a blocking pyOpenSSL client (which
computes tls-exporter and offers ALPN like a browser), and raw sockets for
clients that misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import scramp.core
from aiohttp import web
from OpenSSL import SSL

from chatgate.config import TlsConfig
from chatgate.http.connection_limit import AddressCounter
from chatgate.http.tls import TLS_DETAILS, TlsSite
from chatgate.tls import HTTP_ALPN, build_server_tls, generate_self_signed
from chatgate.xmpp.transports.openssl_tls import ServerTls, TlsDetails
from tests.certgen import Issued, make_ca, make_client

BIG = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("server")
    cert, key = folder / "localhost.crt", folder / "localhost.key"
    generate_self_signed("localhost", cert, key)
    return cert, key


@dataclass
class Certs:
    ca: Path
    alice: tuple[Path, Path]
    alice_der: bytes
    self_signed: tuple[Path, Path]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("clients")
    ca: Issued = make_ca()
    ca_path, _ = ca.write(folder, "ca")
    alice = make_client(xmpp_addrs=("alice@localhost",), issuer=ca)
    return Certs(
        ca=ca_path,
        alice=alice.write(folder, "alice"),
        alice_der=alice.der,
        self_signed=make_client(xmpp_addrs=("alice@localhost",)).write(folder, "self"),
    )


def _server_tls(server_cert: tuple[Path, Path], certs: Certs, **options: Any) -> ServerTls:
    return build_server_tls(
        TlsConfig(**options),
        *server_cert,
        trust_files=[certs.ca] if options.get("client_certificates") else [],
        trust_dirs=[],
        alpn=HTTP_ALPN,
    )


@dataclass
class Site:
    port: int
    site: TlsSite
    runner: web.AppRunner
    #: per test: the transport a handler saw, bytes streamed so far, a gate for /upload
    seen: dict[str, Any]


def _details(request: web.Request) -> TlsDetails:
    assert request.transport is not None
    details = request.transport.get_extra_info(TLS_DETAILS)
    assert isinstance(details, TlsDetails)
    return details


def _application(seen: dict[str, Any]) -> web.Application:
    async def info(request: web.Request) -> web.Response:
        details = _details(request)
        return web.json_response(
            {
                "secure": request.secure,
                "scheme": request.scheme,
                "version": details.version,
                "bindings": {k: v.hex() for k, v in details.channel_bindings.items()},
                "peer": details.peer_certificate_der.hex()
                if details.peer_certificate_der
                else None,
                "remote": request.remote,
            }
        )

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = BIG
        await response.prepare(request)
        chunk = b"x" * 65536
        seen["written"] = 0
        while seen["written"] < BIG:
            await response.write(chunk)  # waits while the transport says "paused"
            seen["written"] += len(chunk)
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        seen["transport"] = request.transport
        await seen["gate"].wait()
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            digest.update(chunk)
        return web.Response(text=digest.hexdigest())

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("xmpp",))
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data.upper())
        return ws

    app = web.Application(client_max_size=BIG + 1)
    app.router.add_get("/info", info)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/ws", echo)
    return app


@contextlib.asynccontextmanager
async def _site(
    tls: ServerTls, *, handshake_timeout: float = 30.0, counter: AddressCounter | None = None
) -> AsyncIterator[Site]:
    seen: dict[str, Any] = {"gate": asyncio.Event()}
    runner = web.AppRunner(_application(seen), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = TlsSite(
        runner, "127.0.0.1", 0, tls, handshake_timeout=handshake_timeout, counter=counter
    )
    await site.start()
    try:
        assert site.port != 0
        yield Site(site.port, site, runner, seen)
    finally:
        await runner.cleanup()


@pytest.fixture
async def plain_site(server_cert: tuple[Path, Path], certs: Certs) -> AsyncIterator[Site]:
    async with _site(_server_tls(server_cert, certs), handshake_timeout=0.5) as site:
        yield site


def _client_context(
    server_cert: tuple[Path, Path],
    version: str | None = None,
    cert: tuple[Path, Path] | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server_cert[0]))
    if version is not None:
        v = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
        ctx.minimum_version = ctx.maximum_version = v
    if cert is not None:
        ctx.load_cert_chain(*map(str, cert))
    return ctx


@dataclass
class ClientView:
    """What the standard library's client computed for its connection."""

    end_point: str  # tls-server-end-point, hex (scramp's hash of the certificate it got)
    tls_unique: str | None  # hex; None where undefined (TLS 1.3)


def _get_info_blocking(port: int, ctx: ssl.SSLContext) -> tuple[dict[str, Any], ClientView]:
    connection = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        connection.request("GET", "/info")
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        unique = sock.get_channel_binding("tls-unique") if sock.version() == "TLSv1.2" else None
        view = ClientView(
            bytes(scramp.core.CBindData.from_der(der).data).hex(),
            unique.hex() if unique else None,
        )
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read()), view
    finally:
        connection.close()


async def _get_info(port: int, ctx: ssl.SSLContext) -> tuple[dict[str, Any], ClientView]:
    """GET /info with the standard library's HTTPS client (in a thread)."""
    return await asyncio.to_thread(_get_info_blocking, port, ctx)


# -- what a request sees ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_request_is_secure_with_the_bindings_the_client_computes(
    plain_site: Site, server_cert: tuple[Path, Path], version: str
) -> None:
    info, client = await _get_info(plain_site.port, _client_context(server_cert, version))
    assert info["secure"] is True
    assert info["scheme"] == "https"
    assert info["version"] == f"TLSv{version}"
    assert info["remote"] == "127.0.0.1"
    assert info["peer"] is None
    assert info["bindings"]["tls-server-end-point"] == client.end_point
    if version == "1.2":  # with the extended master secret, which OpenSSL clients send
        assert client.tls_unique is not None
        assert info["bindings"]["tls-unique"] == client.tls_unique
    else:
        assert "tls-unique" not in info["bindings"]  # undefined for TLS 1.3
    assert "tls-exporter" in info["bindings"]


def _openssl_get(
    port: int,
    cafile: Path,
    version: str,
    *,
    alpn: list[bytes] | None = None,
) -> tuple[dict[str, Any], bytes, bytes | None]:
    """A blocking pyOpenSSL client: GET /info; returns (its JSON, the client's
    tls-exporter data, the ALPN protocol the server selected)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(cafile))
    ctx.set_verify(SSL.VERIFY_PEER)
    v = SSL.TLS1_2_VERSION if version == "1.2" else SSL.TLS1_3_VERSION
    ctx.set_min_proto_version(v)
    ctx.set_max_proto_version(v)
    if alpn is not None:
        ctx.set_alpn_protos(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(None)  # pyOpenSSL wants a blocking socket
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    try:
        conn.do_handshake()
        exporter = conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
        selected = conn.get_alpn_proto_negotiated() or None
        conn.sendall(b"GET /info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except SSL.ZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        conn.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body), exporter, selected


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_tls_exporter_matches_the_clients_and_alpn_picks_http11(
    plain_site: Site, server_cert: tuple[Path, Path], version: str
) -> None:
    info, exporter, selected = await asyncio.to_thread(
        _openssl_get, plain_site.port, server_cert[0], version, alpn=[b"h2", b"http/1.1"]
    )
    assert info["bindings"]["tls-exporter"] == exporter.hex()
    assert info["secure"] is True
    assert selected == b"http/1.1"  # never h2: aiohttp speaks HTTP/1.1 only


async def test_alpn_without_http11_selects_nothing(
    plain_site: Site, server_cert: tuple[Path, Path]
) -> None:
    info, _, selected = await asyncio.to_thread(
        _openssl_get, plain_site.port, server_cert[0], "1.3", alpn=[b"h2", b"xmpp-client"]
    )
    assert selected is None
    assert info["scheme"] == "https"


# -- client certificates ------------------------------------------------------------------------


async def test_wanted_reports_a_trusted_certificate_and_not_an_untrusted_one(
    server_cert: tuple[Path, Path], certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    tls = _server_tls(server_cert, certs, client_certificates="wanted")
    caplog.set_level(logging.INFO, "chatgate.http.tls")
    async with _site(tls) as site:
        info, _ = await _get_info(site.port, _client_context(server_cert, cert=certs.alice))
        assert info["peer"] == certs.alice_der.hex()
        info, _ = await _get_info(site.port, _client_context(server_cert, cert=certs.self_signed))
        assert info["peer"] is None
        info, _ = await _get_info(site.port, _client_context(server_cert))
        assert info["peer"] is None
    assert "client certificate from 127.0.0.1 not trusted" in caplog.text


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_needed_refuses_a_client_without_certificate_at_the_tls_step(
    server_cert: tuple[Path, Path],
    certs: Certs,
    caplog: pytest.LogCaptureFixture,
    version: str,
) -> None:
    tls = _server_tls(server_cert, certs, client_certificates="needed")
    caplog.set_level(logging.INFO, "chatgate.http.tls")
    async with _site(tls) as site:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get_info(site.port, _client_context(server_cert, version))
        info, _ = await _get_info(site.port, _client_context(server_cert, cert=certs.alice))
        assert info["peer"] == certs.alice_der.hex()
    assert "HTTPS: TLS failed from 127.0.0.1: TLS handshake failed" in caplog.text


# -- WebSocket over the site --------------------------------------------------------------------


async def test_websocket_upgrade_over_the_tls_transport(
    plain_site: Site, server_cert: tuple[Path, Path]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"wss://localhost:{plain_site.port}/ws",
            protocols=("xmpp",),
            ssl=_client_context(server_cert),
        ) as ws,
    ):
        assert ws.protocol == "xmpp"
        for text in ("hello", "x" * 200_000):
            await ws.send_str(text)
            assert (await ws.receive_str(timeout=5)) == text.upper()


# -- flow control -------------------------------------------------------------------------------


def _slow_download(
    port: int, cafile: Path, stall: float, progress: Callable[[], int]
) -> tuple[int, int]:
    """Ask for /download, read nothing for `stall` seconds, then everything.
    Returns (what the handler had written when the stall ended, bytes of body read)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"GET /download HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            time.sleep(stall)
            written_during_stall = progress()
            data = bytearray()
            while chunk := sock.recv(1 << 20):
                data += chunk
    _, _, body = bytes(data).partition(b"\r\n\r\n")
    return written_during_stall, len(body)


async def test_a_client_that_does_not_read_pauses_the_handlers_writes(
    plain_site: Site, server_cert: tuple[Path, Path]
) -> None:
    written, received = await asyncio.to_thread(
        _slow_download, plain_site.port, server_cert[0], 1.0, lambda: plain_site.seen["written"]
    )
    # Without pause_writing reaching aiohttp the handler would have queued all
    # 32 MiB on the socket at once; with it, it waits after the kernel buffers fill.
    assert 0 < written < 8 * 1024 * 1024
    assert received == BIG


async def test_a_paused_handler_pauses_the_socket_and_gets_the_whole_body(
    plain_site: Site, server_cert: tuple[Path, Path]
) -> None:
    body = bytes(range(256)) * (BIG // 256 // 4)  # 8 MiB
    async with aiohttp.ClientSession() as session:
        upload = asyncio.create_task(
            session.post(
                f"https://localhost:{plain_site.port}/upload",
                data=body,
                ssl=_client_context(server_cert),
            )
        )
        for _ in range(200):
            if "transport" in plain_site.seen:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # the body piles up in aiohttp until it pauses reading
        transport = plain_site.seen["transport"]
        assert transport.is_reading() is False
        assert transport._raw.is_reading() is False  # the socket itself is not read
        plain_site.seen["gate"].set()
        response = await asyncio.wait_for(upload, 10)
        async with response:
            assert response.status == 200
            assert await response.text() == hashlib.sha256(body).hexdigest()


# -- clients that misbehave ---------------------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_garbage_is_refused_and_closed_while_others_are_served(
    plain_site: Site, server_cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "chatgate.http.tls")
    with socket.create_connection(("127.0.0.1", plain_site.port)) as junk:
        junk.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + bytes(range(256)) * 4)
        info, _ = await _get_info(plain_site.port, _client_context(server_cert))
        assert info["secure"] is True
        assert await asyncio.to_thread(_closed_within, junk, 5)
    assert "HTTPS: TLS failed from 127.0.0.1" in caplog.text


async def test_a_stalled_handshake_is_cut_off_without_holding_up_others(
    plain_site: Site, server_cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "chatgate.http.tls")
    ctx = _client_context(server_cert)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    half = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        half.do_handshake()
    hello = outgoing.read()
    with (
        socket.create_connection(("127.0.0.1", plain_site.port)) as silent,
        socket.create_connection(("127.0.0.1", plain_site.port)) as partial,
    ):
        partial.sendall(hello[: len(hello) // 2])  # half a ClientHello, then nothing
        started = time.monotonic()
        info, _ = await _get_info(plain_site.port, ctx)  # served meanwhile
        assert info["secure"] is True
        assert await asyncio.to_thread(_closed_within, silent, 5)
        assert await asyncio.to_thread(_closed_within, partial, 5)
        assert time.monotonic() - started < 4  # the site's limit is 0.5 s
    assert "TLS handshake from 127.0.0.1 took too long" in caplog.text


async def test_stopping_the_site_cuts_off_handshakes_in_progress(
    server_cert: tuple[Path, Path], certs: Certs
) -> None:
    async with _site(_server_tls(server_cert, certs)) as site:
        silent = socket.create_connection(("127.0.0.1", site.port))
        for _ in range(100):  # until the server has accepted it
            if site.site._handshaking:
                break
            await asyncio.sleep(0.01)
        assert site.site._handshaking
    with silent:
        assert await asyncio.to_thread(_closed_within, silent, 2)
    with pytest.raises(ConnectionError):
        socket.create_connection(("127.0.0.1", site.port), timeout=2).close()


# -- ALPN of the c2s listeners is unchanged ------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "selected"),
    [([b"xmpp-client"], b"xmpp-client"), ([b"h2", b"http/1.1"], b"")],
)
def test_c2s_tls_still_selects_xmpp_client_only(
    server_cert: tuple[Path, Path], certs: Certs, offered: list[bytes], selected: bytes
) -> None:
    """`build_server_tls` without `alpn` (what c2s uses): XEP-0368's name or nothing."""
    server = build_server_tls(TlsConfig(), *server_cert, trust_files=[], trust_dirs=[])
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_alpn_protos(offered)
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    connection = server.connection()
    while not connection.handshake_complete:
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        _, out = connection.receive(client.bio_read(65536))
        if out:
            client.bio_write(out)
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    assert client.get_alpn_proto_negotiated() == selected


async def test_connections_past_the_per_address_limit_are_aborted_before_the_handshake(
    server_cert: tuple[Path, Path], certs: Certs
) -> None:
    counter = AddressCounter(2)
    async with _site(_server_tls(server_cert, certs), counter=counter) as site:
        held = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        try:
            closed = await asyncio.wait_for(reader.read(100), 2)
        except ConnectionError:
            closed = b""
        assert closed == b""
        assert counter.open("127.0.0.1") == 2
        writer.close()
        for _, w in held:
            w.close()
        for _ in range(50):
            if counter.open("127.0.0.1") == 0:
                break
            await asyncio.sleep(0.02)
        assert counter.open("127.0.0.1") == 0
