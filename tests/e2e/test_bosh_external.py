"""SASL EXTERNAL over BOSH over HTTPS (XEP-0178 on XEP-0206): a client certificate
with id-on-xmppAddr, no password.  The seed's use case: passwordless web login with
a TLS client certificate over BOSH.  Under `needed`, a client without a certificate
fails cleanly at the TLS step."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.certgen import make_ca, make_client
from tests.e2e.conftest import RunningServer
from tests.e2e.web import BoshClient, start_web_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ca_and_alice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca()
    ca_path, _ = ca.write(folder, "ca")
    alice = make_client(xmpp_addrs=("alice@localhost",), issuer=ca).write(folder, "alice")
    return ca_path, alice


def _server(tmp: Path, ca: Path, policy: str) -> RunningServer:
    server = start_web_server(
        tmp,
        f'client_certificates = "{policy}"\n',
        auth='mechanisms = ["EXTERNAL", "SCRAM-SHA-1"]\n',
        tls=f'client_certificates = "wanted"\ntrust_files = ["{ca}"]\n',
        https=True,
    )
    server.add_user("alice", "alice-password-1")
    return server


@pytest.fixture(scope="module", params=["wanted", "needed"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    ca_and_alice: tuple[Path, tuple[Path, Path]],
) -> Iterator[RunningServer]:
    srv = _server(tmp_path_factory.mktemp(request.param), ca_and_alice[0], request.param)
    yield srv
    assert srv.stop() == 0
    assert "Traceback" not in srv.log_text(), srv.log_text()


def _tls(server: RunningServer, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.certificate))
    if client is not None:
        context.load_cert_chain(*map(str, client))
    return context


async def test_external_over_bosh_over_https_without_a_password(
    server: RunningServer, ca_and_alice: tuple[Path, tuple[Path, Path]]
) -> None:
    url = f"https://localhost:{server.https_port}/http-bind"
    async with BoshClient(url, ssl=_tls(server, ca_and_alice[1])) as alice:
        features = await alice.open()
        assert "secure='true'" in features or 'secure="true"' in features, features
        assert "<mechanism>EXTERNAL</mechanism>" in features, features
        success = await alice.request(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>"
        )
        if "<success" not in success:
            success = await alice.recv_until("<success")
        assert (await alice.bind("cert")) == "alice@localhost/cert"
    assert "alice@localhost authenticated with EXTERNAL over bosh (TLSv1.3)" in server.log_text()


async def test_without_a_certificate(server: RunningServer) -> None:
    url = f"https://localhost:{server.https_port}/http-bind"
    policy = "needed" if "needed" in str(server.config) else "wanted"
    if policy == "needed":
        # refused in the TLS handshake: no HTTP exchange at all
        async with BoshClient(url, ssl=_tls(server, None)) as client:
            with pytest.raises(aiohttp.ClientError):
                await client.open()
        assert re.search(r"did not return a certificate|TLS failed", server.log_text())
    else:
        # wanted: the session opens, EXTERNAL is not offered, a password still works
        async with BoshClient(url, ssl=_tls(server, None)) as bob:
            features = await bob.open()
            assert "<mechanism>EXTERNAL</mechanism>" not in features, features
        async with BoshClient(url, ssl=_tls(server, None)) as alice:
            await alice.login("alice", "alice-password-1")
            assert (await alice.bind("pw")) == "alice@localhost/pw"
