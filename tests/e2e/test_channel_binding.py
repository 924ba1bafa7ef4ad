"""SCRAM-*-PLUS end to end: tls-exporter, tls-server-end-point, tls-unique, mismatches, downgrades.

Clients: slixmpp (tls-unique over TLS 1.2, its only binding), and `rawclient`,
whose TLS library computes the binding data (the standard library's
`get_channel_binding`, scramp's hash of the certificate it received,
pyOpenSSL's `export_keying_material`) and whose SCRAM is scramp.  Neither
Debian's go-sendxmpp (0.5.6) nor libstrophe (0.12.2) has -PLUS.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatgate.sasl.channel_binding import ssdp_hash
from tests.certgen import make_client
from tests.e2e.conftest import RunningServer, logged_in
from tests.e2e.rawclient import ALL_SCRAM, LoginFailed, RawClient, start_tls_server

pytestmark = pytest.mark.e2e

PLUS = ["SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
HASH = {"SCRAM-SHA-512-PLUS": "sha512", "SCRAM-SHA-256-PLUS": "sha256", "SCRAM-SHA-1-PLUS": "sha1"}


def _serve(tmp: pytest.TempPathFactory, name: str, tls: str = "") -> Iterator[RunningServer]:
    srv = start_tls_server(tmp.mktemp(name), mechanisms=ALL_SCRAM, tls=tls)
    srv.add_user("alice", "pencil-case")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory, "cb")


@pytest.fixture(scope="module")
def tls12_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory, "cb12", 'max_version = "1.2"')


def _client(server: RunningServer, **kw) -> RawClient:  # type: ignore[no-untyped-def]
    port = server.direct_tls_port if kw.get("direct_tls") else server.starttls_port
    client = RawClient(port, server.certificate, **kw)
    client.connect()
    return client


# -- tls-exporter (RFC 9266) --------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", PLUS)
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct"])
def test_scram_plus_with_tls_exporter_over_tls13(
    server: RunningServer, mechanism: str, direct_tls: bool
) -> None:
    client = _client(server, tls="openssl", tls_version="1.3", direct_tls=direct_tls)
    try:
        assert mechanism in client.features.mechanisms
        client.scram(mechanism, "alice", "pencil-case", cb_type="tls-exporter")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


def test_server_first_carries_the_xep0474_hash_of_what_was_advertised(
    server: RunningServer,
) -> None:
    client = _client(server, tls="openssl", tls_version="1.3")
    try:
        server_first = client.scram(
            "SCRAM-SHA-256-PLUS", "alice", "pencil-case", cb_type="tls-exporter"
        )
    finally:
        client.close()
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    # On TLS 1.3 the connection binds with tls-exporter and tls-server-end-point.
    expected = ssdp_hash(
        "sha256", client.features.mechanisms, ["tls-exporter", "tls-server-end-point"]
    )
    assert attrs["h"] == expected


def test_tls_exporter_over_tls12_with_extended_master_secret(tls12_server: RunningServer) -> None:
    client = _client(tls12_server, tls="openssl", tls_version="1.2")
    try:
        client.scram("SCRAM-SHA-256-PLUS", "alice", "pencil-case", cb_type="tls-exporter")
    finally:
        client.close()


def test_relayed_connections_exporter_data_fails(server: RunningServer) -> None:
    """A relay (MITM) has two TLS connections: the client binds to the other one."""
    other = _client(server, tls="openssl", tls_version="1.3")
    victim = _client(server, tls="openssl", tls_version="1.3")
    try:
        relayed = other.binding("tls-exporter")
        assert relayed != victim.binding("tls-exporter")
        with pytest.raises(LoginFailed) as failed:
            victim.scram(
                "SCRAM-SHA-256-PLUS",
                "alice",
                "pencil-case",
                cb_type="tls-exporter",
                cb_data=relayed,
            )
        assert failed.value.condition == "not-authorized"
    finally:
        other.close()
        victim.close()


# -- tls-server-end-point (RFC 5929 §4) ---------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_scram_plus_with_tls_server_end_point(server: RunningServer, version: str) -> None:
    client = _client(server, tls="stdlib", tls_version=version)
    try:
        client.scram("SCRAM-SHA-256-PLUS", "alice", "pencil-case", cb_type="tls-server-end-point")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


def test_end_point_of_an_interceptors_certificate_fails(server: RunningServer) -> None:
    """A MITM with its own certificate: the client hashes the certificate *it* saw."""
    import hashlib

    interceptor = make_client(common_name="localhost")
    client = _client(server, tls="stdlib")
    try:
        with pytest.raises(LoginFailed) as failed:
            client.scram(
                "SCRAM-SHA-256-PLUS",
                "alice",
                "pencil-case",
                cb_type="tls-server-end-point",
                cb_data=hashlib.sha256(interceptor.der).digest(),
            )
        assert failed.value.condition == "not-authorized"
    finally:
        client.close()


# -- tls-unique (RFC 5929 §3) -------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", PLUS)
def test_scram_plus_with_tls_unique_over_tls12(server: RunningServer, mechanism: str) -> None:
    client = _client(server, tls="stdlib", tls_version="1.2")
    try:
        client.scram(mechanism, "alice", "pencil-case", cb_type="tls-unique")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


def test_tls_unique_is_refused_on_tls13(server: RunningServer) -> None:
    client = _client(server, tls="openssl", tls_version="1.3")
    try:
        with pytest.raises(LoginFailed) as failed:
            client.scram(
                "SCRAM-SHA-256-PLUS",
                "alice",
                "pencil-case",
                cb_type="tls-unique",
                cb_data=b"x" * 12,
            )
        assert failed.value.condition == "malformed-request"
    finally:
        client.close()


def test_relayed_connections_tls_unique_fails(server: RunningServer) -> None:
    other = _client(server, tls="stdlib", tls_version="1.2")
    victim = _client(server, tls="stdlib", tls_version="1.2")
    try:
        with pytest.raises(LoginFailed) as failed:
            victim.scram(
                "SCRAM-SHA-1-PLUS",
                "alice",
                "pencil-case",
                cb_type="tls-unique",
                cb_data=other.binding("tls-unique"),
            )
        assert failed.value.condition == "not-authorized"
    finally:
        other.close()
        victim.close()


async def test_slixmpp_logs_in_with_scram_plus_tls_unique_over_tls12(
    tls12_server: RunningServer,
) -> None:
    async with logged_in(
        tls12_server, "alice@localhost", "pencil-case", mechanism="SCRAM-SHA-512-PLUS"
    ) as client:
        assert client.boundjid.bare == "alice@localhost"
    assert "SCRAM-SHA-512-PLUS over TLSv1.2" in tls12_server.log_text()


# -- downgrades (RFC 5802 §6, XEP-0474) ---------------------------------------------------------


def test_client_that_says_y_while_plus_was_offered_fails(server: RunningServer) -> None:
    """'y': "I could bind but think you can't" -- yet the server offered -PLUS."""
    client = _client(server, tls="stdlib", tls_version="1.2")
    try:
        with pytest.raises(LoginFailed) as failed:
            # scramp sends the "y" flag for a non-PLUS mechanism given binding data.
            client.scram("SCRAM-SHA-256", "alice", "pencil-case", cb_type="tls-unique")
        assert failed.value.condition == "not-authorized"
    finally:
        client.close()


def test_plus_is_not_offered_without_tls(server: RunningServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.plain_port), timeout=10) as sock:
        sock.sendall(
            b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        data = b""
        while b"</stream:features>" not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
    assert b"SCRAM-SHA-256<" in data
    assert b"-PLUS" not in data
