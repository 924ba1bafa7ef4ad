"""Uploads through the whole HTTP listener of a server in this process (the lane,
aiohttp, the middleware): a body over `[http] max_request_size` streams in, the
security headers are on every answer, and web clients of any origin may use
the capability URLs (CORS), while other routes keep `[http] cors_origins`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
import pytest

from chatgate.config import Config
from chatgate.modules.upload import HttpUpload
from chatgate.modules.upload.slots import UPLOAD
from chatgate.server import Server
from chatgate.xml.element import Element

SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = Config.model_validate(
        {
            "server": {"domain": "localhost", "data_dir": str(tmp_path / "var")},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"},
            "listeners": [{"port": 0, "tls": "none", "require_tls": False}],
            "http": {
                "port": 0,
                "tls_port": False,
                "chat": {"enabled": False},
                "max_request_size": 65536,
            },
            "modules": {"upload": {"url": "http://files.test", "max_file_size": 3_000_000}},
        }
    )
    srv = Server(config)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def slot(srv: Server, size: int, kind: str = "application/octet-stream") -> tuple[str, str]:
    """A slot for bob, asked of the service as a session of bob would (put, get URLs
    pointed at the listener)."""
    assert srv.ctx is not None and srv.http is not None
    await srv.ctx.db.accounts.create("bob", "localhost", {})
    module = srv.ctx.modules["upload"].module
    assert isinstance(module, HttpUpload) and module.service is not None
    session = SimpleNamespace(username="bob", domain="localhost", bare="bob@localhost")
    request = Element(
        "request", UPLOAD, {"filename": "big.bin", "size": str(size), "content-type": kind}
    )
    answer = await module.service.slot(session, request, "upload.localhost")  # type: ignore[arg-type]
    put, get = (answer.find(name) for name in ("put", "get"))
    assert put is not None and get is not None
    scheme, host, port = srv.http.bound[0]

    def local(url: str | None) -> str:
        parts = urlsplit(url or "")
        return f"{scheme}://{host}:{port}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    return local(put.get("url")), local(get.get("url"))


async def test_body_over_max_request_size_streams_in(server: Server) -> None:
    data = bytes(range(256)) * 8000  # 2 MB, 32 times max_request_size
    put, get = await slot(server, len(data))
    async with aiohttp.ClientSession() as http:
        async with http.put(
            put, data=data, headers={"Content-Type": "application/octet-stream"}
        ) as r:
            assert r.status == 201
            assert all(r.headers.get(k) == v for k, v in SECURITY.items())
        async with http.get(get) as r:
            assert r.status == 200 and await r.read() == data
            assert all(r.headers.get(k) == v for k, v in SECURITY.items())
            assert r.headers["Content-Disposition"].startswith("attachment;")
        async with http.head(get) as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(len(data))


async def test_any_origin_may_put_and_get_uploads_only(server: Server) -> None:
    put, get = await slot(server, 3, "text/plain")
    origin = {"Origin": "https://web.example"}
    async with aiohttp.ClientSession() as http:
        preflight = {**origin, "Access-Control-Request-Method": "PUT"}
        async with http.options(put, headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert "PUT" in r.headers["Access-Control-Allow-Methods"]
        headers = {**origin, "Content-Type": "text/plain"}
        async with http.put(put, data=b"abc", headers=headers) as r:
            assert r.status == 201 and r.headers["Access-Control-Allow-Origin"] == "*"
        async with http.get(get, headers=origin) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        # the listener's other routes still answer only [http] cors_origins (none here)
        base = get.split("/upload/", 1)[0]
        async with http.get(base + "/nowhere/upload/x", headers=origin) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
