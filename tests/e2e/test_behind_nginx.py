"""docs/web.md's nginx configuration (examples/nginx-chatgate.conf, run as it is
written but for its two ports) in front of the real server: WebSocket and BOSH
logins through it, discovery naming the proxy's address, the web chat, and the
client address chatgate logs being the one nginx saw, never one the client made up."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import nginx
from tests.e2e.conftest import RunningServer, free_port
from tests.e2e.web import BoshClient, WsClient, start_web_server

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nginx-chatgate.conf"
PASSWORD = "proxied-password-1"


def _nginx_conf(tmp: Path, listen: int, upstream: int) -> Path:
    site = EXAMPLE.read_text()
    assert site.count("server 127.0.0.1:5280;") == 1 and site.count("listen 80;") == 1
    site = site.replace("server 127.0.0.1:5280;", f"server 127.0.0.1:{upstream};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    (tmp / "site.conf").write_text(site)
    return nginx.write_conf(
        tmp,
        f"""
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
""",
    )


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/host-meta", timeout=1)
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int]]:
    tmp = tmp_path_factory.mktemp("nginx")
    server = start_web_server(tmp, 'trusted_proxies = ["127.0.0.1"]\n')
    server.add_user("alice", PASSWORD)
    port = free_port()
    try:
        with nginx.running(_nginx_conf(tmp, port, server.http_port), tmp, lambda: _answers(port)):
            yield server, port
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log_text(), server.log_text()


async def test_websocket_through_nginx(proxied: tuple[RunningServer, int]) -> None:
    server, port = proxied
    url = f"ws://127.0.0.1:{port}/xmpp-websocket"
    # A made-up X-Forwarded-For from the client is replaced by nginx.
    async with WsClient(url, headers={"X-Forwarded-For": "203.0.113.9"}) as alice:
        await alice.login("alice", PASSWORD)
        assert (await alice.bind("proxied")) == "alice@localhost/proxied"
    log = server.log_text()
    assert (
        "alice@localhost authenticated with SCRAM-SHA-1 over websocket (no TLS) from 127.0.0.1"
        in log
    )
    assert "203.0.113.9" not in log


async def test_bosh_through_nginx(proxied: tuple[RunningServer, int]) -> None:
    server, port = proxied
    async with BoshClient(f"http://127.0.0.1:{port}/http-bind") as alice:
        await alice.login("alice", PASSWORD)
        assert (await alice.bind("bosh")) == "alice@localhost/bosh"
    assert "alice@localhost authenticated with SCRAM-SHA-1 over bosh (no TLS)" in server.log_text()


def test_discovery_names_the_proxy(proxied: tuple[RunningServer, int]) -> None:
    _server, port = proxied
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/host-meta.json") as got:
        text = got.read().decode()
    assert f"ws://127.0.0.1:{port}/xmpp-websocket" in text
    assert f"http://127.0.0.1:{port}/http-bind" in text


def test_the_web_chat_through_nginx(proxied: tuple[RunningServer, int]) -> None:
    _server, port = proxied
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/chat/") as got:
        assert got.status == 200
        assert "converse.min.js" in got.read().decode()


def test_the_documented_configuration_is_the_tested_file() -> None:
    from tests.docblocks import blocks

    (block,) = [b for b in blocks("nginx") if b.verbatim == "examples/nginx-chatgate.conf"]
    assert block.page == "docs/web.md"
    assert block.text == EXAMPLE.read_text()
