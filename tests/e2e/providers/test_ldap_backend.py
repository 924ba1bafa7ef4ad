"""The ldap provider against Debian's slapd started by the test (its own cn=config in a temporary
folder), and against LDAP servers that are down or silent."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.auth.provider import ProviderUnavailable
from chatgate.sasl.base import Failure, Success
from chatgate.vocabulary.errors import SaslFailureCondition

from ..conftest import free_port
from . import slapd as slapd_helper
from .support import ALICE, DOMAIN, offered, plain_login, running

pytestmark = pytest.mark.e2e


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
