"""A third-party SASL mechanism installed for real: examples/sasl-plugin (OAUTHBEARER).

pip builds and installs the example package into a temporary directory, never
into the virtualenv, and the server finds it through PYTHONPATH, the way it
finds any installed distribution: by its entry point in
``chatgate.sasl_mechanisms``.  No packaged client speaks OAUTHBEARER, so the
client is the raw socket client with messages built from RFC 7628 §3.1.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer, start_server
from tests.e2e.rawclient import HEADER, Features, LoginFailed, RawClient

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sasl-plugin"
TOKEN = "tok3n-of-juliet"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip into a directory of its own (offline: the build
    backend, setuptools, comes from the test dependencies)."""
    tmp = tmp_path_factory.mktemp("sasl-plugin")
    source = tmp / "source"  # a copy: building writes build/ and *.egg-info next to it
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = tmp / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _env(plugin_path: Path) -> dict[str, str]:
    paths = [str(plugin_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def server(plugin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(
        tmp_path_factory.mktemp("chatgate"),
        'mechanisms = ["SCRAM-SHA-256", "OAUTHBEARER"]\n',
        env=_env(plugin_path),
    )
    srv.add_user("juliet", TOKEN)
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


def _message(authzid: str, token: str) -> bytes:
    # RFC 7628 §3.1: gs2-header kvsep *kvpair kvsep, as in its §4.1 example.
    return f"n,a={authzid},\x01host=localhost\x01port=5222\x01auth=Bearer {token}\x01\x01".encode()


def _client(server: RunningServer, *, direct_tls: bool = False) -> RawClient:
    port = server.direct_tls_port if direct_tls else server.starttls_port
    client = RawClient(port, server.certificate, direct_tls=direct_tls)
    client.connect()
    return client


def test_example_is_installed_beside_not_into_the_virtualenv(plugin_path: Path) -> None:
    (dist_info,) = plugin_path.glob("chatgate_sasl_oauthbearer-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert "[chatgate.sasl_mechanisms]" in entry_points
    assert "OAUTHBEARER = chatgate_sasl_oauthbearer:OAuthBearerMechanism" in entry_points
    installed = importlib.metadata.entry_points(group="chatgate.sasl_mechanisms")
    assert "OAUTHBEARER" not in installed.names


def test_chatgate_check_lists_the_plugin_mechanism(server: RunningServer) -> None:
    result = server.cli("check")
    assert result.returncode == 0, result.stderr
    assert "sasl: SCRAM-SHA-256, OAUTHBEARER" in " ".join(result.stdout.split())


def test_chatgate_check_without_the_plugin_rejects_the_name(server: RunningServer) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "chatgate", "check", "--config", str(server.config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    assert "unknown SASL mechanism(s) 'OAUTHBEARER'" in " ".join(result.stderr.split())


def test_oauthbearer_is_advertised_after_tls_only(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.plain_port), timeout=10) as sock:
        sock.sendall(HEADER.encode())
        data = b""
        while b"</stream:features>" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    # A bearer token is a plaintext secret: not before TLS (RFC 7628 §3).
    assert Features.parse(data.decode()).mechanisms == ["SCRAM-SHA-256"]
    client = _client(server)
    try:
        assert client.features.mechanisms == ["SCRAM-SHA-256", "OAUTHBEARER"]
    finally:
        client.close()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_oauthbearer_login(server: RunningServer, direct_tls: bool) -> None:
    client = _client(server, direct_tls=direct_tls)
    try:
        assert client.sasl("OAUTHBEARER", _message("juliet@localhost", TOKEN)) == ("success", b"")
        assert client.bind().startswith("juliet@localhost/")
    finally:
        client.close()
    assert "juliet@localhost authenticated with OAUTHBEARER" in server.log_text()


@pytest.mark.parametrize(
    ("authzid", "token"),
    [("juliet@localhost", "wr0ng"), ("romeo@localhost", TOKEN)],
    ids=["wrong-token", "unknown-user"],
)
def test_oauthbearer_refused_token_is_not_authorized(
    server: RunningServer, authzid: str, token: str
) -> None:
    client = _client(server)
    try:
        kind, error = client.sasl("OAUTHBEARER", _message(authzid, token))
        assert kind == "challenge"  # RFC 7628 §3.2.2: the error result
        assert json.loads(error) == {"status": "invalid_token"}
        with pytest.raises(LoginFailed) as failed:
            client.sasl_response(b"\x01")  # §3.2.3
        assert failed.value.condition == "not-authorized"
    finally:
        client.close()
    user = authzid.split("@")[0]
    assert (
        f"authentication failed: mechanism=OAUTHBEARER condition=not-authorized user={user}"
        in server.log_text()
    )


def test_oauthbearer_malformed_message_is_malformed_request(server: RunningServer) -> None:
    client = _client(server)
    try:
        with pytest.raises(LoginFailed) as failed:
            client.sasl("OAUTHBEARER", b"n,,\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01")
        assert failed.value.condition == "malformed-request"
        # The stream stays usable: the next attempt logs in.
        assert client.sasl("OAUTHBEARER", _message("juliet@localhost", TOKEN))[0] == "success"
    finally:
        client.close()


def test_rfc7628_example_for_another_domain_is_invalid_authzid(server: RunningServer) -> None:
    # RFC 7628 §4.1's message names user@example.com: another domain than this server's.
    message = base64.b64decode(
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9"
        "QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )
    client = _client(server)
    try:
        with pytest.raises(LoginFailed) as failed:
            client.sasl("OAUTHBEARER", message)
        assert failed.value.condition == "invalid-authzid"
    finally:
        client.close()
