"""EXTERNAL with TLS client certificates (XEP-0178), end to end, on direct TLS and STARTTLS.

Certificates are made in the test (`tests/certgen.py`, with id-on-xmppAddr).
Clients: slixmpp (its EXTERNAL and `certfile`/`keyfile`) and `rawclient` for
what slixmpp cannot send (an authzid) or must not (no certificate at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from OpenSSL import SSL

from tests.certgen import make_ca, make_client
from tests.e2e.conftest import AuthenticationFailed, Client, RunningServer
from tests.e2e.rawclient import LoginFailed, RawClient, start_tls_server

pytestmark = pytest.mark.e2e

MECHANISMS = ["EXTERNAL", "SCRAM-SHA-256", "PLAIN"]


@dataclass
class Certs:
    ca: Path
    alice: tuple[Path, Path]
    both: tuple[Path, Path]  # names alice and bob
    carol: tuple[Path, Path]  # no account
    revoked: tuple[Path, Path]
    self_signed: tuple[Path, Path]
    revoked_fingerprint: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca()
    ca_path, _ = ca.write(folder, "ca")
    revoked = make_client(xmpp_addrs=("alice@localhost",), issuer=ca)
    return Certs(
        ca=ca_path,
        alice=make_client(xmpp_addrs=("alice@localhost",), issuer=ca).write(folder, "alice"),
        both=make_client(xmpp_addrs=("alice@localhost", "bob@localhost"), issuer=ca).write(
            folder, "both"
        ),
        carol=make_client(xmpp_addrs=("carol@localhost",), issuer=ca).write(folder, "carol"),
        revoked=revoked.write(folder, "revoked"),
        self_signed=make_client(xmpp_addrs=("alice@localhost",)).write(folder, "self"),
        revoked_fingerprint=revoked.fingerprint,
    )


def _serve(tmp: pytest.TempPathFactory, certs: Certs, policy: str) -> Iterator[RunningServer]:
    tls = (
        f'client_certificates = "{policy}"\n'
        f'trust_files = ["{certs.ca}"]\n'
        f'revoked_fingerprints = ["{certs.revoked_fingerprint}"]\n'
    )
    srv = start_tls_server(tmp.mktemp(policy), mechanisms=MECHANISMS, tls=tls)
    srv.add_user("alice", "pencil-case")
    srv.add_user("bob", "pencil-case")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory, certs, "wanted")


@pytest.fixture(scope="module")
def strict_server(
    tmp_path_factory: pytest.TempPathFactory, certs: Certs
) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory, certs, "needed")


async def _slixmpp_login(
    server: RunningServer, jid: str, cert: tuple[Path, Path], *, direct: bool
) -> Client:
    """slixmpp with a client certificate, choosing EXTERNAL."""
    client = Client(jid, "", mechanism="EXTERNAL")
    client.ca_certs = server.certificate
    client.certfile, client.keyfile = str(cert[0]), str(cert[1])
    client.enable_plaintext = False
    client.enable_starttls = not direct
    client.enable_direct_tls = direct
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()

    def done(value: str) -> None:
        if not outcome.done():
            outcome.set_result(value)

    client.add_event_handler("session_start", lambda _e: done("ok"))
    client.add_event_handler("failed_all_auth", lambda _e: done("failed"))
    client.add_event_handler("failed_auth", lambda e: setattr(client, "auth_failure", e))
    client.add_event_handler("disconnected", lambda _e: done("disconnected"))
    client.connect("127.0.0.1", server.direct_tls_port if direct else server.starttls_port)
    result = await asyncio.wait_for(outcome, 15)
    if result != "ok":
        failure = getattr(client, "auth_failure", None)
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise AuthenticationFailed(str(failure["condition"] if failure is not None else result))
    return client


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
async def test_slixmpp_logs_in_with_external_and_a_client_certificate(
    server: RunningServer, certs: Certs, direct: bool
) -> None:
    client = await _slixmpp_login(server, "alice@localhost", certs.alice, direct=direct)
    try:
        assert client.boundjid.bare == "alice@localhost"
    finally:
        await asyncio.wait_for(client.disconnect(), 5)
    assert "alice@localhost authenticated with EXTERNAL" in server.log_text()


def _raw(
    server: RunningServer, cert: tuple[Path, Path] | None, *, direct: bool = False
) -> RawClient:
    port = server.direct_tls_port if direct else server.starttls_port
    client = RawClient(port, server.certificate, direct_tls=direct, client_cert=cert)
    client.connect()
    return client


def test_external_is_offered_only_with_a_trusted_certificate(
    server: RunningServer, certs: Certs
) -> None:
    for cert, offered in (
        (certs.alice, True),
        (None, False),
        (certs.self_signed, False),  # accept_self_signed is off
        (certs.revoked, False),
    ):
        client = _raw(server, cert)
        try:
            assert ("EXTERNAL" in client.features.mechanisms) is offered, cert
            assert "SCRAM-SHA-256" in client.features.mechanisms
        finally:
            client.close()


def test_untrusted_certificate_still_logs_in_with_a_password(
    server: RunningServer, certs: Certs
) -> None:
    client = _raw(server, certs.self_signed)
    try:
        client.scram("SCRAM-SHA-256", "alice", "pencil-case")
        assert client.bind().startswith("alice@localhost/")
    finally:
        client.close()


def test_certificate_naming_two_jids_needs_an_authzid(server: RunningServer, certs: Certs) -> None:
    client = _raw(server, certs.both, direct=True)
    try:
        with pytest.raises(LoginFailed) as failed:
            client.external()
        assert failed.value.condition == "invalid-authzid"
        client.external("bob@localhost")
        assert client.bind().startswith("bob@localhost/")
    finally:
        client.close()


def test_authzid_not_in_the_certificate_is_refused(server: RunningServer, certs: Certs) -> None:
    client = _raw(server, certs.alice)
    try:
        with pytest.raises(LoginFailed) as failed:
            client.external("bob@localhost")
        assert failed.value.condition == "invalid-authzid"
    finally:
        client.close()


def test_certificate_of_a_jid_without_account_is_refused(
    server: RunningServer, certs: Certs
) -> None:
    client = _raw(server, certs.carol)
    try:
        with pytest.raises(LoginFailed) as failed:
            client.external()
        assert failed.value.condition == "not-authorized"
    finally:
        client.close()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
def test_needed_policy_refuses_a_connection_without_certificate(
    strict_server: RunningServer, direct: bool
) -> None:
    client = RawClient(
        strict_server.direct_tls_port if direct else strict_server.starttls_port,
        strict_server.certificate,
        direct_tls=direct,
    )
    # TLS 1.3: the client's handshake ends before the server's verdict, so the
    # refusal (alert "certificate required") arrives at the first read.
    with pytest.raises((ssl.SSLError, SSL.Error, ConnectionError)):
        client.connect()
        client.scram("SCRAM-SHA-256", "alice", "pencil-case")
    client.close()
    assert "TLS handshake failed" in strict_server.log_text()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "starttls"])
async def test_needed_policy_admits_a_trusted_certificate(
    strict_server: RunningServer, certs: Certs, direct: bool
) -> None:
    client = await _slixmpp_login(strict_server, "alice@localhost", certs.alice, direct=direct)
    await asyncio.wait_for(client.disconnect(), 5)


def test_needed_policy_refuses_a_revoked_certificate(
    strict_server: RunningServer, certs: Certs
) -> None:
    client = RawClient(
        strict_server.starttls_port, strict_server.certificate, client_cert=certs.revoked
    )
    with pytest.raises((ssl.SSLError, SSL.Error, ConnectionError)):
        client.connect()
        client.external()
    client.close()


async def test_auto_provisioning_creates_the_account_of_a_new_certificate_identity(
    tmp_path_factory: pytest.TempPathFactory, certs: Certs
) -> None:
    tls = f'client_certificates = "wanted"\ntrust_files = ["{certs.ca}"]\nauto_provision = true\n'
    srv = start_tls_server(tmp_path_factory.mktemp("provision"), mechanisms=MECHANISMS, tls=tls)
    try:
        assert "carol@localhost" not in srv.cli("user", "list").stdout
        client = await _slixmpp_login(srv, "carol@localhost", certs.carol, direct=True)
        try:
            assert client.boundjid.bare == "carol@localhost"
            await client.get_roster()  # a provisioned account has a working roster
        finally:
            await asyncio.wait_for(client.disconnect(), 5)
        assert "carol@localhost" in srv.cli("user", "list").stdout
        assert "auto-provisioned carol@localhost" in srv.log_text()
    finally:
        assert srv.stop() == 0
