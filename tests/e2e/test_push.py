"""XEP-0357 push notifications against the real `chatgate serve`.

slixmpp (1.x here) has no xep_0357 plugin, so the client sends the enable IQ as
XEP-0357 §5 writes it; the app server is a slixmpp client, and the HTTP gateway a
real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import slixmpp
from aiohttp import web
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .conftest import Client, RunningServer, logged_in, start_server

pytestmark = pytest.mark.e2e

PUBSUB = "http://jabber.org/protocol/pubsub"
ENABLE = (
    "<enable xmlns='urn:xmpp:push:0' jid='pushbot@localhost/app' node='device-7'>"
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
    "</field><field var='secret'><value>tok</value></field></x></enable>"
)


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob", "pushbot"):
        server.add_user(name, f"{name}-password")


async def register(client: Client) -> None:
    iq = client.make_iq_set()
    iq.append(ET.fromstring(ENABLE))
    result = await iq.send(timeout=10)
    assert result["type"] == "result"


def publishes(client: Client) -> asyncio.Queue[slixmpp.Iq]:
    """What an app server connected as `client` is sent (it answers each with a result)."""
    queue: asyncio.Queue[slixmpp.Iq] = asyncio.Queue()

    def got(iq: slixmpp.Iq) -> None:
        queue.put_nowait(iq)
        iq.reply(clear=True).send()

    client.register_handler(
        Callback("push publish", MatchXPath(f"{{jabber:client}}iq/{{{PUBSUB}}}pubsub"), got)
    )
    return queue


async def test_push_over_xmpp_for_an_offline_recipient(server: RunningServer) -> None:
    async with logged_in(server, "alice@localhost/phone", "alice-password") as alice:
        await register(alice)
    async with (
        logged_in(server, "pushbot@localhost/app", "pushbot-password") as app,
        logged_in(server, "bob@localhost/pc", "bob-password") as bob,
    ):
        queue = publishes(app)
        bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
        iq = await asyncio.wait_for(queue.get(), 10)
        assert iq["from"] == "alice@localhost"
        xml = iq.xml
        publish = xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        assert publish is not None and publish.get("node") == "device-7"
        values = {
            f.get("var"): [v.text for v in f.findall("{jabber:x:data}value")]
            for f in xml.iter("{jabber:x:data}field")
        }
        assert values["message-count"] == ["1"] and values["secret"] == ["tok"]
        assert "wake up" not in ET.tostring(xml, encoding="unicode")
    # The message itself waits in offline storage.
    async with logged_in(server, "alice@localhost/phone", "alice-password") as alice:
        got = await alice.next_message()
        assert got["body"] == "wake up"


@contextlib.asynccontextmanager
async def gateway() -> AsyncIterator[tuple[str, asyncio.Queue[Any]]]:
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def notify(request: web.Request) -> web.Response:
        received.put_nowait(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/notify", received
    finally:
        await runner.cleanup()


async def test_push_over_http_gateway(tmp_path: Path) -> None:
    async with gateway() as (url, received):
        srv = start_server(tmp_path, f'\n[modules.push]\nhttp_url = "{url}"\nmin_interval = 0.0\n')
        try:
            srv.add_user("alice", "alice-password")
            srv.add_user("bob", "bob-password")
            async with logged_in(srv, "alice@localhost/phone", "alice-password") as alice:
                await register(alice)
            async with logged_in(srv, "bob@localhost/pc", "bob-password") as bob:
                bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
                summary = await asyncio.wait_for(received.get(), 10)
            assert summary == {
                "account": "alice@localhost",
                "service": "pushbot@localhost/app",
                "node": "device-7",
                "options": {"secret": ["tok"]},
                "message_count": 1,
            }
        finally:
            assert srv.stop() == 0
        assert "Traceback" not in srv.log_text()
