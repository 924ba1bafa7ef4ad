"""XEP-0363 HTTP file upload against the real `chatgate serve`, with slixmpp's
xep_0363 as the client and aiohttp (and a raw socket) as the HTTP side: a file
uploaded is fetched back byte for byte; oversize, quota and rate refusals;
attacks on the PUT (replay, forged signature, wrong size, path traversal)."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from slixmpp.exceptions import IqError

from .conftest import Client, RunningServer, logged_in
from .web import start_web_server

pytestmark = pytest.mark.e2e

UPLOAD = "urn:xmpp:http:upload:0"
MAX = 3 * 1024 * 1024  # over [http] max_request_size (1 MiB): PUTs stream


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    upload = (
        f"\n[modules.upload]\nmax_file_size = {MAX}\nquota = {3 * MAX}\nmax_slots_per_minute = 8\n"
    )
    srv = start_web_server(tmp_path_factory.mktemp("upload"), upload)
    for name in ("ann", "bob", "cid", "dee"):
        srv.add_user(name, f"{name}-password")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def with_upload(client: Client) -> Client:
    client.register_plugin("xep_0363")
    return client


async def slot(client: Client, name: str, size: int, kind: str = "text/plain") -> tuple[str, str]:
    iq = await client.plugin["xep_0363"].request_slot(
        "upload.localhost", name, size, kind, timeout=10
    )
    found = iq["http_upload_slot"]
    return found["put"]["url"], found["get"]["url"]


async def test_upload_file_then_get_it_back(server: RunningServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000  # 2.56 MB, every byte value
    path = tmp_path / "photo 1.jpg"
    path.write_bytes(data)
    async with logged_in(server, "ann@localhost/up", "ann-password") as ann:
        url = await with_upload(ann).plugin["xep_0363"].upload_file(path, timeout=10)
    assert urlsplit(url).port == server.http_port
    async with aiohttp.ClientSession() as http, http.get(url) as got:
        assert got.status == 200
        assert await got.read() == data
        assert got.headers["Content-Type"] == "image/jpeg"
        assert got.headers["Content-Disposition"].startswith("inline;")
        assert got.headers["X-Content-Type-Options"] == "nosniff"


async def test_oversize_refused_with_max_file_size(server: RunningServer) -> None:
    async with logged_in(server, "bob@localhost/big", "bob-password") as bob:
        with pytest.raises(IqError) as refused:
            await slot(with_upload(bob), "big.bin", MAX + 1)
        error = refused.value.iq["error"]
        assert error["condition"] == "not-acceptable"
        limit = error.xml.find(f"{{{UPLOAD}}}file-too-large/{{{UPLOAD}}}max-file-size")
        assert limit is not None and limit.text == str(MAX)


async def test_quota_refuses_past_the_limit(server: RunningServer) -> None:
    async with logged_in(server, "cid@localhost/q", "cid-password") as cid:
        with_upload(cid)
        for i in range(3):
            await slot(cid, f"f{i}", MAX)
        with pytest.raises(IqError) as refused:
            await slot(cid, "one-more", 1)
        assert refused.value.condition == "resource-constraint"
        assert refused.value.iq["error"]["type"] == "wait"


async def test_many_slot_requests_are_rate_limited(server: RunningServer) -> None:
    async with logged_in(server, "dee@localhost/r", "dee-password") as dee:
        with_upload(dee)
        outcomes = await asyncio.gather(
            *(slot(dee, f"n{i}", 1) for i in range(12)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, IqError)]
        assert len(refused) == 4
        assert {o.condition for o in refused} == {"resource-constraint"}
        # the server still answers this client normally
        await dee.plugin["xep_0030"].get_info(jid="localhost", timeout=5)


async def test_put_attacks(server: RunningServer) -> None:
    async with logged_in(server, "ann@localhost/atk", "ann-password") as ann:
        with_upload(ann)
        put, get = await slot(ann, "doc.txt", 5)
        with pytest.raises(IqError) as huge_type:
            await slot(ann, "x.txt", 5, "text/" + "a" * 10_000)
        assert huge_type.value.condition == "bad-request"
    plain = {"Content-Type": "text/plain"}
    async with aiohttp.ClientSession() as http:
        forged = put.rsplit("&s=", 1)[0] + "&s=" + "0" * 64
        async with http.put(forged, data=b"hello", headers=plain) as r:
            assert r.status == 403
        async with http.put(put, data=b"hello!", headers=plain) as r:
            assert r.status == 400  # size is the slot's
        async with http.put(put, data=io.BytesIO(b"hello"), headers=plain) as r:
            assert r.status == 201
        async with http.put(put, data=b"HELLO", headers=plain) as r:
            assert r.status == 409  # replayed
        async with http.get(get) as r:
            assert await r.read() == b"hello"
            assert r.headers["Content-Disposition"].startswith("attachment;")
    # traversal on the raw wire (a client library would normalise the path)
    for target in ("/upload/../../../etc/passwd", "/upload/%2e%2e/%2e%2e%2fetc%2fpasswd"):
        status = await asyncio.to_thread(_raw_status, server.http_port, "GET", target)
        assert status in (400, 404), target
    assert b"root:" not in await asyncio.to_thread(
        _raw, server.http_port, "GET", "/upload/../../../../etc/passwd"
    )


def _raw(port: int, method: str, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _raw_status(port: int, method: str, target: str) -> int:
    return int(_raw(port, method, target).split(b" ", 2)[1])


async def test_expired_slot_refused(tmp_path: Path) -> None:
    """A slot whose put_timeout (10 s, the least allowed) passed takes no PUT."""
    srv = start_web_server(tmp_path, "\n[modules.upload]\nput_timeout = 10\n")
    try:
        srv.add_user("eve", "eve-password")
        async with logged_in(srv, "eve@localhost/late", "eve-password") as eve:
            put, get = await slot(with_upload(eve), "late.txt", 5)
        await asyncio.sleep(10.5)  # the deadline is wall-clock time in the signed URL
        async with aiohttp.ClientSession() as http:
            async with http.put(put, data=b"hello", headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 403
                assert "over" in await r.text()
            async with http.get(get) as r:
                assert r.status == 404
    finally:
        assert srv.stop() == 0
