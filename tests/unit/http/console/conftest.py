"""A real server in this process with the console on (`[admin] enabled`, `basic`
for its login), its configuration file on disk (the wizard writes it), and a
small browser-like client that keeps the console's cookies by hand, so tests
can look at each cookie's attributes and forge what a browser would not send."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatgate.config import load_config
from chatgate.server import Server

CONFIG = """\
# the operator's own comment: kept by the wizard
[server]
domain = "localhost"   # the domain
data_dir = "{var}"

[[listeners]]
port = 0
tls = "none"
require_tls = false

[storage]
url = "sqlite+aiosqlite:///{db}"

[http]
port = 0
tls_port = false
trusted_proxies = ["127.0.0.1/32"]

[http.chat]
enabled = false

[admin]
enabled = true
auth = ["basic"]
{admin}
"""


@dataclass
class Reply:
    status: int
    text: str
    headers: Any
    cookies: SimpleCookie

    def form_token(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, self.text
        return found.group(1)


@dataclass
class Browser:
    """Keeps cookies per name (the console's and the wizard's), sends an Origin."""

    base: str
    http: aiohttp.ClientSession
    cookies: dict[str, str] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        origin: str | None = "self",
    ) -> Reply:
        sent: dict[str, str] = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        if method == "POST" and origin is not None:
            sent.setdefault("Origin", self.base if origin == "self" else origin)
        async with self.http.request(
            method, self.base + path, data=data, headers=sent, allow_redirects=False
        ) as response:
            jar = SimpleCookie()
            for value in response.headers.getall("Set-Cookie", []):
                jar.load(value)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
            return Reply(response.status, await response.text(), response.headers, jar)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, data: Mapping[str, str], **kw: Any) -> Reply:
        return await self.request("POST", path, data=data, **kw)


@dataclass
class ConsoleServer:
    server: Server
    config_path: Path
    base: str

    @property
    def ctx(self) -> Any:
        assert self.server.ctx is not None
        return self.server.ctx

    @property
    def site(self) -> Any:
        assert self.server.http is not None and self.server.http.admin is not None
        return self.server.http.admin

    async def add_admin(self, name: str, password: str, groups: list[str]) -> None:
        await self.site.admins.add(name, password, groups=groups)


async def start_console(tmp: Path, admin: str = "") -> ConsoleServer:
    config_path = tmp / "chatgate.toml"
    config_path.write_text(
        CONFIG.format(var=tmp / "var", db=tmp / "chatgate.db", admin=admin), encoding="utf-8"
    )
    server = Server(load_config(config_path))
    await server.start()
    assert server.http is not None
    scheme, host, port = server.http.bound[0]
    return ConsoleServer(server, config_path, f"{scheme}://{host}:{port}")


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[ConsoleServer]:
    running = await start_console(tmp_path)
    yield running
    await running.server.stop()


@pytest.fixture
async def browser(console: ConsoleServer) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession() as http:
        yield Browser(console.base, http)
