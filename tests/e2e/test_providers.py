"""Credential providers against real backends: an HTTP service, an extauth program, slapd.

Every backend is a separate process started here (`providers/`), reached over
real sockets and pipes, including when it is down, slow or broken.  The
providers are driven through the `CredentialProvider` interface and through
the SASL driver with the real PLAIN mechanism, which must turn an outage into
temporary-auth-failure (RFC 6120 §6.5.11), never into not-authorized.  The
last tests start `chatgate serve` with ``[auth.provider] name = "http"`` and
log in with slixmpp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.auth.extauth import ExtauthProtocolError, ExtauthProvider
from chatgate.auth.options import ProviderConfig
from chatgate.auth.provider import CredentialProvider
from chatgate.auth.registry import (
    ProviderContext,
    ProviderUnavailable,
    UnsupportedQuestion,
    build_provider,
    close_provider,
    start_provider,
)
from chatgate.sasl.base import ConnectionFacts, Failure, NeedCredentials, Success
from chatgate.sasl.driver import advance, answer_request
from chatgate.sasl.plain import PlainMechanism
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms
from chatgate.xmpp.errors import ConfigError, SaslFailureCondition

from .conftest import AuthenticationFailed, connect, free_port, start_server
from .providers import slapd as slapd_helper

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "providers"
AUTH_SERVICE = HERE / "auth_service.py"
EXTAUTH_PROGRAM = HERE / "extauth_program.py"
DOMAIN = "localhost"
TLS = ConnectionFacts(domain=DOMAIN, tls_active=True)
CONFIGURED = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
ALICE = "correct horse"


# --------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def running(data: dict[str, Any], tmp: Path) -> AsyncIterator[Any]:
    """Build the provider `data` configures (the `[auth.provider]` table), start it, close it."""
    context = ProviderContext(base_dir=tmp, data_dir=tmp / "var")
    provider = build_provider(ProviderConfig.model_validate(data), context)
    await start_provider(provider)
    try:
        yield provider
    finally:
        await close_provider(provider)


async def plain_login(provider: CredentialProvider, user: str, password: str) -> Any:
    """One PLAIN exchange through the real mechanism and the SASL driver."""
    mech = PlainMechanism(TLS)
    return await advance(mech, mech.start(f"\0{user}\0{password}".encode()), provider, DOMAIN)


def offered(provider: CredentialProvider) -> list[str]:
    return offered_mechanisms(
        CONFIGURED,
        builtin_mechanisms(load_entry_points=False),
        provider.offers,
        TLS,
        allow_plaintext_without_tls=False,
    )


def start_service(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, str(AUTH_SERVICE), *args], stdout=subprocess.PIPE, stderr=None
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("PORT "):
        process.kill()
        stop_process(process)
        raise RuntimeError(f"auth service did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def service_get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    process, base = start_service()
    yield base
    stop_process(process)


@pytest.fixture(scope="module")
def secret_service() -> Iterator[str]:
    process, base = start_service("--secret", "let-me-ask")
    yield base
    stop_process(process)


def http(url: str, **options: Any) -> dict[str, Any]:
    return {"name": "http", "http": {"url": url, **options}}


# ------------------------------------------------------------------------ http


@pytest.mark.parametrize(
    ("user", "password"), [("alice", ALICE), ("colon", "pa:ss:word"), ("ünï", "pässwörd")]
)
async def test_http_accepts_right_password(
    service: str, tmp_path: Path, user: str, password: str
) -> None:
    async with running(http(f"{service}/auth"), tmp_path) as provider:
        assert await provider.verify_password(user, DOMAIN, password) is True


async def test_http_sends_user_server_password_as_json(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/auth"), tmp_path) as provider:
        await provider.verify_password("colon", DOMAIN, "pa:ss:word")
    assert service_get(service, "/last") == {
        "user": "colon",
        "server": DOMAIN,
        "password": "pa:ss:word",
    }


@pytest.mark.parametrize("path", ["/auth", "/auth-401"])
async def test_http_rejects_wrong_password_and_unknown_user(
    service: str, tmp_path: Path, path: str
) -> None:
    async with running(http(service + path), tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, "wrong") is False
        assert await provider.verify_password("nobody", DOMAIN, ALICE) is False
        assert await provider.verify_password("alice", "example.org", ALICE) is False


async def test_http_caches_successes_but_not_failures(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/auth"), tmp_path) as provider:
        before = service_get(service, "/calls")
        assert await provider.verify_password("alice", DOMAIN, ALICE)
        assert await provider.verify_password("alice", DOMAIN, ALICE)
        assert service_get(service, "/calls") == before + 1
        assert not await provider.verify_password("alice", DOMAIN, "wrong")
        assert not await provider.verify_password("alice", DOMAIN, "wrong")
        assert service_get(service, "/calls") == before + 3


async def test_http_cache_off_asks_every_time(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/auth", cache_ttl=0), tmp_path) as provider:
        before = service_get(service, "/calls")
        assert await provider.verify_password("alice", DOMAIN, ALICE)
        assert await provider.verify_password("alice", DOMAIN, ALICE)
        assert service_get(service, "/calls") == before + 2


async def test_http_server_error_is_unavailable(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/error"), tmp_path) as provider:
        with pytest.raises(ProviderUnavailable, match="HTTP 500"):
            await provider.verify_password("alice", DOMAIN, ALICE)


async def test_http_slow_service_is_unavailable_after_timeout(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/slow", timeout=0.5), tmp_path) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.5s"):
            await provider.verify_password("alice", DOMAIN, ALICE)
        assert time.monotonic() - started < 5


async def test_http_service_down_is_unavailable(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/auth"
    async with running(http(down, timeout=2), tmp_path) as provider:
        with pytest.raises(ProviderUnavailable, match="ClientConnectorError"):
            await provider.verify_password("alice", DOMAIN, ALICE)


@pytest.mark.parametrize("path", ["/empty", "/text", "/redirect", "/big"])
async def test_http_reply_that_is_not_an_answer_is_unavailable(
    service: str, tmp_path: Path, path: str
) -> None:
    async with running(http(service + path), tmp_path) as provider:
        with pytest.raises(ProviderUnavailable):
            await provider.verify_password("alice", DOMAIN, ALICE)


async def test_http_user_exists_through_exists_url(service: str, tmp_path: Path) -> None:
    config = http(f"{service}/auth", exists_url=f"{service}/exists")
    async with running(config, tmp_path) as provider:
        assert await provider.user_exists("alice", DOMAIN) is True
        assert await provider.user_exists("nobody", DOMAIN) is False


async def test_http_user_exists_without_exists_url_is_unsupported(
    service: str, tmp_path: Path
) -> None:
    async with running(http(f"{service}/auth"), tmp_path) as provider:
        with pytest.raises(UnsupportedQuestion):
            await provider.user_exists("alice", DOMAIN)


async def test_http_secret_is_sent_as_bearer_token(secret_service: str, tmp_path: Path) -> None:
    async with running(http(f"{secret_service}/auth"), tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, ALICE) is False
    async with running(http(f"{secret_service}/auth", secret="let-me-ask"), tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True


async def test_http_provider_is_offered_plain_only(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/auth"), tmp_path) as provider:
        assert offered(provider) == ["PLAIN"]


async def test_http_plain_login_through_the_sasl_driver(service: str, tmp_path: Path) -> None:
    async with running(http(f"{service}/auth"), tmp_path) as provider:
        assert await plain_login(provider, "alice", ALICE) == Success("alice")
        wrong = await plain_login(provider, "alice", "wrong")
        assert isinstance(wrong, Failure)
        assert wrong.condition is SaslFailureCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("path", ["/error", "/slow", "/empty"])
async def test_http_outage_gives_temporary_auth_failure(
    service: str, tmp_path: Path, path: str
) -> None:
    async with running(http(service + path, timeout=0.5), tmp_path) as provider:
        result = await plain_login(provider, "alice", ALICE)
    assert isinstance(result, Failure)
    assert result.condition is SaslFailureCondition.TEMPORARY_AUTH_FAILURE


async def test_http_down_answer_request_reports_temporary_failure(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/auth"
    async with running(http(down), tmp_path) as provider:
        mech = PlainMechanism(TLS)
        request = mech.start(f"\0alice\0{ALICE}".encode())
        assert isinstance(request, NeedCredentials)
        answer = await answer_request(request, provider, DOMAIN)
    assert answer.temporary_failure is True and answer.verified is False


# --------------------------------------------------------------------- extauth


def extauth(tmp: Path, **options: Any) -> dict[str, Any]:
    command = [sys.executable, str(EXTAUTH_PROGRAM), "--log", str(tmp / "extauth.log")]
    return {"name": "extauth", "extauth": {"command": command, **options}}


def program_log(tmp: Path) -> list[list[str]]:
    path = tmp / "extauth.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


@pytest.mark.parametrize(
    ("user", "password"), [("alice", ALICE), ("colon", "pa:ss:word"), ("ünï", "pässwörd")]
)
async def test_extauth_accepts_right_password(tmp_path: Path, user: str, password: str) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert await provider.verify_password(user, DOMAIN, password) is True
    assert program_log(tmp_path)[0][1:] == ["auth", user, DOMAIN]


async def test_extauth_rejects_wrong_password_and_unknown_user(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, "wrong") is False
        assert await provider.verify_password("colon", DOMAIN, "pa:ss") is False
        assert await provider.verify_password("nobody", DOMAIN, ALICE) is False


async def test_extauth_isuser(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert await provider.user_exists("alice", DOMAIN) is True
        assert await provider.user_exists("nobody", DOMAIN) is False
    assert [entry[1] for entry in program_log(tmp_path)] == ["isuser", "isuser"]


async def test_extauth_setpass_changes_the_password(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert isinstance(provider, ExtauthProvider)
        assert await provider.set_password("alice", DOMAIN, "new:pass") is True
        assert await provider.verify_password("alice", DOMAIN, "new:pass") is True
        assert await provider.verify_password("alice", DOMAIN, ALICE) is False
        assert await provider.set_password("nobody", DOMAIN, "x") is False


async def test_extauth_program_dying_mid_request_is_unavailable_then_restarted(
    tmp_path: Path,
) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        first_pid = provider.pids[0]
        with pytest.raises(ProviderUnavailable, match="exited during a request"):
            await provider.verify_password("crash", DOMAIN, "x")
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert provider.pids[0] not in (None, first_pid)
    assert not is_running(first_pid)


async def test_extauth_program_dying_while_idle_is_restarted(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        first_pid = provider.pids[0]
        os.kill(first_pid, 9)
        while provider.pids[0] is not None:  # until the event loop has seen it go
            await asyncio.sleep(0.01)
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert provider.pids[0] not in (None, first_pid)


async def test_extauth_slow_program_is_killed_after_timeout_and_replaced(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, timeout=0.5, restart_delay=0.05), tmp_path) as provider:
        slow_pid = provider.pids[0]
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"did not answer within 0\.5s"):
            await provider.verify_password("slow", DOMAIN, "x")
        assert time.monotonic() - started < 5
        # The late answer must never be read as the answer to the next request.
        assert await provider.verify_password("alice", DOMAIN, "wrong") is False
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert provider.pids[0] != slow_pid
    assert not is_running(slow_pid)


async def test_extauth_garbage_answer_is_unavailable_then_restarted(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        with pytest.raises(ExtauthProtocolError, match="length 5"):
            await provider.verify_password("garbage", DOMAIN, "x")
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True


async def test_extauth_crashing_program_is_not_respawned_for_every_request(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    command = [
        sys.executable,
        "-c",
        f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(1)",
    ]
    config = {
        "name": "extauth",
        "extauth": {"command": command, "timeout": 0.5, "restart_delay": 5},
    }
    async with running(config, tmp_path) as provider:
        for _ in range(5):
            with pytest.raises(ProviderUnavailable):
                await provider.verify_password("alice", DOMAIN, ALICE)
    assert starts.read_text() == "x"  # started once; the restart waits 5 s


async def test_extauth_missing_program_stops_the_start(tmp_path: Path) -> None:
    config = {"name": "extauth", "extauth": {"command": [str(tmp_path / "no-such-program")]}}
    provider = build_provider(
        ProviderConfig.model_validate(config), ProviderContext(tmp_path, tmp_path)
    )
    with pytest.raises(ConfigError, match="cannot run"):
        await start_provider(provider)
    await close_provider(provider)


async def test_extauth_instances_answer_concurrently(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, instances=3), tmp_path) as provider:
        pids = set(provider.pids)
        assert len(pids) == 3
        results = await asyncio.gather(
            *(provider.verify_password("alice", DOMAIN, ALICE) for _ in range(30)),
            *(provider.verify_password("alice", DOMAIN, "wrong") for _ in range(30)),
        )
    assert results == [True] * 30 + [False] * 30
    assert {int(entry[0]) for entry in program_log(tmp_path)} <= pids


async def test_extauth_close_stops_the_programs(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, instances=2), tmp_path) as provider:
        pids = list(provider.pids)
    assert not any(is_running(pid) for pid in pids)


async def test_extauth_provider_is_offered_plain_only(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert offered(provider) == ["PLAIN"]


async def test_extauth_plain_login_and_outage_through_the_sasl_driver(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        assert await plain_login(provider, "alice", ALICE) == Success("alice")
        wrong = await plain_login(provider, "alice", "nope")
        assert isinstance(wrong, Failure)
        assert wrong.condition is SaslFailureCondition.NOT_AUTHORIZED
        crashed = await plain_login(provider, "crash", "x")
        assert isinstance(crashed, Failure)
        assert crashed.condition is SaslFailureCondition.TEMPORARY_AUTH_FAILURE


# ------------------------------------------------------------------------ ldap

SLAPD_MISSING = slapd_helper.missing_reason()
needs_slapd = pytest.mark.skipif(SLAPD_MISSING is not None, reason=SLAPD_MISSING or "")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slapd_helper.Slapd]:
    pytest.importorskip("ldap3", reason="the ldap provider needs ldap3 (pip install ldap3)")
    server = slapd_helper.start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


def ldap_template(uri: str, **options: Any) -> dict[str, Any]:
    template = f"uid={{user}},{slapd_helper.PEOPLE_DN}"
    return {"name": "ldap", "ldap": {"uri": uri, "bind_dn_template": template, **options}}


def ldap_search(uri: str, *, service_account: bool = True, **options: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"uri": uri, "base_dn": slapd_helper.BASE_DN, **options}
    if service_account:
        table |= {"bind_dn": slapd_helper.READER_DN, "bind_password": slapd_helper.READER_PASSWORD}
    return {"name": "ldap", "ldap": table}


@needs_slapd
@pytest.mark.parametrize("mode", ["template", "search", "anonymous-search"])
async def test_ldap_accepts_right_password(
    slapd: slapd_helper.Slapd, tmp_path: Path, mode: str
) -> None:
    config = {
        "template": ldap_template(slapd.uri),
        "search": ldap_search(slapd.uri),
        "anonymous-search": ldap_search(slapd.uri, service_account=False),
    }[mode]
    async with running(config, tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert await provider.verify_password("colon", DOMAIN, "pa:ss:word") is True
        assert await provider.verify_password("alice", DOMAIN, "wrong") is False
        assert await provider.verify_password("nobody", DOMAIN, ALICE) is False


@needs_slapd
@pytest.mark.parametrize("mode", ["template", "search"])
async def test_ldap_empty_password_fails_although_the_server_would_accept_it(
    slapd: slapd_helper.Slapd, tmp_path: Path, mode: str
) -> None:
    alice_dn = f"uid=alice,{slapd_helper.PEOPLE_DN}"
    # The server itself treats a DN with an empty password as a successful
    # (unauthenticated, RFC 4513 §5.1.2) bind:
    whoami = slapd.whoami(alice_dn, "")
    assert whoami.returncode == 0 and whoami.stdout.strip() == "anonymous"
    config = ldap_template(slapd.uri) if mode == "template" else ldap_search(slapd.uri)
    async with running(config, tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, "") is False
        result = await plain_login(provider, "alice", "")
    assert isinstance(result, Failure)


@needs_slapd
@pytest.mark.parametrize("user", ["*)(uid=*", "*", "alice)(uid=*", "al*"])
async def test_ldap_filter_injection_fails(
    slapd: slapd_helper.Slapd, tmp_path: Path, user: str
) -> None:
    async with running(ldap_search(slapd.uri), tmp_path) as provider:
        assert await provider.verify_password(user, DOMAIN, ALICE) is False
        assert await provider.user_exists(user, DOMAIN) is False


@needs_slapd
async def test_ldap_dn_injection_fails(slapd: slapd_helper.Slapd, tmp_path: Path) -> None:
    async with running(ldap_template(slapd.uri), tmp_path) as provider:
        assert await provider.verify_password("alice,ou=people", DOMAIN, ALICE) is False
        assert await provider.user_exists("alice,ou=people", DOMAIN) is False


@needs_slapd
@pytest.mark.parametrize("mode", ["template", "search"])
async def test_ldap_user_exists(slapd: slapd_helper.Slapd, tmp_path: Path, mode: str) -> None:
    config = ldap_template(slapd.uri) if mode == "template" else ldap_search(slapd.uri)
    async with running(config, tmp_path) as provider:
        assert await provider.user_exists("alice", DOMAIN) is True
        assert await provider.user_exists("nobody", DOMAIN) is False


@needs_slapd
async def test_ldap_filter_matching_two_entries_is_unavailable(
    slapd: slapd_helper.Slapd, tmp_path: Path
) -> None:
    async with running(ldap_search(slapd.uri), tmp_path) as provider:
        with pytest.raises(ProviderUnavailable, match="more than one entry"):
            await provider.verify_password("twin", DOMAIN, "twin")


@needs_slapd
async def test_ldap_wrong_service_password_is_unavailable(
    slapd: slapd_helper.Slapd, tmp_path: Path
) -> None:
    config = ldap_search(slapd.uri)
    config["ldap"]["bind_password"] = "not-the-reader-password"
    async with running(config, tmp_path) as provider:
        with pytest.raises(ProviderUnavailable, match="service account"):
            await provider.verify_password("alice", DOMAIN, ALICE)


@needs_slapd
async def test_ldap_provider_is_offered_plain_only(
    slapd: slapd_helper.Slapd, tmp_path: Path
) -> None:
    async with running(ldap_template(slapd.uri), tmp_path) as provider:
        assert offered(provider) == ["PLAIN"]
        assert await plain_login(provider, "alice", ALICE) == Success("alice")


async def test_ldap_server_down_is_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("ldap3")
    config = ldap_template(f"ldap://127.0.0.1:{free_port()}", timeout=2)
    async with running(config, tmp_path) as provider:
        with pytest.raises(ProviderUnavailable):
            await provider.verify_password("alice", DOMAIN, ALICE)
        result = await plain_login(provider, "alice", ALICE)
    assert isinstance(result, Failure)
    assert result.condition is SaslFailureCondition.TEMPORARY_AUTH_FAILURE


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says anything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


async def test_ldap_slow_server_is_unavailable_after_timeout(
    tmp_path: Path, silent_server: int
) -> None:
    pytest.importorskip("ldap3")
    config = ldap_template(f"ldap://127.0.0.1:{silent_server}", timeout=0.5)
    async with running(config, tmp_path) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"within 0\.5s"):
            await provider.verify_password("alice", DOMAIN, ALICE)
        assert time.monotonic() - started < 5


# ------------------------------------------------- the real server, with slixmpp


def http_provider_toml(url: str) -> str:
    # `start_server` appends this after the [auth] table's keys.
    return f"""
[auth.provider]
name = "http"

[auth.provider.http]
url = "{url}"
timeout = 2.0
"""


async def test_server_logs_in_with_the_http_provider(service: str, tmp_path: Path) -> None:
    """Needs `[auth.provider]` wired into config.py and server.py."""
    server = start_server(tmp_path, extra=http_provider_toml(f"{service}/auth"))
    try:
        client = await connect(server, "alice@localhost/e2e", ALICE, send_presence=False)
        try:
            assert str(client.boundjid) == "alice@localhost/e2e"
            await client.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        finally:
            await asyncio.wait_for(client.disconnect(), 5)
        with pytest.raises(AuthenticationFailed) as wrong:
            await connect(server, "alice@localhost/x", "wrong", send_presence=False)
        assert wrong.value.condition == "not-authorized"
        # SCRAM is not offered: the service cannot give SCRAM keys.
        with pytest.raises(AuthenticationFailed):
            await connect(
                server, "alice@localhost/x", ALICE, mechanism="SCRAM-SHA-256", send_presence=False
            )
    finally:
        code = server.stop()
    assert code == 0, server.log_text()
    assert "alice@localhost authenticated with PLAIN" in server.log_text()


async def test_server_answers_temporary_auth_failure_when_the_service_is_down(
    tmp_path: Path,
) -> None:
    """Needs `[auth.provider]` wired into config.py and server.py."""
    down = f"http://127.0.0.1:{free_port()}/auth"
    server = start_server(tmp_path, extra=http_provider_toml(down))
    try:
        with pytest.raises(AuthenticationFailed) as failure:
            await connect(server, "alice@localhost/x", ALICE, send_presence=False)
        assert failure.value.condition == "temporary-auth-failure"
    finally:
        server.stop()
