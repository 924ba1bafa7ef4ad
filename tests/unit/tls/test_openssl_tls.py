"""The pyOpenSSL TLS core in memory: channel bindings as the *client's* library computes them,
client-certificate policy, and plaintext in both directions.

Clients: the standard library's `ssl` (tls-unique, and scramp's own
tls-server-end-point hash of the certificate it received) and pyOpenSSL's
client side (tls-exporter).  No sockets: BIOs are pumped by hand.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest
import scramp.core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from OpenSSL import SSL

from chatgate.sasl.channel_binding import tls_server_end_point
from chatgate.tls import generate_self_signed
from chatgate.xmpp.transports.openssl_tls import ServerTls, ServerTlsConnection, TlsError
from tests.certgen import Issued, make_client
from tests.unit.tls.conftest import server_tls

ALL_TYPES = {"tls-exporter", "tls-unique", "tls-server-end-point"}


class _StdlibClient:
    def __init__(
        self, cafile: Path, version: str | None = None, cert: tuple[Path, Path] | None = None
    ) -> None:
        ctx = ssl.create_default_context(cafile=str(cafile))
        if version is not None:
            v = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
            ctx.minimum_version = ctx.maximum_version = v
        if cert is not None:
            ctx.load_cert_chain(*map(str, cert))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def step(self) -> bool:
        try:
            self.obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def feed(self, data: bytes) -> None:
        self.incoming.write(data)

    def take(self) -> bytes:
        return self.outgoing.read()


class _OpenSslClient:
    def __init__(self, cafile: Path, version: str | None = None, *, verify: bool = True) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(str(cafile))
        ctx.set_verify(SSL.VERIFY_PEER if verify else SSL.VERIFY_NONE)
        if version == "1.2":
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()

    def step(self) -> bool:
        try:
            self.conn.do_handshake()
            return True
        except SSL.WantReadError:
            return False

    def feed(self, data: bytes) -> None:
        self.conn.bio_write(data)

    def take(self) -> bytes:
        try:
            return self.conn.bio_read(1 << 20)
        except SSL.WantReadError:
            return b""


def _handshake(client: _StdlibClient | _OpenSslClient, server: ServerTls) -> ServerTlsConnection:
    conn = server.connection()
    for _ in range(10):
        done = client.step()
        data = client.take()
        if data:
            plain, out = conn.receive(data)
            assert plain == b""
            client.feed(out)
        if done and conn.handshake_complete:
            # TLS 1.3 tickets and the like arrive after the client finished.
            client.step()
            return conn
    raise AssertionError("handshake did not finish")


def test_tls13_binds_exporter_and_end_point_but_never_unique(
    server_cert: tuple[Path, Path],
) -> None:
    client = _OpenSslClient(server_cert[0])
    details = _handshake(client, server_tls(server_cert)).details()
    assert details.version == "TLSv1.3"
    assert set(details.channel_bindings) == {"tls-exporter", "tls-server-end-point"}
    exporter = client.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
    assert details.channel_bindings["tls-exporter"] == exporter
    leaf = client.conn.get_peer_certificate(as_cryptography=True)
    assert leaf is not None
    from cryptography.hazmat.primitives.serialization import Encoding

    expected = scramp.core.CBindData.from_der(leaf.public_bytes(Encoding.DER)).data
    assert details.channel_bindings["tls-server-end-point"] == expected


def test_tls12_with_extended_master_secret_binds_unique_and_exporter(
    server_cert: tuple[Path, Path],
) -> None:
    client = _StdlibClient(server_cert[0], "1.2")
    details = _handshake(client, server_tls(server_cert)).details()
    assert details.version == "TLSv1.2"
    assert set(details.channel_bindings) == ALL_TYPES
    assert details.channel_bindings["tls-unique"] == client.obj.get_channel_binding("tls-unique")


def test_tls12_exporter_matches_the_clients(server_cert: tuple[Path, Path]) -> None:
    client = _OpenSslClient(server_cert[0], "1.2")
    details = _handshake(client, server_tls(server_cert)).details()
    exporter = client.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
    assert details.channel_bindings["tls-exporter"] == exporter


def test_only_configured_binding_types_are_offered(server_cert: tuple[Path, Path]) -> None:
    client = _StdlibClient(server_cert[0], "1.2")
    server = server_tls(server_cert, channel_bindings=["tls-server-end-point"])
    assert set(_handshake(client, server).details().channel_bindings) == {"tls-server-end-point"}


def test_two_connections_have_different_exporter_data(server_cert: tuple[Path, Path]) -> None:
    server = server_tls(server_cert)
    first = _handshake(_OpenSslClient(server_cert[0]), server).details()
    second = _handshake(_OpenSslClient(server_cert[0]), server).details()
    assert first.channel_bindings["tls-exporter"] != second.channel_bindings["tls-exporter"]


def test_plaintext_both_ways_and_writes_held_until_the_handshake(
    server_cert: tuple[Path, Path],
) -> None:
    server = server_tls(server_cert)
    conn = server.connection()
    assert conn.send(b"early") == b""  # held
    client = _StdlibClient(server_cert[0])
    for _ in range(10):
        done = client.step()
        data = client.take()
        if data:
            _, out = conn.receive(data)
            client.feed(out)
        if done and conn.handshake_complete:
            break
    client.obj.write(b"<stream:stream>")
    plain, _ = conn.receive(client.take())
    assert plain == b"<stream:stream>"
    client.feed(conn.send(b"x" * 40000))
    received = b""
    while True:
        try:
            received += client.obj.read(65536)
        except ssl.SSLWantReadError:
            break
    assert received == b"early" + b"x" * 40000


def test_garbage_is_a_tls_error(server_cert: tuple[Path, Path]) -> None:
    conn = server_tls(server_cert).connection()
    with pytest.raises(TlsError):
        conn.receive(b"<stream:stream to='localhost'>" * 4)


# -- client certificates -----------------------------------------------------------------------


def _with_client_cert(
    tmp_path: Path, server: ServerTls, cafile: Path, cert: Issued
) -> ServerTlsConnection:
    paths = cert.write(tmp_path, "client")
    return _handshake(_StdlibClient(cafile, cert=paths), server)


def test_wanted_trusted_certificate_reaches_the_session(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    authority, ca_path = ca
    cert = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca_path])
    details = _with_client_cert(tmp_path, server, server_cert[0], cert).details()
    assert details.peer_certificate_der == cert.der


def test_wanted_without_certificate_connects_without_identity(
    server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca[1]])
    details = _handshake(_StdlibClient(server_cert[0]), server).details()
    assert details.peer_certificate_der is None


def test_wanted_self_signed_certificate_is_not_believed(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca[1]])
    cert = make_client(xmpp_addrs=("alice@localhost",))
    details = _with_client_cert(tmp_path, server, server_cert[0], cert).details()
    assert details.peer_certificate_der is None
    assert "error 18" in details.peer_certificate_problem


def test_accept_self_signed_believes_a_self_signed_certificate(
    tmp_path: Path, server_cert: tuple[Path, Path]
) -> None:
    server = server_tls(server_cert, client_certificates="needed", accept_self_signed=True)
    cert = make_client(xmpp_addrs=("alice@localhost",))
    details = _with_client_cert(tmp_path, server, server_cert[0], cert).details()
    assert details.peer_certificate_der == cert.der


def test_revoked_fingerprint_is_not_believed(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    authority, ca_path = ca
    cert = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    server = server_tls(
        server_cert,
        client_certificates="wanted",
        trust_files=[ca_path],
        revoked_fingerprints=[cert.fingerprint],
    )
    details = _with_client_cert(tmp_path, server, server_cert[0], cert).details()
    assert details.peer_certificate_der is None
    assert "revoked" in details.peer_certificate_problem


def test_needed_without_certificate_fails_the_handshake(
    server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    server = server_tls(server_cert, client_certificates="needed", trust_files=[ca[1]])
    with pytest.raises(TlsError) as failed:
        _handshake(_StdlibClient(server_cert[0]), server)
    assert failed.value.outgoing  # the alert for the client


def test_client_certificates_need_something_to_trust(server_cert: tuple[Path, Path]) -> None:
    from chatgate.vocabulary.errors import ConfigError

    with pytest.raises(ConfigError, match="trust_files"):
        server_tls(server_cert, client_certificates="wanted")


# -- tls-server-end-point hash choice (RFC 5929 §4.1) -----------------------------------------


def _self_signed(key, algorithm) -> bytes:  # type: ignore[no-untyped-def]
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(Encoding.DER)


def test_end_point_uses_the_signature_hash() -> None:
    import hashlib

    der = _self_signed(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    assert tls_server_end_point(der) == hashlib.sha384(der).digest()


def test_end_point_is_undefined_without_a_single_hash() -> None:
    assert tls_server_end_point(_self_signed(ed25519.Ed25519PrivateKey.generate(), None)) is None


# An ecdsa-with-SHA256 signature (1.2.840.10045.4.3.2) renamed to an OID no library knows
# (…4.3.9, unassigned): cryptography then raises `cryptography.exceptions.UnsupportedAlgorithm`
# for the signature's hash, as it does for a real certificate signed with, say, GOST or SM2.
_ECDSA_SHA256_OID = bytes.fromhex("06082a8648ce3d040302")
_UNKNOWN_SIGNATURE_OID = bytes.fromhex("06082a8648ce3d040309")


def _unknown_signature(der: bytes) -> bytes:
    assert der.count(_ECDSA_SHA256_OID) == 2  # TBSCertificate.signature and the outer one
    return der.replace(_ECDSA_SHA256_OID, _UNKNOWN_SIGNATURE_OID)


def test_end_point_is_undefined_when_the_signature_hash_is_unknown() -> None:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    der = _unknown_signature(_self_signed(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    with pytest.raises(UnsupportedAlgorithm):
        _ = x509.load_der_x509_certificate(der).signature_hash_algorithm
    # RFC 5929 §4.1: no single hash we can name, so the binding is undefined.
    assert tls_server_end_point(der) is None


def test_a_certificate_with_an_unknown_signature_hash_offers_no_end_point_binding(
    tmp_path: Path,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert, key = tmp_path / "odd.crt", tmp_path / "odd.key"
    generate_self_signed("localhost", cert, key)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    odd = x509.load_der_x509_certificate(_unknown_signature(der))
    cert.write_bytes(odd.public_bytes(Encoding.PEM))
    server = server_tls((cert, key))
    assert server.end_point_binding is None
    # No client can verify that signature: this one does not try.
    client = _OpenSslClient(cert, verify=False)
    details = _handshake(client, server).details()
    assert details.version == "TLSv1.3"
    assert set(details.channel_bindings) == {"tls-exporter"}


def test_writing_after_the_peer_ended_tls_drops_the_data_without_an_error(
    server_cert: tuple[Path, Path],
) -> None:
    server = server_tls(server_cert)
    client = _StdlibClient(server_cert[0])
    conn = _handshake(client, server)
    # The client ends TLS (close_notify), as one leaving under load does.
    with contextlib.suppress(ssl.SSLWantReadError):
        client.obj.unwrap()
    conn.receive(client.take())
    # A stanza for it was already on its way: dropped, never an SSL error.
    assert conn.send(b"<message/>") == b""
    assert conn.closed


def test_writing_after_ending_tls_here_drops_the_data_without_an_error(
    server_cert: tuple[Path, Path],
) -> None:
    server = server_tls(server_cert)
    client = _StdlibClient(server_cert[0])
    conn = _handshake(client, server)
    conn.close()  # our close_notify: the stream is ending
    # What a turn's buffer flushes after it ("protocol is shutdown" was raised).
    assert conn.send(b"<message/>") == b""
    assert conn.closed
