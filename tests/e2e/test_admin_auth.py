"""The admin routes' authentication on the real server (`chatgate serve`), with
clients nobody here wrote: curl (`--digest`, `-u`, bearer headers) and requests'
HTTPDigestAuth; administrators, tokens and the password file made with the
`chatgate admin` commands.  Group permissions (readOnly cannot write),
brute-force protection (held failures, then 429), and `remotehttp` is
`test_admin_auth_remote.py`'s."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest
import requests
from requests.auth import HTTPDigestAuth

from tests.e2e.conftest import RunningServer
from tests.e2e.web import start_web_server

pytestmark = pytest.mark.e2e

CURL = "/usr/bin/curl"
ADMIN = """
trusted_proxies = ["127.0.0.1"]

[admin]
enabled = true
auth = ["basic", "digest", "bearer"]
"""
THROTTLE = """
[auth.throttle.address]
free_failures = 2
base_delay = 2.0
max_delay = 2.0
max_in_flight_per_account = 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_web_server(tmp_path_factory.mktemp("admin-auth"), ADMIN, auth=THROTTLE)
    for name, group in (("root", "admin"), ("watcher", "readOnly")):
        done = srv.cli(
            "admin", "user", "add", name, "--group", group, "--password-stdin",
            stdin=f"{name}-password-1\n",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def url(server: RunningServer, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}/api/v1{path}"


def curl(*args: str) -> tuple[int, str]:
    """(HTTP status, body) of one curl run."""
    done = subprocess.run(
        [CURL, "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def new_account(name: str) -> tuple[str, ...]:
    body = f'{{"username": "{name}", "password": "a-long-enough-password"}}'
    return ("-X", "POST", "-H", "Content-Type: application/json", "-d", body)


def test_curl_digest(server: RunningServer) -> None:
    status, body = curl("--digest", "-u", "root:root-password-1", url(server, "/stats"))
    assert status == 200, body
    status, body = curl("--digest", "-u", "root:wrong", url(server, "/stats"))
    assert status == 401
    status, body = curl(
        "--digest", "-u", "root:root-password-1", *new_account("dora"), url(server, "/accounts")
    )
    assert status == 201, body
    status, body = curl(
        "--digest",
        "-u",
        "watcher:watcher-password-1",
        *new_account("eve"),
        url(server, "/accounts"),
    )
    assert status == 403, body  # readOnly cannot write
    assert '"code":"forbidden"' in body.replace(" ", "")
    log = server.log_text()
    assert "root authenticated with digest" in log


def test_curl_digest_uses_the_first_challenge_sha256(server: RunningServer) -> None:
    done = subprocess.run(
        [CURL, "-sv", "-o", "/dev/null", "--digest", "-u", "root:root-password-1", url(server, "/stats")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    sent = [line for line in done.stderr.splitlines() if line.startswith("> Authorization: Digest")]
    assert sent and "algorithm=SHA-256" in sent[0]


def test_requests_http_digest_auth(server: RunningServer) -> None:
    session = requests.Session()
    session.auth = HTTPDigestAuth("root", "root-password-1")
    first = session.get(url(server, "/stats"), timeout=10)
    assert first.status_code == 200
    assert 'algorithm="MD5"' in first.request.headers["Authorization"]  # the last challenge
    again = session.get(url(server, "/accounts"), timeout=10)  # the same nonce, nc=2
    assert again.status_code == 200 and again.history == []
    assert "nc=00000002" in again.request.headers["Authorization"]
    watcher = requests.post(
        url(server, "/accounts"),
        json={"username": "fred", "password": "a-long-enough-password"},
        auth=HTTPDigestAuth("watcher", "watcher-password-1"),
        timeout=10,
    )
    assert watcher.status_code == 403


def test_basic_and_bearer(server: RunningServer) -> None:
    assert curl("-u", "root:root-password-1", url(server, "/stats"))[0] == 200
    assert (
        curl("-u", "watcher:watcher-password-1", *new_account("gina"), url(server, "/accounts"))[0]
        == 403
    )
    made = server.cli(
        "admin", "token", "create", "--label", "ci", "--group", "readOnly", "--expires", "1h"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    bearer = ("-H", f"Authorization: Bearer {token}")
    assert curl(*bearer, url(server, "/stats"))[0] == 200
    assert curl(*bearer, *new_account("hank"), url(server, "/accounts"))[0] == 403
    token_id = token.split("_")[1]
    assert server.cli("admin", "token", "revoke", token_id).returncode == 0
    assert curl(*bearer, url(server, "/stats"))[0] == 401


def test_no_credentials_get_every_challenge(server: RunningServer) -> None:
    answer = requests.get(url(server, "/stats"), timeout=10)
    assert answer.status_code == 401
    challenges = answer.raw.headers.getlist("WWW-Authenticate")
    assert [c.split()[0] for c in challenges] == ["Basic", "Digest", "Digest", "Bearer"]


async def test_repeated_failures_are_held_then_refused_429(server: RunningServer) -> None:
    target = url(server, "/stats")

    async def wrong(session: aiohttp.ClientSession, n: int) -> tuple[int, str | None]:
        auth = aiohttp.encode_basic_auth("root", f"guess-{n}")
        async with session.get(target, headers={"Authorization": auth}) as r:
            return r.status, r.headers.get("Retry-After")

    async with aiohttp.ClientSession() as session:
        assert (await wrong(session, 1))[0] == 401  # free failures
        assert (await wrong(session, 2))[0] == 401
        loop = asyncio.get_running_loop()
        started = loop.time()
        held = asyncio.create_task(wrong(session, 3))  # held 2 s, its slot taken
        await asyncio.sleep(0.5)
        status, retry_after = await wrong(session, 4)
        assert status == 429
        assert retry_after is not None and int(retry_after) >= 1
        assert (await held)[0] == 401
        assert loop.time() - started >= 1.8
        await asyncio.sleep(2.5)  # the hold is over: the owner's right password is answered
        ok = aiohttp.encode_basic_auth("root", "root-password-1")
        async with session.get(target, headers={"Authorization": ok}) as r:
            assert r.status == 200
    assert "brute-force protection" in server.log_text()


def test_credentials_over_plain_http_from_afar_are_refused(server: RunningServer) -> None:
    # a client elsewhere, through a trusted proxy, without TLS
    afar = ("-H", "X-Forwarded-For: 192.0.2.44")
    status, body = curl(*afar, "-u", "root:root-password-1", url(server, "/stats"))
    assert status == 403 and "HTTPS" in body
    status, _ = curl(*afar, "--digest", "-u", "root:root-password-1", url(server, "/stats"))
    assert status == 403
    assert "credentials over plain HTTP from 192.0.2.44 refused" in server.log_text()
