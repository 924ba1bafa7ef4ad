"""Resumed TLS sessions and client certificates (issue 9, item 1), end to end.

Trust in a client certificate must be decided on every connection, not
remembered from a handshake that never checked it: OpenSSL restores the peer
certificate of a resumed session without calling the verification callback.
Connection 1 presents a certificate; connection 2 resumes its session (a TLS 1.2
or a TLS 1.3 ticket, on the STARTTLS and on the direct TLS port) and must get
EXTERNAL exactly when the certificate is trusted.  TLS 1.2 session ids are not
resumed at all (the server keeps no session cache), which is tested too.

The client is the standard library's `ssl` (`wrap_socket(..., session=...)`);
every test asserts `session_reused` (or that it is false), else it would prove
nothing.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certgen import make_ca, make_client
from tests.e2e.conftest import RunningServer
from tests.e2e.rawclient import LoginFailed, RawClient, start_tls_server

pytestmark = pytest.mark.e2e

MECHANISMS = ["EXTERNAL", "SCRAM-SHA-256", "PLAIN"]

#: TLS versions whose session tickets are resumed
VERSIONS = ["1.2", "1.3"]


@dataclass
class Certs:
    ca: Path
    alice: tuple[Path, Path]  # issued by the trusted CA
    self_signed: tuple[Path, Path]  # names alice@localhost too


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca()
    return Certs(
        ca=ca.write(folder, "ca")[0],
        alice=make_client(xmpp_addrs=("alice@localhost",), issuer=ca).write(folder, "alice"),
        self_signed=make_client(xmpp_addrs=("alice@localhost",)).write(folder, "self"),
    )


def _serve(tmp: Path, ca: Path, policy: str) -> Iterator[RunningServer]:
    tls = f'client_certificates = "{policy}"\ntrust_files = ["{ca}"]\n'
    srv = start_tls_server(tmp, mechanisms=MECHANISMS, tls=tls)
    srv.add_user("alice", "pencil-case")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory.mktemp("wanted"), certs.ca, "wanted")


@pytest.fixture(scope="module")
def strict_server(
    tmp_path_factory: pytest.TempPathFactory, certs: Certs
) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory.mktemp("needed"), certs.ca, "needed")


class _ResumingClient(RawClient):
    """`RawClient` over one shared `SSLContext`, offering a previous session."""

    def __init__(
        self,
        port: int,
        ca: Path,
        context: ssl.SSLContext,
        *,
        direct_tls: bool,
        session: ssl.SSLSession | None,
    ) -> None:
        super().__init__(port, ca, direct_tls=direct_tls)
        self.context = context
        self.session = session

    def _wrap(self) -> None:
        assert self.sock is not None and not isinstance(self.sock, ssl.SSLSocket)
        self.sock = self.context.wrap_socket(
            self.sock, server_hostname="localhost", session=self.session
        )

    @property
    def ssl_sock(self) -> ssl.SSLSocket:
        assert isinstance(self.sock, ssl.SSLSocket)
        return self.sock


def _context(server: RunningServer, cert: tuple[Path, Path], version: str, *, tickets: bool):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(server.certificate))
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET  # resume by session id, from the server's cache
    ctx.load_cert_chain(*map(str, cert))
    return ctx


def _first_and_second(
    server: RunningServer,
    cert: tuple[Path, Path],
    version: str,
    *,
    direct: bool,
    tickets: bool = True,
) -> tuple[_ResumingClient, _ResumingClient]:
    """Connection 1 with `cert`, then connection 2 offering its session.  Both are left
    open: OpenSSL drops a cached session whose connection ended without close_notify."""
    context = _context(server, cert, version, tickets=tickets)
    port = server.direct_tls_port if direct else server.starttls_port
    first = _ResumingClient(port, server.certificate, context, direct_tls=direct, session=None)
    first.connect()  # reading the features also reads a TLS 1.3 ticket
    session = first.ssl_sock.session
    assert session is not None
    assert first.ssl_sock.version() == f"TLSv{version}"
    assert session.has_ticket is tickets
    second = _ResumingClient(port, server.certificate, context, direct_tls=direct, session=session)
    try:
        second.connect()
    except BaseException:
        first.close()
        raise
    return first, second


def _first_and_resumed(
    server: RunningServer, cert: tuple[Path, Path], version: str, *, direct: bool
) -> tuple[_ResumingClient, _ResumingClient]:
    first, second = _first_and_second(server, cert, version, direct=direct)
    assert second.ssl_sock.session_reused, "the server did not resume the session"
    return first, second


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_resumed_session_of_a_self_signed_certificate_gets_no_external(
    server: RunningServer, certs: Certs, version: str, direct: bool
) -> None:
    first, second = _first_and_resumed(server, certs.self_signed, version, direct=direct)
    try:
        assert "EXTERNAL" not in first.features.mechanisms
        assert "EXTERNAL" not in second.features.mechanisms
        with pytest.raises(LoginFailed) as failed:
            second.external()
        assert failed.value.condition == "invalid-mechanism"
    finally:
        first.close()
        second.close()
    assert "client certificate from 127.0.0.1 not trusted" in server.log_text()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_resumed_session_of_a_trusted_certificate_keeps_external(
    server: RunningServer, certs: Certs, version: str, direct: bool
) -> None:
    first, second = _first_and_resumed(server, certs.alice, version, direct=direct)
    try:
        assert "EXTERNAL" in first.features.mechanisms
        assert "EXTERNAL" in second.features.mechanisms
        second.external()
        assert second.bind().startswith("alice@localhost/")
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_needed_policy_resumes_a_trusted_certificate(
    strict_server: RunningServer, certs: Certs, version: str, direct: bool
) -> None:
    first, second = _first_and_resumed(strict_server, certs.alice, version, direct=direct)
    try:
        second.external()
        assert second.bind().startswith("alice@localhost/")
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
def test_tls12_session_ids_are_not_resumed(
    server: RunningServer, certs: Certs, direct: bool
) -> None:
    """Without tickets a TLS 1.2 client can only resume from the server's session cache,
    which chatgate does not keep (it would hold every client's certificate chain):
    connection 2 gets a full handshake, whose verification refuses the certificate."""
    first, second = _first_and_second(
        server, certs.self_signed, "1.2", direct=direct, tickets=False
    )
    try:
        assert not second.ssl_sock.session_reused
        assert "EXTERNAL" not in second.features.mechanisms
        with pytest.raises(LoginFailed) as failed:
            second.external()
        assert failed.value.condition == "invalid-mechanism"
    finally:
        first.close()
        second.close()
