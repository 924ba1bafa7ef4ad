"""The real server on pyOpenSSL's public API only (`CHATGATE_TLS_NO_PRIVATE_API=1`).

What a pyOpenSSL release without `OpenSSL._util.lib` would give (issue 10, item 9):
STARTTLS and direct TLS, SCRAM-*-PLUS with tls-exporter (TLS 1.3) and
tls-server-end-point, and EXTERNAL with a client certificate all still work;
TLS 1.2 loses tls-exporter and tls-unique (no public "extended master secret?"
call), and resumption is off where client certificates are asked for.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certgen import make_ca, make_client
from tests.e2e.conftest import RunningServer, logged_in, start_server
from tests.e2e.rawclient import ALL_SCRAM, RawClient

pytestmark = pytest.mark.e2e

MECHANISMS = ["EXTERNAL", *ALL_SCRAM, "PLAIN"]


@dataclass
class Certs:
    ca: Path
    alice: tuple[Path, Path]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca()
    ca_path, _ = ca.write(folder, "ca")
    alice = make_client(xmpp_addrs=("alice@localhost",), issuer=ca).write(folder, "alice")
    return Certs(ca_path, alice)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RunningServer]:
    extra = (
        f"mechanisms = {MECHANISMS!r}\n".replace("'", '"')
        + f'\n[tls]\nclient_certificates = "wanted"\ntrust_files = ["{certs.ca}"]\n'
    )
    srv = start_server(
        tmp_path_factory.mktemp("public-api"),
        extra=extra,
        env={"CHATGATE_TLS_NO_PRIVATE_API": "1"},
    )
    srv.add_user("alice", "pencil-case")
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


def _client(server: RunningServer, **kw) -> RawClient:  # type: ignore[no-untyped-def]
    port = server.direct_tls_port if kw.get("direct_tls") else server.starttls_port
    client = RawClient(port, server.certificate, **kw)
    client.connect()
    return client


def test_the_server_says_it_runs_on_the_public_api(server: RunningServer) -> None:
    assert "private API is turned off (CHATGATE_TLS_NO_PRIVATE_API)" in server.log_text()


@pytest.mark.parametrize("transport", ["starttls", "direct"])
async def test_slixmpp_logs_in_and_large_stanzas_cross_both_ways(
    server: RunningServer, transport: str
) -> None:
    async with logged_in(server, "alice@localhost", "pencil-case", transport=transport) as alice:
        body = "x" * 150_000  # many TLS records each way, more than one BIO read
        alice.send_message(mto=alice.boundjid.full, mbody=body)
        message = await alice.next_message()
        assert message["body"] == body


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS"])
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct"])
def test_tls_exporter_over_tls13(server: RunningServer, mechanism: str, direct_tls: bool) -> None:
    client = _client(server, tls="openssl", tls_version="1.3", direct_tls=direct_tls)
    try:
        assert client.features.channel_bindings == ["tls-exporter", "tls-server-end-point"]
        client.scram(mechanism, "alice", "pencil-case", cb_type="tls-exporter")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_server_end_point(server: RunningServer, version: str) -> None:
    client = _client(server, tls="stdlib", tls_version=version)
    try:
        client.scram("SCRAM-SHA-256-PLUS", "alice", "pencil-case", cb_type="tls-server-end-point")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


def test_tls12_offers_only_tls_server_end_point(server: RunningServer) -> None:
    client = _client(server, tls="openssl", tls_version="1.2")
    try:
        assert client.features.channel_bindings == ["tls-server-end-point"]
        assert "SCRAM-SHA-256-PLUS" in client.features.mechanisms
    finally:
        client.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct"])
def test_external_with_a_client_certificate(
    server: RunningServer, certs: Certs, version: str, direct_tls: bool
) -> None:
    client = _client(server, tls_version=version, direct_tls=direct_tls, client_cert=certs.alice)
    try:
        assert client.features.mechanisms[0] == "EXTERNAL"
        client.external()
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


def test_no_external_without_a_certificate(server: RunningServer) -> None:
    client = _client(server)
    try:
        assert "EXTERNAL" not in client.features.mechanisms
    finally:
        client.close()


def test_no_session_resumption_where_certificates_are_asked_for(
    server: RunningServer, certs: Certs
) -> None:
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(*map(str, certs.alice))

    def handshake(session: ssl.SSLSession | None) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=10)
        return context.wrap_socket(raw, server_hostname="localhost", session=session)

    with handshake(None) as first:
        session = first.session
    assert session is not None and not session.has_ticket
    with handshake(session) as second:
        assert not second.session_reused
