"""An API on a real server context (SQLite, modules, connection drivers from
`tests/unit/modules/wire.py`) behind aiohttp's test server.

Authentication is not what these tests are about (the auth methods have their
own): the site's API chain is one method that reads the principal's group from
`Authorization: Test GROUP` (no header: 401 with a challenge), so each test
picks who asks.  Everything after authentication is the real code path: the
site's middleware, `@requires`, the API's handlers, the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatgate.http.admin import AdminSite
from chatgate.http.admin_options import AdminOptions
from chatgate.http.api.routes import add_api_routes
from chatgate.http.auth.base import AuthChain, AuthRequest, Principal, Refusal
from chatgate.vocabulary.facts import ConnectionFacts

from ...modules.wire import Server


class GroupHeader:
    """`Authorization: Test GROUP[,GROUP]` proves a principal named `tester`."""

    name = "test"
    schemes = frozenset({"test"})

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        return ['Test realm="unit"']

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        assert request.authorization is not None
        groups = request.authorization.split(None, 1)[1]
        return Principal("tester", frozenset(groups.split(",")), "test")

    async def close(self) -> None:
        pass


@dataclass
class Api:
    server: Server
    site: AdminSite
    client: TestClient[Any, Any]

    def headers(self, group: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Test {group}"}

    async def call(
        self, method: str, path: str, group: str = "admin", **kwargs: Any
    ) -> tuple[int, Any, Any]:
        """(status, JSON body or None, headers) of `method /api/v1{path}`."""
        headers = {**self.headers(group), **kwargs.pop("headers", {})}
        async with self.client.request(method, "/api/v1" + path, headers=headers, **kwargs) as r:
            data = await r.json() if r.content_type == "application/json" else None
            return r.status, data, r.headers


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    server = await Server.start(tmp_path, {})

    def facts(request: web.Request) -> ConnectionFacts:
        return ConnectionFacts(domain="localhost", remote_address=request.remote)

    site = AdminSite(server.ctx, AdminOptions(enabled=True), facts)
    site.chains["api"] = AuthChain([GroupHeader()])
    app = web.Application()
    add_api_routes(app, site)
    app.middlewares.append(site.middleware)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(server, site, client)
    finally:
        await client.close()
        await server.stop()
