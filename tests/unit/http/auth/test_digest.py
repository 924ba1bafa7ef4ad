"""`digest` against administrators chatgate keeps: requests' HTTPDigestAuth and
aiohttp's DigestAuthMiddleware (clients nobody here wrote) with MD5 and SHA-256,
then what those clients never send, from `digest_client.py`: an expired nonce
(stale=true), a replayed nc, another uri, no qop, a nonce not ours, a user
whose secret was stored for another realm."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest
import requests
from requests.auth import HTTPDigestAuth

from chatgate.auth.gate import Outcome
from chatgate.http.auth.admins import AdminAccounts
from chatgate.http.auth.digest import DigestMethod

from .conftest import Site, SiteFactory
from .digest_client import authorization, challenge_params

PATH = "/api/v1/probe"


async def digest_site(make_site: SiteFactory, **admin: Any) -> Site:
    site = await make_site(auth=["digest", "bearer"], **admin)
    accounts = AdminAccounts(site.db, site.site.options)
    await accounts.add("alice", "alice-pw", ["admin"])
    await accounts.add("rob", "rob-pw", ["readOnly"])
    return site


def method_of(site: Site) -> DigestMethod:
    method = site.site.chains["api"].methods[0]
    assert isinstance(method, DigestMethod)
    return method


async def fetch(site: Site, method: str = "GET", **headers: str) -> tuple[int, list[str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, site.url, headers=headers) as r,
    ):
        return r.status, r.headers.getall("WWW-Authenticate", [])


def digest_challenge(challenges: list[str], algorithm: str = "SHA-256") -> str:
    return next(c for c in challenges if f"algorithm={algorithm}" in c)


@pytest.mark.parametrize(
    ("order", "used"), [(["SHA-256", "MD5"], "MD5"), (["MD5", "SHA-256"], "SHA-256")]
)
async def test_requests_http_digest_auth(
    make_site: SiteFactory, order: list[str], used: str
) -> None:
    site = await digest_site(make_site, digest_algorithms=order)

    def twice() -> tuple[requests.Response, requests.Response]:
        # HTTPDigestAuth keeps its nonce per thread: both requests in one
        session = requests.Session()
        session.auth = HTTPDigestAuth("alice", "alice-pw")
        return session.get(site.url, timeout=10), session.post(site.url, timeout=10)

    answer, again = await asyncio.to_thread(twice)
    assert answer.status_code == 200
    assert answer.json() == {"name": "alice", "groups": ["admin"], "method": "digest"}
    # requests reads the last algorithm of the joined challenges
    assert f'algorithm="{used}"' in answer.request.headers["Authorization"]
    assert again.status_code == 200  # same nonce, next nc, no new challenge
    assert "nc=00000002" in again.request.headers["Authorization"]
    assert again.history == []
    wrong = await asyncio.to_thread(
        requests.get, site.url, auth=HTTPDigestAuth("alice", "nope"), timeout=10
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_aiohttp_digest_middleware(make_site: SiteFactory, algorithm: str) -> None:
    site = await digest_site(make_site, digest_algorithms=[algorithm])
    middleware = aiohttp.DigestAuthMiddleware("rob", "rob-pw")
    async with aiohttp.ClientSession(middlewares=(middleware,)) as s:
        async with s.get(site.url) as r:
            assert r.status == 200
            assert (await r.json())["groups"] == ["readOnly"]
        async with s.post(site.url) as r:
            assert r.status == 403  # readOnly cannot write


async def test_challenge_offers_each_algorithm_with_one_nonce(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    status, challenges = await fetch(site)
    assert status == 401
    sha, md5, bearer = challenges
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5
    assert bearer == 'Bearer realm="chatgate"'
    assert challenge_params(sha)["nonce"] == challenge_params(md5)["nonce"]
    assert challenge_params(sha)["qop"] == "auth"


async def login(
    site: Site, challenge: str, user: str = "alice", pw: str = "alice-pw", **kw: Any
) -> tuple[int, list[str]]:
    method = kw.pop("method", "GET")
    uri = kw.pop("uri", PATH)
    header = authorization(challenge, user, pw, method, uri, **kw)
    return await fetch(site, method, Authorization=header)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_expired_nonce_gets_stale_true(make_site: SiteFactory, algorithm: str) -> None:
    site = await digest_site(make_site, nonce_lifetime=60)
    _, challenges = await fetch(site)
    challenge = digest_challenge(challenges, algorithm)
    method_of(site).clock = lambda: time.time() + 61
    status, again = await login(site, challenge)
    assert status == 401
    assert all(c.endswith("stale=true") for c in again)
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts.get(("http-admin", "digest", Outcome.FAILED), 0) == 0  # no guess
    # the fresh nonce works
    assert (await login(site, digest_challenge(again, algorithm)))[0] == 200
    # a wrong password with an old nonce is a wrong password, not stale
    status, wrong = await login(site, challenge, pw="nope")
    assert status == 401 and not any("stale" in c for c in wrong)


async def test_replayed_nonce_count_is_refused(
    make_site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    site = await digest_site(make_site)
    _, challenges = await fetch(site)
    challenge = digest_challenge(challenges)
    assert (await login(site, challenge, nc=1))[0] == 200
    with caplog.at_level(logging.WARNING, logger="chatgate.http.auth"):
        assert (await login(site, challenge, nc=1))[0] == 401
    assert "replay refused" in caplog.text
    assert (await login(site, challenge, nc=2))[0] == 200
    assert (await login(site, challenge, nc=2, cnonce="another"))[0] == 401


async def test_response_for_another_uri_is_refused(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    _, challenges = await fetch(site)
    status, _ = await login(site, digest_challenge(challenges), uri="/api/v1/other")
    assert status == 401


async def test_response_without_qop_is_refused(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    _, challenges = await fetch(site)
    status, again = await login(site, digest_challenge(challenges), qop=None)
    assert status == 401
    assert again  # with fresh challenges


async def test_method_is_part_of_the_response(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    _, challenges = await fetch(site)
    header = authorization(digest_challenge(challenges), "alice", "alice-pw", "GET", PATH)
    assert (await fetch(site, "POST", Authorization=header))[0] == 401


async def test_nonce_not_minted_here_gets_stale_true(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    forged = 'Digest realm="chatgate", qop="auth", algorithm=MD5, nonce="6b13ab5b114e2"'
    status, again = await login(site, forged)
    assert status == 401
    assert all(c.endswith("stale=true") for c in again)


async def test_wrong_password_is_counted_by_the_gate(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    _, challenges = await fetch(site)
    assert (await login(site, digest_challenge(challenges), pw="nope"))[0] == 401
    assert (await login(site, digest_challenge(challenges), user="nobody"))[0] == 401
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts[("http-admin", "digest", Outcome.FAILED)] == 2


async def test_secret_stored_for_another_realm_refuses_with_a_log_line(
    make_site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await digest_site(make_site)  # alice's secrets: realm "chatgate"
    site = await make_site(auth=["digest"], realm="Wowza")
    _, challenges = await fetch(site)
    with caplog.at_level(logging.WARNING, logger="chatgate.http.auth"):
        status, _ = await login(site, digest_challenge(challenges))
    assert status == 401
    assert "stored for realm 'chatgate'" in caplog.text


async def test_no_digest_secret_without_digest_configured(make_site: SiteFactory) -> None:
    site = await make_site()  # basic and bearer
    accounts = AdminAccounts(site.db, site.site.options)
    row = await accounts.add("carol", "carol-pw", ["admin"])
    assert (row.digest_realm, row.digest_md5, row.digest_sha256) == (None, None, None)
    only_sha = await make_site(auth=["digest"], digest_algorithms=["SHA-256"])
    row = await AdminAccounts(only_sha.db, only_sha.site.options).add("dan", "dan-pw", ["admin"])
    assert row.digest_md5 is None and row.digest_sha256 is not None


async def test_plain_http_from_afar_is_refused(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    _, challenges = await fetch(site)
    header = authorization(digest_challenge(challenges), "alice", "alice-pw", "GET", PATH)
    status, _ = await fetch(site, Authorization=header, **{"X-Test-Address": "192.0.2.9"})
    assert status == 403


class _Broken:
    async def secret(self, username: str, algorithm: str) -> tuple[str, frozenset[str]] | None:
        raise OSError("database is gone")


async def test_a_failing_store_is_503_and_frees_the_slot(make_site: SiteFactory) -> None:
    site = await digest_site(make_site)
    method_of(site).secrets = _Broken()
    _, challenges = await fetch(site)
    status, _ = await login(site, digest_challenge(challenges))
    assert status == 503
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts[("http-admin", "digest", Outcome.RELEASED)] == 1
    assert counts.get(("http-admin", "digest", Outcome.FAILED), 0) == 0
