"""`remotehttp` against an operator's service on 127.0.0.1 (a small aiohttp app
here, recording what it is sent; the seed's own PHP script is the e2e test's):
the challenge relayed, the client's header forwarded with WowzaRemoteAuthHash
and the identity, the client's method kept, groups from AdministratorGroups,
replays refused, and the file fallback with its retry period."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chatgate.auth.gate import Outcome
from chatgate.http.auth.digest_core import ha1
from chatgate.http.auth.remote import RemoteHttpMethod

from .conftest import Site, SiteFactory
from .digest_client import authorization, challenge_params

PATH = "/api/v1/probe"
SECRET = "MySharedSecretKey"
USERS = {"cricket": ("stumps", "admin,advUser"), "guest": ("guest", None)}


@dataclass
class Service:
    """The operator's service, written from the seed's description."""

    server: TestServer | None = None
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    status: int | None = None  # answer this to everything (a failing service)
    nonces: itertools.count[int] = field(default_factory=itertools.count)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, dict(request.headers)))
        if self.status is not None:
            return web.Response(status=self.status)
        header = request.headers.get("Authorization")
        if header is None:
            challenge = f'Digest realm="Wowza",qop="auth",nonce="svc{next(self.nonces)}",opaque="x"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        p = challenge_params(header)
        wanted = hashlib.md5(f"{p['username']}{p['response']}{SECRET}{p['uri']}".encode())
        if request.headers.get("WowzaRemoteAuthHash") != wanted.hexdigest():
            return web.Response(status=401)
        if request.headers.get("WowzaStreamingEngineIdentity") != "MyServerIDName":
            return web.Response(status=401)
        password, groups = USERS.get(p["username"], ("", None))
        md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
        a1, a2 = md5(f"{p['username']}:Wowza:{password}"), md5(f"{request.method}:{p['uri']}")
        valid = md5(f"{a1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{a2}")
        if not password or p["response"] != valid:
            return web.Response(status=401)
        return web.Response(headers={"AdministratorGroups": groups} if groups else {})


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    svc = Service()
    app = web.Application()
    app.router.add_route("*", "/auth", svc.handle)
    svc.server = TestServer(app, host="127.0.0.1")
    await svc.server.start_server()
    yield svc
    await svc.server.close()


def remote_options(url: str, **more: Any) -> dict[str, Any]:
    return {
        "auth": ["remotehttp", "bearer"],
        "realm": "Wowza",
        "password_encoding": "md5",
        "remotehttp": {
            "url": url,
            "shared_secret": SECRET,
            "identity": "MyServerIDName",
            **more,
        },
    }


async def fetch(site: Site, method: str = "GET", **headers: str) -> tuple[int, list[str], Any]:
    async with aiohttp.ClientSession() as s, s.request(method, site.url, headers=headers) as r:
        body = await r.json()
        return r.status, r.headers.getall("WWW-Authenticate", []), body


async def login(
    site: Site, user: str, password: str, method: str = "GET", **kw: Any
) -> tuple[int, list[str], Any]:
    status, challenges, _ = await fetch(site, method)
    assert status == 401, challenges
    header = authorization(challenges[0], user, password, method, PATH, **kw)
    return await fetch(site, method, Authorization=header)


def method_of(site: Site) -> RemoteHttpMethod:
    method = site.site.chains["api"].methods[0]
    assert isinstance(method, RemoteHttpMethod)
    return method


async def test_exchange_is_relayed_with_hash_identity_and_method(
    make_site: SiteFactory, service: Service
) -> None:
    assert service.server is not None
    site = await make_site(**remote_options(str(service.server.make_url("/auth"))))
    status, challenges, _ = await fetch(site)
    assert status == 401
    assert challenges == [
        'Digest realm="Wowza",qop="auth",nonce="svc0",opaque="x"',
        'Bearer realm="Wowza"',
    ]
    status, _, body = await login(site, "cricket", "stumps", "POST")
    assert status == 200
    assert body == {"written_by": "cricket"}
    method, headers = service.seen[-1]
    assert method == "POST"  # the client's, so the service's A2 matches
    assert headers["Authorization"].startswith('Digest username="cricket"')
    assert headers["WowzaStreamingEngineIdentity"] == "MyServerIDName"
    status, _, body = await login(site, "guest", "guest")
    assert (status, body["groups"]) == (200, [])  # no AdministratorGroups: read-only
    assert (await login(site, "guest", "guest", "POST"))[0] == 403
    assert (await login(site, "cricket", "wrong"))[0] == 401
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts[("http-admin", "remotehttp", Outcome.FAILED)] == 1


async def test_sha256_hash_header(make_site: SiteFactory, service: Service) -> None:
    assert service.server is not None
    site = await make_site(**remote_options(str(service.server.make_url("/auth")), hash="sha256"))
    assert (await login(site, "cricket", "stumps"))[0] == 401  # our service wants MD5
    _, headers = service.seen[-2]  # the last one asked for a fresh challenge
    p = challenge_params(headers["Authorization"])
    expected = hashlib.sha256(f"cricket{p['response']}{SECRET}{p['uri']}".encode()).hexdigest()
    assert headers["WowzaRemoteAuthHash"] == expected


async def test_replayed_header_is_refused(make_site: SiteFactory, service: Service) -> None:
    assert service.server is not None
    site = await make_site(**remote_options(str(service.server.make_url("/auth"))))
    _, challenges, _ = await fetch(site)
    header = authorization(challenges[0], "cricket", "stumps", "GET", PATH)
    assert (await fetch(site, Authorization=header))[0] == 200
    assert (await fetch(site, Authorization=header))[0] == 401


async def test_other_uri_is_refused_before_the_service_is_asked(
    make_site: SiteFactory, service: Service
) -> None:
    assert service.server is not None
    site = await make_site(**remote_options(str(service.server.make_url("/auth"))))
    _, challenges, _ = await fetch(site)
    asked = len(service.seen)
    header = authorization(challenges[0], "cricket", "stumps", "GET", "/api/v1/other")
    assert (await fetch(site, Authorization=header))[0] == 401
    assert all("Authorization" not in h for _, h in service.seen[asked:])


async def test_unreachable_service_without_fallback_is_503(make_site: SiteFactory) -> None:
    site = await make_site(**remote_options("http://127.0.0.1:9/auth", timeout=2))
    status, _, body = await fetch(site)
    assert status == 503
    assert body["error"]["code"] == "unavailable"


async def fallback_site(
    make_site: SiteFactory, tmp_path: Path, url: str, **more: Any
) -> tuple[Site, RemoteHttpMethod, list[float]]:
    (tmp_path / "admin.password").write_text(
        f"cricket {ha1('MD5', 'cricket', 'Wowza', 'file-pw')} readOnly\n"
    )
    site = await make_site(**remote_options(url, backup_file=True, backup_retry=10, **more))
    method = method_of(site)
    now = [1000.0]
    method.clock = lambda: now[0]
    return site, method, now


async def test_fallback_on_connect_then_the_service_again(
    make_site: SiteFactory, service: Service, tmp_path: Path
) -> None:
    assert service.server is not None
    url = str(service.server.make_url("/auth"))
    port = service.server.port
    site, method, now = await fallback_site(make_site, tmp_path, url)
    # the client got the service's challenge, then the service went away
    _, challenges, _ = await fetch(site)
    await service.server.close()
    header = authorization(challenges[0], "cricket", "stumps", "GET", PATH)
    status, again, _ = await fetch(site, Authorization=header)
    assert status == 401 and again[0].endswith("stale=true")  # our nonce now
    assert method.in_fallback()
    status, _, body = await login(site, "cricket", "file-pw")
    assert (status, body["groups"]) == (200, ["readOnly"])
    assert (await login(site, "cricket", "stumps"))[0] == 401  # the file's password only
    # a service nonce during the fallback: stale
    status, again, _ = await fetch(site, Authorization=header)
    assert status == 401 and again[0].endswith("stale=true")
    # the service is back; until the retry period ends the file still answers
    svc_app = web.Application()
    svc_app.router.add_route("*", "/auth", service.handle)
    service.server = TestServer(svc_app, host="127.0.0.1", port=port)
    await service.server.start_server()
    now[0] += 9
    assert (await login(site, "cricket", "file-pw"))[0] == 200
    now[0] += 2
    assert not method.in_fallback()
    status, _, body = await login(site, "cricket", "stumps")
    assert (status, body["groups"]) == (200, ["admin", "advUser"])


async def test_fallback_on_a_listed_status_only(
    make_site: SiteFactory, service: Service, tmp_path: Path
) -> None:
    assert service.server is not None
    url = str(service.server.make_url("/auth"))
    site, method, _ = await fallback_site(
        make_site, tmp_path, url, backup_conditions=["connect", 500]
    )
    service.status = 502
    assert (await fetch(site))[0] == 503  # not listed
    assert not method.in_fallback()
    service.status = 500
    status, challenges, _ = await fetch(site)
    assert status == 401 and method.in_fallback()
    assert challenge_params(challenges[0])["realm"] == "Wowza"
    assert (await login(site, "cricket", "file-pw"))[0] == 200


async def test_service_down_at_the_first_request_falls_back_at_once(
    make_site: SiteFactory, tmp_path: Path
) -> None:
    site, method, _ = await fallback_site(make_site, tmp_path, "http://127.0.0.1:9/auth")
    status, _, body = await login(site, "cricket", "file-pw")
    assert (status, body["name"]) == (200, "cricket")
    assert method.in_fallback()
