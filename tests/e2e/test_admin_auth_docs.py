"""docs/admin.md as an operator follows it: each method's `toml` block is the
server's configuration, and its shell blocks run as documented (bash, the
`chatgate` of this checkout, curl), against the real server (and, for
`remotehttp`, the seed's PHP script).  Only the port is changed: the page's
``127.0.0.1:5280`` (and the service's ``8086``) become the test's free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docblocks import blocks, shell_block
from tests.e2e.conftest import RunningServer, free_port
from tests.e2e.test_admin_auth_remote import PHP, PhpService, seed_script
from tests.e2e.web import start_web_server

pytestmark = pytest.mark.e2e

PAGE = "docs/admin.md"


def config_block(marker: str) -> str:
    """The page's first `toml` block containing `marker` (the method's own section)."""
    found = [b.text for b in blocks("toml") if b.page == PAGE and marker in b.text]
    assert found, f"{PAGE}: no toml block with {marker!r}"
    return found[0]


def run_block(server: RunningServer, name: str, **replace: str) -> str:
    """Run the page's shell block `name` with bash (-e, pipefail); returns its output."""
    text = shell_block(PAGE, name).text.replace("127.0.0.1:5280", f"127.0.0.1:{server.http_port}")
    for old, new in replace.items():
        text = text.replace(old, new)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "CHATGATE_CONFIG": str(server.config),
    }
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", text],
        cwd=server.config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        assert server.stop() == 0, server.log_text()
        assert "Traceback" not in server.log_text(), server.log_text()


def serve(tmp_path: Path, started: list[RunningServer], config: str) -> RunningServer:
    server = start_web_server(tmp_path, config)
    started.append(server)
    return server


def curl_status(server: RunningServer, *args: str) -> int:
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return int(done.stdout)


def test_administrators_basic_and_bearer(tmp_path: Path, started: list[RunningServer]) -> None:
    server = serve(tmp_path, started, config_block('auth = ["basic", "bearer"]'))
    listed = run_block(server, "admin-users")
    assert "root" in listed and "viewer" in listed
    run_block(server, "basic-curl")
    url = f"http://127.0.0.1:{server.http_port}/api/v1/accounts"
    body = '{"username": "zed", "password": "a-long-enough-password"}'
    post = ("-X", "POST", "-H", "Content-Type: application/json", "-d", body, url)
    assert curl_status(server, "-u", "viewer:a-long-viewer-password", *post) == 403
    assert curl_status(server, "-u", "root:a-long-admin-password", *post) == 201
    listed = run_block(server, "bearer")
    assert "1 token(s)" in listed  # the list, before the revocation
    assert "revoked" in listed


def test_digest(tmp_path: Path, started: list[RunningServer]) -> None:
    server = serve(tmp_path, started, config_block('auth = ["digest", "bearer"]'))
    run_block(server, "admin-users")
    run_block(server, "digest-curl")
    assert "root authenticated with digest" in server.log_text()


def test_digestfile(tmp_path: Path, started: list[RunningServer]) -> None:
    (tmp_path / "admin.password").write_text("")  # it must exist at start
    server = serve(tmp_path, started, config_block('auth = ["digestfile", "bearer"]'))
    run_block(server, "digestfile")
    line = "solomio 43c27fa10ce3ea64d60735c79e9f1c4f admin,advUser"
    assert line in (tmp_path / "admin.password").read_text()  # the page's (and Wowza's) line


def test_remotehttp(tmp_path: Path, started: list[RunningServer]) -> None:
    if PHP is None:
        pytest.skip("php-cli is not installed (tests/install-system-deps.sh)")
    folder = tmp_path / "service"
    folder.mkdir()
    (folder / "auth.php").write_text(seed_script())
    php = PhpService(folder, free_port())
    php.start()
    try:
        (tmp_path / "admin.password").write_text("")  # backup_file = true: read at start
        config = config_block('auth = ["remotehttp", "bearer"]')
        server = serve(tmp_path, started, config.replace(":8086/", f":{php.port}/"))
        run_block(server, "remotehttp")
    finally:
        php.stop()


def test_none(tmp_path: Path, started: list[RunningServer]) -> None:
    server = serve(tmp_path, started, config_block('auth = ["none"]'))
    run_block(server, "none")
    assert "AUTHENTICATION IS OFF" in server.log_text()
