"""XEP-0363 end to end inside one process: slot requests through the real
connection driver and modules (`wire.py`), PUT and GET through the listener's
upload routes with aiohttp's test client.  Quota, rate, expiry, the single PUT,
forged and mismatched requests, and the purge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatgate.http.upload import add_upload_routes
from chatgate.modules.upload import HttpUpload
from chatgate.modules.upload.files import purge

from ..wire import Server, Wire

UPLOAD = "urn:xmpp:http:upload:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
DATA = "jabber:x:data"


@contextlib.asynccontextmanager
async def setup(
    tmp: Path, **options: Any
) -> AsyncIterator[tuple[Server, Wire, TestClient[web.Request, web.Application]]]:
    srv = await Server.start(tmp, {"upload": {"url": "http://files.test", **options}})
    await srv.add_user("bob", "bob-pw")
    await srv.add_user("eve", "eve-pw")
    wire = srv.connect()
    await wire.login_plain("bob", "bob-pw")
    app = web.Application()
    add_upload_routes(app, srv.ctx)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield srv, wire, client
    finally:
        await client.close()
        await srv.stop()


async def ask(wire: Wire, payload: str, to: str = "upload.localhost") -> ET.Element:
    out = await wire.send(f"<iq type='get' id='u' to='{to}'>{payload}</iq>")
    return ET.fromstring(out)


async def slot(
    wire: Wire, filename: str = "note.txt", size: int = 5, kind: str = "text/plain"
) -> ET.Element:
    return await ask(
        wire,
        f"<request xmlns='{UPLOAD}' filename='{filename}' size='{size}' content-type='{kind}'/>",
    )


def urls(reply: ET.Element) -> tuple[str, str]:
    assert reply.get("type") == "result", ET.tostring(reply)
    put, get = (
        reply.find(f"{{{UPLOAD}}}slot/{{{UPLOAD}}}put"),
        reply.find(f"{{{UPLOAD}}}slot/{{{UPLOAD}}}get"),
    )
    assert put is not None and get is not None
    return _path(put.get("url") or ""), _path(get.get("url") or "")


def _path(url: str) -> str:
    parts = urlsplit(url)
    assert parts.netloc == "files.test"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def condition(reply: ET.Element) -> str:
    assert reply.get("type") == "error", ET.tostring(reply)
    error = reply.find("error")
    assert error is not None
    return next(c.tag.split("}")[1] for c in error if c.tag.startswith("{" + STANZAS))


async def test_disco_lists_the_service_with_its_limit(tmp_path: Path) -> None:
    async with setup(tmp_path, max_file_size=1234) as (_srv, wire, _client):
        items = await ask(wire, f"<query xmlns='{ITEMS}'/>", to="localhost")
        assert "upload.localhost" in {i.get("jid") for i in items.iter(f"{{{ITEMS}}}item")}
        info = await ask(wire, f"<query xmlns='{INFO}'/>")
        features = {f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
        assert UPLOAD in features
        fields = {
            f.get("var"): [v.text for v in f.iter(f"{{{DATA}}}value")]
            for f in info.iter(f"{{{DATA}}}field")
        }
        assert fields["FORM_TYPE"] == [UPLOAD] and fields["max-file-size"] == ["1234"]


async def test_put_then_get_back(tmp_path: Path) -> None:
    async with setup(tmp_path) as (_srv, wire, client):
        put, get = urls(await slot(wire, "hello world.txt", 5))
        assert put.startswith(get + "?")
        headers = {"Content-Type": "text/plain"}
        response = await client.put(put, data=b"hello", headers=headers)
        assert response.status == 201
        got = await client.get(get)
        assert got.status == 200 and await got.read() == b"hello"
        assert got.headers["Content-Type"] == "text/plain"
        assert got.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in got.headers["Content-Security-Policy"]
        folder = tmp_path / "var" / "uploads"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        # a second PUT of the same slot is refused and changes nothing
        again = await client.put(put, data=b"HELLO", headers=headers)
        assert again.status == 409
        assert await (await client.get(get)).read() == b"hello"
        # another filename on the same token finds nothing
        assert (await client.get(get.rsplit("/", 1)[0] + "/other.txt")).status == 404


async def test_images_are_inline(tmp_path: Path) -> None:
    async with setup(tmp_path) as (_srv, wire, client):
        put, get = urls(await slot(wire, "p.png", 3, "image/png"))
        assert (
            await client.put(put, data=b"png", headers={"Content-Type": "image/png"})
        ).status == 201
        got = await client.get(get)
        assert got.headers["Content-Disposition"].startswith("inline;")


async def test_wrong_sizes_types_and_forged_signatures(tmp_path: Path) -> None:
    async with setup(tmp_path) as (_srv, wire, client):
        put, get = urls(await slot(wire, "f.txt", 5))
        plain = {"Content-Type": "text/plain"}
        assert (await client.put(put, data=b"toolong", headers=plain)).status == 400
        assert (await client.put(put, data=b"hey", headers=plain)).status == 400
        html = {"Content-Type": "text/html"}
        assert (await client.put(put, data=b"hello", headers=html)).status == 400
        forged = put[:-4] + ("0000" if not put.endswith("0000") else "1111")
        assert (await client.put(forged, data=b"hello", headers=plain)).status == 403
        later = put.replace("?e=", "?e=9")
        assert (await client.put(later, data=b"hello", headers=plain)).status == 403
        assert (await client.put(get, data=b"hello", headers=plain)).status == 403
        bad_token = "/upload/..%2F..%2Fetc/passwd"
        assert (await client.put(bad_token, data=b"hello", headers=plain)).status == 404
        assert (await client.get("/upload/" + "A" * 32 + "/f.txt")).status == 404

        async def chunks() -> AsyncIterator[bytes]:
            yield b"hello"

        chunked = await client.put(put, data=chunks(), headers=plain)
        assert chunked.status == 411
        # none of that used the slot: the honest PUT still works
        assert (await client.put(put, data=b"hello", headers=plain)).status == 201
        assert (await client.get(get)).status == 200


async def test_slot_requests_refused(tmp_path: Path) -> None:
    async with setup(tmp_path, max_file_size=100) as (_srv, wire, _client):
        too_big = await slot(wire, "big.bin", 101)
        assert condition(too_big) == "not-acceptable"
        limit = too_big.find(f"error/{{{UPLOAD}}}file-too-large/{{{UPLOAD}}}max-file-size")
        assert limit is not None and limit.text == "100"
        assert condition(await slot(wire, "../../x", 1)) == "bad-request"
        assert condition(await slot(wire, "x", 1, "a" * 300 + "/b")) == "bad-request"
        # not the service's own domain, an unknown payload
        assert condition(await ask(wire, f"<query xmlns='{INFO}'/>", to="x@upload.localhost")) == (
            "service-unavailable"
        )
        assert condition(await ask(wire, "<ping xmlns='urn:xmpp:ping'/>")) == "service-unavailable"


async def test_quota_counts_unexpired_slots(tmp_path: Path) -> None:
    async with setup(tmp_path, quota=10) as (_srv, wire, _client):
        urls(await slot(wire, "a", 6))
        full = await slot(wire, "b", 5)
        assert condition(full) == "resource-constraint"
        error = full.find("error")
        assert error is not None and error.get("type") == "wait"
        assert full.find(f"error/{{{UPLOAD}}}retry") is not None
        urls(await slot(wire, "c", 4))  # exactly the quota


async def test_slot_rate_is_limited(tmp_path: Path) -> None:
    async with setup(tmp_path, max_slots_per_minute=3) as (_srv, wire, _client):
        for _ in range(3):
            urls(await slot(wire))
        assert condition(await slot(wire)) == "resource-constraint"


async def test_expired_slot_refused_and_purged(tmp_path: Path) -> None:
    async with setup(tmp_path, quota=10) as (srv, wire, client):
        module = srv.module("upload")
        assert isinstance(module, HttpUpload) and module.service is not None
        service = module.service
        real = service.clock
        put, _ = urls(await slot(wire, "late.txt", 5))
        stored_put, stored_get = urls(await slot(wire, "kept.txt", 5))
        plain = {"Content-Type": "text/plain"}
        assert (await client.put(stored_put, data=b"12345", headers=plain)).status == 201
        service.clock = lambda: real() + timedelta(seconds=301)
        assert (await client.put(put, data=b"hello", headers=plain)).status == 403
        # the unused slot leaves the quota at the purge; the stored file stays
        assert module.folder is not None
        await purge(module.folder, service.repository, service.clock())
        urls(await slot(wire, "again.txt", 5))
        assert (await client.get(stored_get)).status == 200
        # after the expiry the file is gone from disk and from GET
        later = real() + timedelta(days=8)
        service.clock = lambda: later
        assert (await client.get(stored_get)).status == 404
        await purge(module.folder, service.repository, later)
        assert os.listdir(module.folder.root) == []


async def test_orphaned_files_are_purged(tmp_path: Path) -> None:
    async with setup(tmp_path) as (srv, wire, client):
        module = srv.module("upload")
        put, _ = urls(await slot(wire, "f.txt", 5))
        assert (
            await client.put(put, data=b"hello", headers={"Content-Type": "text/plain"})
        ).status == 201
        assert len(os.listdir(module.folder.root)) == 1
        await srv.db.accounts.delete("bob", "localhost")  # the cascade takes the slot
        await purge(module.folder, module.service.repository, module.service.clock())
        assert os.listdir(module.folder.root) == []


async def test_other_hosts_accounts_may_not_ask(tmp_path: Path) -> None:
    async with setup(tmp_path) as (srv, wire, _client):
        module = srv.module("upload")
        module.service.parents["upload.localhost"] = "elsewhere"
        assert condition(await slot(wire)) == "forbidden"


async def test_off_without_http_listener(tmp_path: Path) -> None:
    srv = await Server.start(tmp_path, {}, http={"enabled": False})
    try:
        module = srv.module("upload")
        assert module.service is None
        assert not any(s.domain.startswith("upload.") for s in srv.ctx.services)
    finally:
        await srv.stop()


@pytest.mark.parametrize("enabled", [False])
async def test_disabled_registers_nothing(tmp_path: Path, enabled: bool) -> None:
    srv = await Server.start(tmp_path, {"upload": {"enabled": enabled}})
    try:
        assert srv.module("upload").service is None
        assert srv.ctx.services == [] or all(
            not s.domain.startswith("upload.") for s in srv.ctx.services
        )
    finally:
        await srv.stop()


async def test_names_with_percent_unicode_and_query_characters(tmp_path: Path) -> None:
    async with setup(tmp_path) as (_srv, wire, client):
        name = "100% été?#&amp;.txt"  # XML-escaped '&' in the attribute
        put, get = urls(await slot(wire, name, 2))
        assert (
            await client.put(put, data=b"ok", headers={"Content-Type": "text/plain"})
        ).status == 201
        got = await client.get(get)
        assert got.status == 200 and await got.read() == b"ok"
        disposition = got.headers["Content-Disposition"]
        assert "filename*=UTF-8''100%25%20%C3%A9t%C3%A9%3F%23%26.txt" in disposition
        assert 'filename="100_ _t_?#&.txt"' in disposition


async def test_stalled_put_is_given_up_and_the_slot_reusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatgate.http import upload as upload_http

    monkeypatch.setattr(upload_http, "IDLE_TIMEOUT", 0.2)
    async with setup(tmp_path) as (_srv, wire, client):
        put, get = urls(await slot(wire, "slow.txt", 4))
        never = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            yield b"ab"
            await never.wait()

        headers = {"Content-Type": "text/plain", "Content-Length": "4"}
        stalled = await client.put(put, data=stalls(), headers=headers)
        assert stalled.status == 408
        never.set()
        plain = {"Content-Type": "text/plain"}
        assert (await client.put(put, data=b"abcd", headers=plain)).status == 201
        assert await (await client.get(get)).read() == b"abcd"
