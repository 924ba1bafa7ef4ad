"""Strophe.js (from npm, in Debian's Chromium) against the real server, over WebSocket
and over BOSH, chatting with a slixmpp client on TCP: the mechanism whitelist of the
page is what the server logs, and a mechanism the page brings itself (OAUTHBEARER,
the plugin of docs/sasl-plugins.md, implemented here in the page) logs in when the
server offers it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningServer, logged_in
from tests.e2e.test_sasl_plugin import TOKEN, _env, plugin_path  # noqa: F401 (fixture)
from tests.e2e.web import start_web_server

from .conftest import StaticSite

PASSWORD = "strophe-password-1"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Strophe.js against chatgate</title>
<script src="/assets/strophe.js/strophe.umd.min.js"></script>
<script src="/page.js"></script>
"""

#: The page's own SASL mechanism: RFC 7628 OAUTHBEARER, written against Strophe's
#: SASLMechanism API (not Strophe's built-in class of the same name).
PAGE_JS = r"""
class PageOAuthBearer extends Strophe.SASLMechanism {
  constructor() { super("OAUTHBEARER", true, 90); }
  onChallenge(connection) {
    window.customMechanismUsed = true;
    return `n,a=${connection.authzid},\x01auth=Bearer ${connection.pass}\x01\x01`;
  }
}
window.inbox = [];
window.login = ({url, jid, password, mechanism}) => new Promise((resolve, reject) => {
  const options = {};
  if (mechanism === "SCRAM-SHA-1") options.mechanisms = [Strophe.SASLSHA1];
  if (mechanism === "page-oauthbearer") options.mechanisms = [PageOAuthBearer];
  const conn = new Strophe.Connection(url, options);
  window.conn = conn;
  conn.connect(jid, password, (status, condition) => {
    if (status === Strophe.Status.CONNECTED) {
      conn.addHandler((msg) => {
        const body = msg.getElementsByTagName("body")[0];
        if (body) window.inbox.push(body.textContent);
        return true;
      }, null, "message");
      conn.send($pres());
      resolve(conn.jid);
    } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL,
                Strophe.Status.ERROR].includes(status)) {
      reject(new Error(`Strophe status ${status} ${condition || ""}`));
    }
  });
});
window.say = (to, text) => conn.send($msg({to, type: "chat"}).c("body").t(text));
"""


def _site(
    tmp: Path, web_assets: Path, static_site: Callable[[Mapping[str, Path]], StaticSite]
) -> StaticSite:
    (tmp / "page").mkdir()
    (tmp / "page" / "index.html").write_text(PAGE)
    (tmp / "page" / "page.js").write_text(PAGE_JS)
    return static_site({"/": tmp / "page", "/assets/": web_assets})


def _server(tmp: Path, origin: str, **kwargs: Any) -> RunningServer:
    # The page comes from another origin (the static site): BOSH needs CORS for it.
    return start_web_server(tmp, f'cors_origins = ["{origin}"]\n', **kwargs)


async def _chat(page: Any, server: RunningServer, url: str, mechanism: str) -> str:
    """Log the page in as alice over `url`; a message each way with bob on TCP."""
    jid = await page.evaluate(
        "args => window.login(args)",
        {
            "url": url,
            "jid": "alice@localhost/strophe",
            "password": PASSWORD,
            "mechanism": mechanism,
        },
    )
    assert jid == "alice@localhost/strophe"
    async with logged_in(server, "bob@localhost", PASSWORD) as bob:
        await page.evaluate(
            "([to, text]) => window.say(to, text)", ["bob@localhost", "from Strophe"]
        )
        got = await asyncio.wait_for(bob.messages.get(), 10)
        assert got["body"] == "from Strophe" and str(got["from"]) == jid
        bob.send_message(mto=jid, mbody="from slixmpp", mtype="chat")
        await page.wait_for_function("window.inbox.includes('from slixmpp')")
    return jid


@pytest.mark.parametrize("transport", ["websocket", "bosh"])
async def test_strophe_chats_with_slixmpp(
    transport: str, page: Any, tmp_path: Path, web_assets: Path, static_site: Any
) -> None:
    site = _site(tmp_path, web_assets, static_site)
    server = _server(tmp_path, site.origin)
    try:
        for name in ("alice", "bob"):
            server.add_user(name, PASSWORD)
        await page.goto(site.url("/index.html"))
        base = f"127.0.0.1:{server.http_port}"
        url = (
            f"ws://{base}/xmpp-websocket"
            if transport == "websocket"
            else f"http://{base}/http-bind"
        )
        await _chat(page, server, url, "SCRAM-SHA-1")
        assert f"alice@localhost authenticated with SCRAM-SHA-1 over {transport} (no TLS)" in (
            server.log_text()
        )
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log_text(), server.log_text()


async def test_a_page_mechanism_logs_in_when_the_server_offers_it(
    page: Any,
    tmp_path: Path,
    web_assets: Path,
    static_site: Any,
    plugin_path: Path,  # noqa: F811
) -> None:
    site = _site(tmp_path, web_assets, static_site)
    server_env = _env(plugin_path)
    server = start_web_server(
        tmp_path,
        f'cors_origins = ["{site.origin}"]\n',
        auth='mechanisms = ["SCRAM-SHA-256", "OAUTHBEARER"]\nallow_plain_without_tls = true\n',
        env=server_env,
    )
    try:
        server.add_user("alice", TOKEN)
        server.add_user("bob", PASSWORD)
        await page.goto(site.url("/index.html"))
        jid = await page.evaluate(
            "args => window.login(args)",
            {
                "url": f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                "jid": "alice@localhost/token",
                "password": TOKEN,
                "mechanism": "page-oauthbearer",
            },
        )
        assert jid == "alice@localhost/token"
        assert await page.evaluate("window.customMechanismUsed") is True
        assert "alice@localhost authenticated with OAUTHBEARER over websocket" in server.log_text()
    finally:
        assert server.stop() == 0
