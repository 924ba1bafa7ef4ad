"""`remotehttp` on the real server against a real service: the seed's own example
PHP script (seed 003, Wowza's remote HTTP authentication), cut out of the seed
file at test time (never copied into the repository) and run by Debian's
php-cli built-in server.  Clients are curl --digest and requests.

The script knows cricket/stumps (groups admin,advUser) and guest/guest
(readOnly).  The password file (`chatgate admin-password`) knows cricket with
another password, read-only: so which one answered shows in what a login may do.
Then php is stopped (fallback to the file, condition `connect`) and started
again (the service answers again once `backup_retry`, 10 s, has passed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPDigestAuth

from tests.docblocks import ROOT
from tests.e2e.conftest import RunningServer, free_port
from tests.e2e.web import start_web_server

pytestmark = pytest.mark.e2e

SEED = "003_75243b538522041c.txt"
#: where the seeds are: beside the repository (../shared/seeds), or the shared checkout
SEED_DIRS = (ROOT.parent / "shared" / "seeds", Path("/work/shared/seeds"))
PHP = shutil.which("php")
CURL = "/usr/bin/curl"
RETRY = 10


def seed_script() -> str:
    for folder in SEED_DIRS:
        path = folder / SEED
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            start, end = text.index("<?php"), text.index("?>", text.index("<?php"))
            return text[start : end + 2]
    pytest.skip(f"seed {SEED} not found in {', '.join(map(str, SEED_DIRS))}")


class PhpService:
    """`php -S 127.0.0.1:PORT auth.php`, started and stopped by the test."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert PHP is not None
        self.process = subprocess.Popen(
            [PHP, "-S", f"127.0.0.1:{self.port}", "auth.php"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("php -S did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="module")
def php(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhpService]:
    if PHP is None:
        pytest.skip("php-cli is not installed (tests/install-system-deps.sh)")
    folder = tmp_path_factory.mktemp("php-service")
    (folder / "auth.php").write_text(seed_script())
    service = PhpService(folder, free_port())
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, php: PhpService) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("admin-remote")
    admin = f"""
[admin]
enabled = true
auth = ["remotehttp"]
realm = "Wowza"
password_encoding = "md5"

[admin.remotehttp]
url = "http://127.0.0.1:{php.port}/"
shared_secret = "MySharedSecretKey"
identity = "MyServerIDName"
backup_file = true
backup_conditions = ["connect"]
backup_retry = {RETRY}
"""
    # the file must exist before the server starts (build_chain checks it)
    (tmp / "admin.password").write_text("# made by chatgate admin-password below\n")
    srv = start_web_server(tmp, admin)
    added = srv.cli(
        "admin-password", "add", "cricket", "--group", "readOnly", "--password-stdin",
        stdin="file-password\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def url(server: RunningServer, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}/api/v1{path}"


def curl(user: str, password: str, target: str, *args: str) -> int:
    done = subprocess.run(
        [CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--digest",
         "-u", f"{user}:{password}", *args, target],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def create(server: RunningServer, user: str, password: str, account: str) -> int:
    body = f'{{"username": "{account}", "password": "a-long-enough-password"}}'
    return curl(
        user, password, url(server, "/accounts"),
        "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
    )  # fmt: skip


def test_the_service_answers_then_the_file_then_the_service_again(
    server: RunningServer, php: PhpService
) -> None:
    # the service: its challenge relayed, its groups used
    challenge = requests.get(url(server, "/stats"), timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith('Digest realm="Wowza",qop="auth"')
    assert curl("cricket", "stumps", url(server, "/stats")) == 200
    assert create(server, "cricket", "stumps", "ann") == 201  # admin,advUser
    assert curl("guest", "guest", url(server, "/stats")) == 200
    assert create(server, "guest", "guest", "bob") == 403  # readOnly
    assert curl("cricket", "file-password", url(server, "/stats")) == 401
    session = requests.Session()  # requests, too, through the relay (nonce reused, nc=2)
    session.auth = HTTPDigestAuth("cricket", "stumps")
    assert session.get(url(server, "/stats"), timeout=10).status_code == 200
    assert session.get(url(server, "/accounts"), timeout=10).status_code == 200

    # the service goes away: the file answers, with chatgate's own challenges
    php.stop()
    started = time.monotonic()
    assert curl("cricket", "file-password", url(server, "/stats")) == 200
    assert create(server, "cricket", "file-password", "cy") == 403  # the file's readOnly
    assert curl("cricket", "stumps", url(server, "/stats")) == 401
    assert "cannot be reached; using the password file for 10 s" in server.log_text()

    # back again: the file still answers until the retry period is over
    php.start()
    assert curl("cricket", "file-password", url(server, "/stats")) == 200
    time.sleep(max(0.0, started + RETRY + 0.5 - time.monotonic()))
    assert curl("cricket", "file-password", url(server, "/stats")) == 401
    assert create(server, "cricket", "stumps", "dora") == 201
    assert curl("guest", "guest", url(server, "/stats")) == 200
