"""A tiny admin app for the authentication tests: the real `AdminSite` (its
middleware, `@requires`, the chains `build_chain` makes from `[admin]`) on a
real server context and SQLite database, behind aiohttp's test server on
127.0.0.1, with two routes: `GET /api/v1/probe` (read) and `POST
/api/v1/probe` (write), answering the principal they saw.

The client address the site sees is the TCP peer, unless the test sends
`X-Test-Address` (a stand-in for a client elsewhere on plain HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chatgate.config import Config
from chatgate.context import ServerContext
from chatgate.http.admin import AdminSite, principal_of, requires
from chatgate.http.auth.base import Access
from chatgate.storage.database import Database
from chatgate.vocabulary.facts import ConnectionFacts


@requires(Access.READ)
async def _read(request: web.Request) -> web.Response:
    p = principal_of(request)
    return web.json_response({"name": p.name, "groups": sorted(p.groups), "method": p.method})


@requires(Access.WRITE)
async def _write(request: web.Request) -> web.Response:
    return web.json_response({"written_by": principal_of(request).name})


@dataclass
class Site:
    site: AdminSite
    server: TestServer
    ctx: ServerContext
    db: Database

    @property
    def url(self) -> str:
        return str(self.server.make_url("/api/v1/probe"))


SiteFactory = Callable[..., Awaitable[Site]]


def make_config(tmp_path: Path, admin: dict[str, Any], **extra: Any) -> Config:
    return Config.model_validate(
        {"admin": {"enabled": True, **admin}, **extra, "base_dir": tmp_path}
    )


@pytest.fixture
async def make_site(tmp_path: Path, db: Database) -> AsyncIterator[SiteFactory]:
    started: list[Site] = []

    async def make(**admin: Any) -> Site:
        extra = admin.pop("extra", {})
        config = make_config(tmp_path, admin, **extra)
        ctx = ServerContext(config, db, object())  # type: ignore[arg-type]

        def facts(request: web.Request) -> ConnectionFacts:
            address = request.headers.get("X-Test-Address", request.remote)
            return ConnectionFacts(domain="localhost", remote_address=address)

        site = AdminSite(ctx, config.admin, facts)
        await site.start()
        app = web.Application(middlewares=[site.middleware])
        app.router.add_get("/api/v1/probe", _read)
        app.router.add_post("/api/v1/probe", _write)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        made = Site(site, server, ctx, db)
        started.append(made)
        return made

    yield make
    for made in started:
        await made.server.close()
        await made.site.close()
