"""The TLS core without pyOpenSSL's private API (`OpenSSL._util.lib`), as a future
pyOpenSSL that drops it would run it (issue 10, item 9).

The fast path reads and writes records through the private cffi handle; the
fallback uses pyOpenSSL's public calls and loses only what has no public call:
"extended master secret?" (so TLS 1.2 gets neither tls-exporter nor tls-unique)
and the trust store's client purpose (so resumption is off where client
certificates are asked for).  `CHATGATE_TLS_NO_PRIVATE_API` forces the fallback
in a whole process (the e2e tests start a server with it); here the module's
handles are blanked, as the import does when they are missing.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from OpenSSL import SSL

from chatgate.xmpp.transports import openssl_tls
from chatgate.xmpp.transports.openssl_tls import ServerTls, ServerTlsConnection, TlsError
from tests.certgen import Issued, make_client
from tests.unit.tls.conftest import server_tls


@pytest.fixture(autouse=True)
def public_api_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the module's import leaves when `OpenSSL._util` has none of its handles."""
    monkeypatch.setattr(openssl_tls, "_FAST", False)
    monkeypatch.setattr(openssl_tls, "_BUF", None)
    monkeypatch.setattr(openssl_tls, "_get_extms_support", None)
    monkeypatch.setattr(openssl_tls, "_session_reused", None)
    monkeypatch.setattr(openssl_tls, "_store_set_purpose", None)


class _Client:
    """The standard library's TLS over memory BIOs (optionally pyOpenSSL's, for the exporter)."""

    def __init__(
        self,
        cafile: Path,
        version: str = "1.3",
        cert: tuple[Path, Path] | None = None,
        session: ssl.SSLSession | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if context is None:
            context = ssl.create_default_context(cafile=str(cafile))
            v = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
            context.minimum_version = context.maximum_version = v
            if cert is not None:
                context.load_cert_chain(*map(str, cert))
        self.context = context
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost", session=session
        )

    def step(self) -> bool:
        try:
            self.obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def read_all(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.obj.read(65536)
            except ssl.SSLWantReadError:
                return out


def _handshake(client: _Client, server: ServerTls) -> ServerTlsConnection:
    conn = server.connection()
    assert not conn._fast  # the fallback really is in use
    for _ in range(10):
        done = client.step()
        data = client.outgoing.read()
        if data:
            plain, out = conn.receive(data)
            assert plain == b""
            client.incoming.write(out)
        if done and conn.handshake_complete:
            return conn
    raise AssertionError("handshake did not finish")


def test_plaintext_both_ways_across_many_records(server_cert: tuple[Path, Path]) -> None:
    server = server_tls(server_cert)
    conn = server.connection()
    assert conn.send(b"early") == b""  # held until the handshake is done
    client = _Client(server_cert[0])
    for _ in range(10):
        done = client.step()
        data = client.outgoing.read()
        if data:
            client.incoming.write(conn.receive(data)[1])
        if done and conn.handshake_complete:
            break
    big = bytes(range(256)) * 600  # 150 KB: ten records each way, > one BIO read
    client.obj.write(big)
    plain, _ = conn.receive(client.outgoing.read())
    assert plain == big
    client.incoming.write(conn.send(big))
    assert client.read_all() == b"early" + big
    alert = conn.close()  # close_notify
    assert alert
    client.incoming.write(alert)
    assert client.obj.read(1) == b""  # the client saw the end of the TLS stream


def test_the_peer_closing_is_seen(server_cert: tuple[Path, Path]) -> None:
    client = _Client(server_cert[0])
    conn = _handshake(client, server_tls(server_cert))
    with pytest.raises(ssl.SSLWantReadError):
        client.obj.unwrap()
    conn.receive(client.outgoing.read())
    assert conn.closed


def test_a_bad_record_after_the_handshake_is_a_tls_error(server_cert: tuple[Path, Path]) -> None:
    conn = _handshake(_Client(server_cert[0]), server_tls(server_cert))
    with pytest.raises(TlsError):
        conn.receive(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)


def test_tls13_still_binds_exporter_and_end_point(server_cert: tuple[Path, Path]) -> None:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(server_cert[0]))
    ctx.set_verify(SSL.VERIFY_PEER)
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    conn = server_tls(server_cert).connection()
    for _ in range(10):
        try:
            client.do_handshake()
            done = True
        except SSL.WantReadError:
            done = False
        try:
            data = client.bio_read(1 << 20)
        except SSL.WantReadError:
            data = b""
        if data:
            client.bio_write(conn.receive(data)[1])
        if done and conn.handshake_complete:
            break
    details = conn.details()
    assert details.version == "TLSv1.3"
    assert set(details.channel_bindings) == {"tls-exporter", "tls-server-end-point"}
    exporter = client.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
    assert details.channel_bindings["tls-exporter"] == exporter


def test_tls12_binds_only_the_end_point(server_cert: tuple[Path, Path]) -> None:
    """Without a public "extended master secret?" call, TLS 1.2 offers neither
    tls-exporter nor tls-unique: a documented loss, never an unsafe binding."""
    details = _handshake(_Client(server_cert[0], "1.2"), server_tls(server_cert)).details()
    assert details.version == "TLSv1.2"
    assert set(details.channel_bindings) == {"tls-server-end-point"}


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_trusted_client_certificate_reaches_the_session(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], version: str
) -> None:
    authority, ca_path = ca
    cert = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca_path])
    client = _Client(server_cert[0], version, cert=cert.write(tmp_path, "alice"))
    assert _handshake(client, server).details().peer_certificate_der == cert.der


def test_an_untrusted_client_certificate_does_not(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca[1]])
    cert = make_client(xmpp_addrs=("alice@localhost",))
    details = _handshake(_Client(server_cert[0], cert=cert.write(tmp_path, "self")), server)
    assert details.details().peer_certificate_der is None


def test_accepted_self_signed_certificates_still_verify(
    tmp_path: Path, server_cert: tuple[Path, Path]
) -> None:
    server = server_tls(server_cert, client_certificates="needed", accept_self_signed=True)
    cert = make_client(xmpp_addrs=("alice@localhost",))
    client = _Client(server_cert[0], cert=cert.write(tmp_path, "self"))
    assert _handshake(client, server).details().peer_certificate_der == cert.der


def test_resumption_is_off_where_client_certificates_are_asked_for(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    """Without the client purpose on the trust store, a resumed session could not be
    checked as the handshake checks it, so there are no tickets to resume."""
    authority, ca_path = ca
    cert = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca_path])
    first = _Client(server_cert[0], "1.2", cert=cert.write(tmp_path, "alice"))
    _handshake(first, server)
    session = first.obj.session
    assert session is not None and not session.has_ticket
    again = _Client(server_cert[0], "1.2", session=session, context=first.context)
    _handshake(again, server)
    assert not again.obj.session_reused


def test_the_environment_switch_turns_the_private_api_off() -> None:
    probe = (
        "from chatgate.xmpp.transports import openssl_tls as m;"
        "print(m._FAST, m._get_extms_support is None, m._session_reused is None,"
        " m._store_set_purpose is None, m.private_api_in_use())"
    )
    env = {**os.environ, "CHATGATE_TLS_NO_PRIVATE_API": "1"}
    off = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["False", "True", "True", "True", "False"]
    env["CHATGATE_TLS_NO_PRIVATE_API"] = ""
    on = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert on.returncode == 0, on.stderr
    assert on.stdout.split() == ["True", "False", "False", "False", "True"]
