"""A server started from `chatgate init`'s file, as `make run` does: channel binding first.

The default `[auth] mechanisms` offers SCRAM-SHA-512-PLUS, SCRAM-SHA-256-PLUS and
SCRAM-SHA-1-PLUS before the rest over TLS (issue 10, item 2), never -PLUS
without TLS, and an ordinary client (slixmpp, which binds with tls-unique only)
still logs in.  Only the ports are changed in the generated file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer, free_ports, logged_in, serve
from tests.e2e.rawclient import RawClient

pytestmark = pytest.mark.e2e

DEFAULT = [
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
]


def _serve_init_file(tmp: Path, tls: str = "") -> RunningServer:
    """`chatgate init`, new ports, `tls` added to its `[tls]` table, then `serve`."""
    config = tmp / "chatgate.toml"
    made = subprocess.run(
        [sys.executable, "-m", "chatgate", "init", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    starttls, direct = free_ports(2)
    text = config.read_text()
    assert text.count("port = 5222\n") == 1 and text.count("port = 5223\n") == 1
    text = text.replace("port = 5222\n", f"port = {starttls}\n")
    text = text.replace("port = 5223\n", f"port = {direct}\n")
    assert text.count("port = 5280\n") == 1 and text.count("tls_port = 5281\n") == 1
    web, secure_web = free_ports(2)
    text = text.replace("port = 5280\n", f"port = {web}\n")
    text = text.replace("tls_port = 5281\n", f"tls_port = {secure_web}\n")
    assert text.count("\n[tls]\n") == 1
    config.write_text(text.replace("\n[tls]\n", f"\n[tls]\n{tls}"))
    return serve(config, tmp / "var", (starttls, direct, 0), listeners=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = _serve_init_file(tmp_path_factory.mktemp("default"))
    srv.add_user("alice", "pencil-sharpener")
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


def test_check_lists_the_plus_mechanisms_first(server: RunningServer) -> None:
    result = server.cli("check")
    assert result.returncode == 0, result.stderr
    for line in re.findall(r"c2s .*", result.stdout):
        assert line.endswith("sasl: " + ", ".join(DEFAULT)), line


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_offers_channel_binding_first(
    server: RunningServer, direct_tls: bool, version: str
) -> None:
    port = server.direct_tls_port if direct_tls else server.starttls_port
    client = RawClient(port, server.certificate, direct_tls=direct_tls, tls_version=version)
    try:
        features = client.connect()
        assert features.mechanisms == DEFAULT
        assert features.channel_bindings
    finally:
        client.close()


def test_before_starttls_nothing_is_offered(server: RunningServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.starttls_port), timeout=10) as sock:
        sock.sendall(
            b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        data = b""
        while b"</stream:features>" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert b"<mechanism>" not in data
    assert b"<required/>" in data


def test_scram_sha_512_plus_with_tls_exporter_logs_in(server: RunningServer) -> None:
    client = RawClient(server.starttls_port, server.certificate, tls="openssl", tls_version="1.3")
    try:
        client.connect()
        client.scram("SCRAM-SHA-512-PLUS", "alice", "pencil-sharpener", cb_type="tls-exporter")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


@pytest.mark.parametrize("transport", ["starttls", "direct"])
async def test_slixmpp_still_logs_in(server: RunningServer, transport: str) -> None:
    async with logged_in(
        server, "alice@localhost", "pencil-sharpener", transport=transport
    ) as client:
        assert client.boundjid.bare == "alice@localhost"


def test_client_certificates_put_external_first_in_the_default(tmp_path: Path) -> None:
    from tests.certgen import make_client

    cert_dir = tmp_path / "client"
    cert_dir.mkdir()
    cert, key = make_client(xmpp_addrs=("alice@localhost",)).write(cert_dir, "alice")
    srv = _serve_init_file(tmp_path, 'client_certificates = "wanted"\naccept_self_signed = true\n')
    try:
        srv.add_user("alice", "pencil-sharpener")
        client = RawClient(srv.starttls_port, srv.certificate, client_cert=(cert, key))
        try:
            assert client.connect().mechanisms == ["EXTERNAL", *DEFAULT]
            client.external()
            assert client.bind().startswith("alice@localhost/")
        finally:
            client.close()
        # Without a certificate, the same default list minus EXTERNAL.
        anonymous = RawClient(srv.starttls_port, srv.certificate)
        try:
            assert anonymous.connect().mechanisms == DEFAULT
        finally:
            anonymous.close()
    finally:
        assert srv.stop() == 0, srv.log_text()
