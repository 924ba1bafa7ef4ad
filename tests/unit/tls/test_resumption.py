"""Client-certificate trust on resumed TLS sessions, and the server's session cache.

OpenSSL restores the peer certificate of a resumed session without calling the
verification callback, so trust must be decided on every connection (issue 9,
item 1).  These tests resume sessions in memory (the standard library's `ssl`
over BIOs, `wrap_bio(..., session=...)`) and check every one really resumed.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest

from chatgate.tls import generate_self_signed
from chatgate.xmpp.transports.openssl_tls import ServerTls, ServerTlsConnection, TlsError
from tests.certgen import Issued, make_client
from tests.unit.tls.conftest import server_tls

VERSIONS = ["1.2", "1.3"]


class _Client:
    """One client `SSLContext` whose connections can offer the previous session."""

    def __init__(
        self,
        cafile: Path,
        version: str,
        cert: tuple[Path, Path] | None = None,
        *,
        tickets: bool = True,
        ciphers: str | None = None,
    ) -> None:
        ctx = ssl.create_default_context(cafile=str(cafile))
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
        if not tickets:
            ctx.options |= ssl.OP_NO_TICKET
        if ciphers is not None:
            ctx.set_ciphers(ciphers)
        if cert is not None:
            ctx.load_cert_chain(*map(str, cert))
        self.ctx = ctx
        self.session: ssl.SSLSession | None = None
        self.reused = False

    def connect(self, server: ServerTls, *, resume: bool = False) -> ServerTlsConnection:
        """A complete handshake with `server` (offering the last session if `resume`)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(
            incoming,
            outgoing,
            server_hostname="localhost",
            session=self.session if resume else None,
        )
        conn = server.connection()
        for _ in range(10):
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = outgoing.read()
            if data:
                _, out = conn.receive(data)
                incoming.write(out)
            if done and conn.handshake_complete:
                break
        else:
            raise AssertionError("handshake did not finish")
        # A TLS 1.3 ticket comes after the handshake: read it.
        with pytest.raises(ssl.SSLWantReadError):
            obj.read(1)
        self.session = obj.session
        self.reused = obj.session_reused
        return conn


def _resume(client: _Client, server: ServerTls) -> ServerTlsConnection:
    conn = client.connect(server, resume=True)
    assert client.reused, "the session was not resumed"
    return conn


@pytest.mark.parametrize("version", VERSIONS)
def test_resumed_session_of_an_untrusted_certificate_stays_untrusted(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], version: str
) -> None:
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca[1]])
    cert = make_client(xmpp_addrs=("alice@localhost",)).write(tmp_path, "self")
    client = _Client(server_cert[0], version, cert)
    assert client.connect(server).details().peer_certificate_der is None
    details = _resume(client, server).details()
    assert details.peer_certificate_der is None
    assert "error 18 at depth 0" in details.peer_certificate_problem


@pytest.mark.parametrize("version", VERSIONS)
def test_resumed_session_of_a_trusted_certificate_stays_trusted(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], version: str
) -> None:
    authority, ca_path = ca
    issued = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    client = _Client(server_cert[0], version, issued.write(tmp_path, "alice"))
    for policy in ("wanted", "needed"):
        server = server_tls(server_cert, client_certificates=policy, trust_files=[ca_path])
        assert client.connect(server).details().peer_certificate_der == issued.der
        details = _resume(client, server).details()
        assert details.peer_certificate_der == issued.der
        assert details.peer_certificate_problem == ""


@pytest.mark.parametrize("version", VERSIONS)
def test_accept_self_signed_also_holds_on_resumption(
    tmp_path: Path, server_cert: tuple[Path, Path], version: str
) -> None:
    server = server_tls(server_cert, client_certificates="wanted", accept_self_signed=True)
    issued = make_client(xmpp_addrs=("alice@localhost",))
    client = _Client(server_cert[0], version, issued.write(tmp_path, "self"))
    assert client.connect(server).details().peer_certificate_der == issued.der
    assert _resume(client, server).details().peer_certificate_der == issued.der


def _expire(server: ServerTls) -> None:
    """Move the trust store's clock past every test certificate's end (30 days)."""
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=60)
    store = server.context.get_cert_store()
    assert store is not None
    store.set_time(later.replace(tzinfo=None))


@pytest.mark.parametrize("version", VERSIONS)
def test_certificate_expired_since_the_first_handshake_is_not_trusted_on_resumption(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], version: str
) -> None:
    authority, ca_path = ca
    issued = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    client = _Client(server_cert[0], version, issued.write(tmp_path, "alice"))
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca_path])
    assert client.connect(server).details().peer_certificate_der == issued.der
    _expire(server)
    details = _resume(client, server).details()
    assert details.peer_certificate_der is None
    assert "verification error 10 at" in details.peer_certificate_problem  # has expired


@pytest.mark.parametrize("version", VERSIONS)
def test_needed_policy_refuses_a_resumed_session_no_longer_trusted(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], version: str
) -> None:
    authority, ca_path = ca
    issued = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    client = _Client(server_cert[0], version, issued.write(tmp_path, "alice"))
    server = server_tls(server_cert, client_certificates="needed", trust_files=[ca_path])
    assert client.connect(server).details().peer_certificate_der == issued.der
    _expire(server)
    with pytest.raises(TlsError, match="client certificate not trusted"):
        client.connect(server, resume=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_certificate_revoked_since_the_first_handshake_is_not_trusted_on_resumption(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], version: str
) -> None:
    authority, ca_path = ca
    issued = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    client = _Client(server_cert[0], version, issued.write(tmp_path, "alice"))
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca_path])
    assert client.connect(server).details().peer_certificate_der == issued.der
    server.revoked = frozenset({authority.fingerprint})  # the CA, as an operator may
    details = _resume(client, server).details()
    assert details.peer_certificate_der is None
    assert "revoked certificate at depth 1" in details.peer_certificate_problem


def test_certificate_for_servers_only_is_not_trusted_on_resumption(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path]
) -> None:
    """The resumed check asks for the TLS client purpose, as the handshake's does."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    authority, ca_path = ca
    leaf = make_client(xmpp_addrs=("alice@localhost",), issuer=authority)
    server_only = (
        x509.CertificateBuilder()
        .subject_name(leaf.cert.subject)
        .issuer_name(authority.cert.subject)
        .public_key(leaf.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(leaf.cert.not_valid_before_utc)
        .not_valid_after(leaf.cert.not_valid_after_utc)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    cert = Issued(server_only, leaf.key).write(tmp_path, "server-only")
    server = server_tls(server_cert, client_certificates="wanted", trust_files=[ca_path])
    client = _Client(server_cert[0], "1.3", cert)
    first = client.connect(server).details()
    assert first.peer_certificate_der is None
    assert "error 26" in first.peer_certificate_problem  # unsuitable certificate purpose
    details = _resume(client, server).details()
    assert details.peer_certificate_der is None
    assert "error 26" in details.peer_certificate_problem


def _authority(name: str, issuer: Issued | None = None) -> Issued:
    """A CA that may sign one more CA (`issuer` None: a root) or, if issued, leaves only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=0 if issuer else 1), critical=True
        )
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Issued(cert, key)


def test_intermediate_ca_must_be_in_the_trust_store_for_resumed_sessions(
    tmp_path: Path, server_cert: tuple[Path, Path]
) -> None:
    """A ticket keeps the client's certificate, not the intermediates it sent: the
    resumed check has the leaf and the trust store only (docs/tls.md says so)."""
    root = _authority("root CA")
    intermediate = _authority("intermediate CA", issuer=root)
    issued = make_client(xmpp_addrs=("alice@localhost",), issuer=intermediate)
    leaf, key = issued.write(tmp_path, "alice")
    inter_path, _ = intermediate.write(tmp_path, "intermediate")
    chain = tmp_path / "alice-chain.crt"
    chain.write_bytes(leaf.read_bytes() + inter_path.read_bytes())
    root_path, _ = root.write(tmp_path, "root")

    server = server_tls(server_cert, client_certificates="wanted", trust_files=[root_path])
    client = _Client(server_cert[0], "1.3", (chain, key))
    assert client.connect(server).details().peer_certificate_der == issued.der
    details = _resume(client, server).details()
    assert details.peer_certificate_der is None
    assert "error 20 at depth 0" in details.peer_certificate_problem
    assert "list them in tls.trust_files" in details.peer_certificate_problem

    both = server_tls(
        server_cert, client_certificates="wanted", trust_files=[root_path, inter_path]
    )
    assert client.connect(both).details().peer_certificate_der == issued.der
    assert _resume(client, both).details().peer_certificate_der == issued.der


@pytest.mark.parametrize("policy", ["disabled", "wanted"])
def test_server_keeps_no_session_cache(
    tmp_path: Path, server_cert: tuple[Path, Path], ca: tuple[Issued, Path], policy: str
) -> None:
    """A TLS 1.2 client without tickets is not resumed: the server caches no sessions
    (in `wanted` mode each cached session held the client's whole certificate chain,
    for two hours, up to 20,480 of them: memory anyone could pin before logging in).
    Tickets, which cost the server no memory, still resume."""
    cert = make_client(xmpp_addrs=("alice@localhost",)).write(tmp_path, "self")
    server = server_tls(server_cert, client_certificates=policy, trust_files=[ca[1]])
    client = _Client(server_cert[0], "1.2", cert, tickets=False)
    # Kept open: OpenSSL drops a cached session whose connection is freed unclosed.
    first = client.connect(server)
    client.connect(server, resume=True)
    assert not client.reused
    assert first.handshake_complete
    with_tickets = _Client(server_cert[0], "1.2", cert)
    with_tickets.connect(server)
    _resume(with_tickets, server)


# -- TLS 1.2 cipher suites (issue 9, item 15) ---------------------------------------------------

AEAD_SUITES = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
]
CBC_SUITES = [
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
]


@pytest.mark.parametrize("suite", AEAD_SUITES)
def test_tls12_aead_suites_are_accepted(server_cert: tuple[Path, Path], suite: str) -> None:
    client = _Client(server_cert[0], "1.2", ciphers=suite)
    client.connect(server_tls(server_cert))


@pytest.mark.parametrize("suite", CBC_SUITES)
def test_tls12_cbc_suites_are_refused(server_cert: tuple[Path, Path], suite: str) -> None:
    client = _Client(server_cert[0], "1.2", ciphers=suite)
    with pytest.raises(TlsError, match=r"no shared cipher|no suitable cipher"):
        client.connect(server_tls(server_cert))


def test_tls12_with_an_rsa_certificate_offers_aead_only(tmp_path: Path) -> None:
    cert, key = tmp_path / "rsa.crt", tmp_path / "rsa.key"
    generate_self_signed("localhost", cert, key, key_type="rsa")
    server = server_tls((cert, key))
    _Client(cert, "1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256").connect(server)
    _Client(cert, "1.2", ciphers="ECDHE-RSA-CHACHA20-POLY1305").connect(server)
    for suite in ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-GCM-SHA256"):
        with pytest.raises(TlsError):
            _Client(cert, "1.2", ciphers=suite).connect(server)
