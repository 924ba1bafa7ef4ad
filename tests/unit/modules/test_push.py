"""XEP-0357 push notifications through the real connection, router and modules.

The XMPP path is checked on what an app server connected as a client receives;
the HTTP path against a real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chatgate.modules.push_limits import Defer, LocalNotificationLimiter, Send

from .test_blocking import Client, condition, of
from .wire import Server

C = "{jabber:client}"
PUBSUB = "{http://jabber.org/protocol/pubsub}"
PUSH = "{urn:xmpp:push:0}"
X = "{jabber:x:data}"
APP = "pushbot@localhost/app"
OPTIONS = (
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
    "</field><field var='secret'><value>s3cret</value></field></x>"
)


@contextlib.asynccontextmanager
async def server(tmp: Path, **push: Any) -> AsyncIterator[Server]:
    push.setdefault("min_interval", 0.0)
    srv = await Server.start(tmp, {"push": push})
    for name in ("alice", "bob", "pushbot"):
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, resource: str = "r") -> Client:
    wire = srv.connect()
    assert "<jid>" in await wire.login_plain(user, f"{user}-pw", resource)
    client = Client(wire)
    await client.send("<presence/>")
    return client


def enable(node: str = "n1", jid: str = APP, form: str = OPTIONS) -> str:
    return (
        f"<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' jid='{jid}' node='{node}'>"
        f"{form}</enable></iq>"
    )


def chat(to: str, body: str, msg_id: str = "m") -> str:
    return f"<message to='{to}' type='chat' id='{msg_id}'><body>{body}</body></message>"


async def registered(srv: Server, *nodes: str, **push: Any) -> Client:
    """alice registers `nodes` with the app server, then goes offline."""
    alice = await login(srv, "alice")
    for node in nodes:
        (reply,) = of(await alice.send(enable(node)), "iq", id="e")
        assert reply.get("type") == "result"
    alice.wire.conn.connection_lost()
    await alice.wire.settle()
    return alice


def summary(iq: ET.Element) -> tuple[str | None, dict[str, list[str]], dict[str, list[str]]]:
    """(node, notification fields, publish-options fields) of a publish IQ."""
    pubsub = iq.find(PUBSUB + "pubsub")
    assert pubsub is not None
    publish = pubsub.find(PUBSUB + "publish")
    assert publish is not None
    form = publish.find(f"{PUBSUB}item/{PUSH}notification/{X}x")
    assert form is not None

    def fields(x: ET.Element | None) -> dict[str, list[str]]:
        if x is None:
            return {}
        return {
            f.get("var", ""): [v.text or "" for v in f.findall(X + "value")]
            for f in x.findall(X + "field")
        }

    return (
        publish.get("node"),
        fields(form),
        fields(pubsub.find(f"{PUBSUB}publish-options/{X}x")),
    )


# ---------------------------------------------------------------- registration


async def test_enable_and_disable_errors(tmp_path: Path) -> None:
    async with server(tmp_path, max_registrations=2) as srv:
        alice = await login(srv, "alice")
        bad_form = (
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>other</value>"
            "</field></x>"
        )
        huge = OPTIONS.replace("s3cret", "x" * 5000)
        cases = {
            "<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' node='n'/></iq>": "bad-request",
            "<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' jid='a@b'/></iq>": (
                "bad-request"
            ),
            enable(jid="a@@b"): "jid-malformed",
            enable(form=bad_form): "bad-request",
            enable(form="<x xmlns='jabber:x:data' type='form'/>"): "bad-request",
            enable(form=huge): "not-acceptable",
            "<iq type='set' id='e'><other xmlns='urn:xmpp:push:0'/></iq>": "bad-request",
        }
        for text, expected in cases.items():
            (reply,) = of(await alice.send(text), "iq", id="e")
            assert reply.get("type") == "error" and condition(reply) == expected, text
        repo = srv.module("push").repository
        assert await repo.targets(("alice", "localhost")) == []
        for node in ("a", "b", "a"):  # enabling "a" again replaces it
            (reply,) = of(await alice.send(enable(node)), "iq", id="e")
            assert reply.get("type") == "result"
        (reply,) = of(await alice.send(enable("c")), "iq", id="e")
        assert condition(reply) == "resource-constraint"
        assert [t.node for t in await repo.targets(("alice", "localhost"))] == ["a", "b"]
        out = await alice.send(
            f"<iq type='set' id='e'><disable xmlns='urn:xmpp:push:0' jid='{APP}'/></iq>"
        )
        assert [r.get("type") for r in of(out, "iq", id="e")] == ["result"]
        assert await repo.targets(("alice", "localhost")) == []


# ---------------------------------------------------------------- notifications over XMPP


async def test_an_offline_recipient_wakes_the_app_server(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        await registered(srv, "device-1")
        app = await login(srv, "pushbot", "app")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "secret words"))
        (iq,) = of(app.take(), "iq", type="set")
        assert iq.get("from") == "alice@localhost" and iq.get("to") == APP
        node, fields, options = summary(iq)
        assert node == "device-1"
        assert fields == {"FORM_TYPE": ["urn:xmpp:push:summary"], "message-count": ["1"]}
        assert options == {
            "FORM_TYPE": ["http://jabber.org/protocol/pubsub#publish-options"],
            "secret": ["s3cret"],
        }
        # The app server's answer goes nowhere and breaks nothing.
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        # Chat states and errors wake nobody.
        await bob.send(
            "<message to='alice@localhost' type='chat'>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )
        assert of(app.take(), "iq") == []


async def test_sender_and_body_only_when_configured(tmp_path: Path) -> None:
    async with server(tmp_path, include_sender=True, include_body=True) as srv:
        await registered(srv, "d")
        app = await login(srv, "pushbot", "app")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "hello"))
        (iq,) = of(app.take(), "iq", type="set")
        _node, fields, _options = summary(iq)
        assert fields["last-message-sender"] == ["bob@localhost/r"]
        assert fields["last-message-body"] == ["hello"]


async def test_no_notification_when_a_session_got_the_message(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        await registered(srv, "d")
        app = await login(srv, "pushbot", "app")
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "online"))
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == ["online"]
        assert of(app.take(), "iq") == []


async def test_notifications_are_rate_limited_and_coalesced(tmp_path: Path) -> None:
    async with server(tmp_path, min_interval=1.0) as srv:
        await registered(srv, "d")
        app = await login(srv, "pushbot", "app")
        bob = await login(srv, "bob")
        await bob.wire.send("".join(chat("alice@localhost", f"n{i}", f"m{i}") for i in range(4)))
        # settle() waited for the deferred notification: one now, one for the rest.
        counts = [summary(iq)[1]["message-count"] for iq in of(app.take(), "iq", type="set")]
        assert counts == [["1"], ["3"]]


def test_limiter_decisions() -> None:
    limiter = LocalNotificationLimiter(interval=10.0, max_entries=2)
    assert limiter.admit("k", 0.0, "s", "b") == Send(1)
    assert limiter.admit("k", 1.0, "s", "b1") == Defer(9.0)
    assert limiter.admit("k", 2.0, "s2", "b2") is None
    assert limiter.flush("k", 10.0) == (2, "s2", "b2")
    assert limiter.flush("k", 10.5) is None  # nothing counted since
    assert limiter.admit("k", 21.0, "s", "b") == Send(1)
    # Bounded: old registrations are forgotten first.
    limiter.admit("x", 21.0, "s", "b")
    limiter.admit("y", 21.0, "s", "b")
    assert limiter.admit("k", 22.0, "s", "b") == Send(1)


async def test_an_unreachable_app_server_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatgate.modules.push")
    async with server(tmp_path) as srv:
        await registered(srv, "d")  # pushbot/app is not connected
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "hi"))
        assert any("not reachable" in r.getMessage() for r in caplog.records)
        assert await srv.db.offline.count(("alice", "localhost")) == 1


# ---------------------------------------------------------------- notifications over HTTP


@contextlib.asynccontextmanager
async def gateway(delay: float = 0.0) -> AsyncIterator[tuple[str, list[Any], list[int]]]:
    """A real aiohttp server recording the JSON it is posted, and the most POSTs
    it saw at once."""
    received: list[Any] = []
    peak = [0, 0]  # in flight now, most at once

    async def notify(request: web.Request) -> web.Response:
        peak[0] += 1
        peak[1] = max(peak[1], peak[0])
        try:
            received.append(await request.json())
            await asyncio.sleep(delay)
        finally:
            peak[0] -= 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/notify", received, peak
    finally:
        await runner.cleanup()


async def test_http_gateway_gets_a_json_summary_without_the_body(tmp_path: Path) -> None:
    async with gateway() as (url, received, _peak), server(tmp_path, http_url=url) as srv:
        await registered(srv, "device-1")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "private words"))
        assert received == [
            {
                "account": "alice@localhost",
                "service": APP,
                "node": "device-1",
                "options": {"secret": ["s3cret"]},
                "message_count": 1,
            }
        ]
        assert "private words" not in json.dumps(received)
        assert srv.module("push").notifier.sent == 1


async def test_http_posts_are_bounded_in_concurrency(tmp_path: Path) -> None:
    nodes = [f"d{i}" for i in range(6)]
    async with (
        gateway(delay=0.1) as (url, received, peak),
        server(tmp_path, http_url=url, http_concurrency=2, max_registrations=10) as srv,
    ):
        await registered(srv, *nodes)
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "x"))
        await bob.wire.settle()
        assert sorted(r["node"] for r in received) == nodes
        assert peak[1] == 2


async def test_http_timeout_and_errors_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chatgate.modules.push")
    async with (
        gateway(delay=2.0) as (url, _received, _peak),
        server(tmp_path, http_url=url, http_timeout=0.2) as srv,
    ):
        await registered(srv, "d")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "x"))
        assert any("failed" in r.getMessage() for r in caplog.records)
        assert srv.module("push").notifier.sent == 0
        assert srv.module("push").notifier.pending == 0


async def test_past_max_pending_notifications_are_dropped_and_counted(tmp_path: Path) -> None:
    async with (
        gateway(delay=0.2) as (url, received, _peak),
        server(tmp_path, http_url=url, max_pending=2, max_registrations=10) as srv,
    ):
        await registered(srv, "a", "b", "c", "d")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "x"))
        notifier = srv.module("push").notifier
        # One task read the registrations; one POST fitted beside it, the rest dropped.
        assert len(received) == 1 and notifier.dropped == 3 and notifier.pending == 0


async def test_a_hibernated_session_wakes_the_app_server_until_it_is_resumed(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice", "phone")
        (reply,) = of(await alice.send(enable("device-1")), "iq", id="e")
        assert reply.get("type") == "result"
        enabled = await alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        assert any(e.tag == "{urn:xmpp:sm:3}enabled" for e in enabled)
        app = await login(srv, "pushbot", "app")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost/phone", "while you are here"))
        assert of(app.take(), "iq") == []  # delivered to a live session: no push
        alice.wire.conn.connection_lost()  # the network is gone: hibernated
        await alice.wire.settle()
        await bob.send(chat("alice@localhost/phone", "while you are away"))
        (iq,) = of(app.take(), "iq", type="set")
        assert summary(iq)[0] == "device-1"
