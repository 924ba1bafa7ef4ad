"""TLS 1.2 cipher suites of a default server (issue 9, item 15), on both TLS ports.

Only ECDHE with AES-GCM or ChaCha20-Poly1305 is accepted; a client that offers
nothing but CBC suites (ECDHE-ECDSA with SHA-1, SHA-256 or SHA-384 MACs, which
the server used to accept) fails the handshake.  The client is the standard
library's `ssl`, restricted with `set_ciphers`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.rawclient import RawClient

pytestmark = pytest.mark.e2e

CBC_SUITES = [
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
]
AEAD_SUITES = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
]


class _SuiteClient(RawClient):
    """`RawClient` speaking TLS 1.2 with exactly one cipher suite."""

    def __init__(self, port: int, ca: Path, suite: str, *, direct_tls: bool) -> None:
        super().__init__(port, ca, direct_tls=direct_tls)
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(suite)
        self.context = ctx

    def _wrap(self) -> None:
        assert self.sock is not None and not isinstance(self.sock, ssl.SSLSocket)
        self.sock = self.context.wrap_socket(self.sock, server_hostname="localhost")


def _client(server: RunningServer, suite: str, direct: bool) -> _SuiteClient:
    port = server.direct_tls_port if direct else server.starttls_port
    return _SuiteClient(port, server.certificate, suite, direct_tls=direct)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
@pytest.mark.parametrize("suite", CBC_SUITES)
def test_tls12_cbc_suite_fails_the_handshake(
    server: RunningServer, suite: str, direct: bool
) -> None:
    client = _client(server, suite, direct)
    try:
        with pytest.raises(ssl.SSLError) as failed:
            client.connect()
        assert failed.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    finally:
        client.close()
    assert "no shared cipher" in server.log_text()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
@pytest.mark.parametrize("suite", AEAD_SUITES)
def test_tls12_aead_suite_connects(server: RunningServer, suite: str, direct: bool) -> None:
    client = _client(server, suite, direct)
    try:
        features = client.connect()
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.cipher()[0] == suite
        assert client.sock.version() == "TLSv1.2"
        assert "SCRAM-SHA-256" in features.mechanisms
    finally:
        client.close()
