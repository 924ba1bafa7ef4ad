"""The http provider against a real HTTP service process: right, wrong, 401, 500, slow, down,
replies that are not answers; the cache; and what the SASL driver makes of each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chatgate.auth.provider import ProviderUnavailable, UnsupportedQuestion
from chatgate.sasl.base import Failure, NeedCredentials, Success
from chatgate.sasl.driver import answer_request
from chatgate.sasl.plain import PlainMechanism
from chatgate.vocabulary.errors import SaslFailureCondition

from ..conftest import free_port
from .support import ALICE, DOMAIN, TLS, http, offered, plain_login, running, service_get

pytestmark = pytest.mark.e2e


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
