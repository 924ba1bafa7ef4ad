"""A BOSH session's life with other clients and with time: messages to and from
a slixmpp client on TCP, terminate, inactivity, pause, vanished clients, server
stop (XEP-0124 §10-§13, XEP-0206)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp
import pytest
import slixmpp

from .bosh_client import CLIENT, BoshClient, BoshServer, q, start_server, wrap


async def _slixmpp(server: BoshServer, jid: str, password: str) -> slixmpp.ClientXMPP:
    client = slixmpp.ClientXMPP(jid, password)
    client.enable_plaintext = True
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
    client.connect("127.0.0.1", server.tcp_port)
    await asyncio.wait_for(started, 15)
    return client


async def test_message_to_a_tcp_client_and_back(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    await bosh_server.add_user("bob", "bob-password")
    bob = await _slixmpp(bosh_server, "bob@localhost/tcp", "bob-password")
    received: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
    bob.add_event_handler("message", received.put_nowait)
    try:
        async with aiohttp.ClientSession() as http:
            alice = BoshClient(http, bosh_server.url)
            jid = await alice.login("alice", "alice-password")
            await alice.send(
                f"<message xmlns='{CLIENT}' to='bob@localhost/tcp' type='chat'>"
                "<body>hello from BOSH</body></message>"
            )
            message = await asyncio.wait_for(received.get(), 10)
            assert message["body"] == "hello from BOSH"
            assert str(message["from"]) == jid
            # Bob answers while Alice holds a request: the held request carries it.
            held = asyncio.ensure_future(alice.send())
            await asyncio.sleep(0.1)
            bob.send_message(mto=jid, mbody="hello from TCP", mtype="chat")
            reply = await asyncio.wait_for(held, 5)
            bodies = [b.text for b in reply.body.iter(q(CLIENT, "body"))]
            assert bodies == ["hello from TCP"]
            # Unqualified children of <body/> are jabber:client stanzas (lenient).
            await alice.send(
                "<message to='bob@localhost/tcp' type='chat'><body>bare</body></message>"
            )
            message = await asyncio.wait_for(received.get(), 10)
            assert message["body"] == "bare"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bob.disconnect(), 5)


async def test_output_while_no_request_is_held_waits_for_the_next(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    await bosh_server.add_user("bob", "bob-password")
    bob = await _slixmpp(bosh_server, "bob@localhost/tcp", "bob-password")
    try:
        async with aiohttp.ClientSession() as http:
            alice = BoshClient(http, bosh_server.url)
            jid = await alice.login("alice", "alice-password")
            bob.send_message(mto=jid, mbody="while you were away", mtype="chat")
            await asyncio.sleep(0.3)
            reply = await alice.send()
        assert [b.text for b in reply.body.iter(q(CLIENT, "body"))] == ["while you were away"]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bob.disconnect(), 5)


async def test_terminate_ends_the_stream_and_the_session(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        alice = BoshClient(http, bosh_server.url)
        await alice.login("alice", "alice-password")
        assert bosh_server.connections == 1
        reply = await alice.send(
            f"<presence xmlns='{CLIENT}' type='unavailable'/>", type="terminate"
        )
        later = await alice.send()
    assert reply.status == 200
    assert (reply.type, reply.condition) == ("terminate", None)
    assert later.status == 404
    assert bosh_server.bosh_sessions == 0
    assert bosh_server.connections == 0
    assert bosh_server.server.ctx is not None
    assert not bosh_server.server.ctx.router.directory.bound_here("alice@localhost")


async def test_inactive_session_expires(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        alice = BoshClient(http, bosh_server.url)
        await alice.login("alice", "alice-password")
        assert bosh_server.bosh_sessions == 1
        await asyncio.sleep(4)  # inactivity is 5 s: still alive
        assert bosh_server.bosh_sessions == 1
        await asyncio.sleep(2)
        reply = await alice.send()
    assert bosh_server.bosh_sessions == 0
    assert bosh_server.connections == 0
    assert reply.status == 404 and reply.condition == "item-not-found"


async def test_vanished_clients_leave_nothing_behind(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        clients = [BoshClient(http, bosh_server.url, first_rid=10 * i) for i in range(1, 6)]
        await asyncio.gather(*(c.create() for c in clients[:4]))
        await clients[4].login("alice", "alice-password")
        # one of them leaves a request held, then vanishes too
        held = asyncio.ensure_future(clients[0].send())
        await held
    assert bosh_server.bosh_sessions == 5
    assert bosh_server.connections == 5
    await asyncio.sleep(7.5)  # wait (2 s) + inactivity (5 s)
    assert bosh_server.bosh_sessions == 0
    assert bosh_server.connections == 0


async def test_pause_over_maxpause_is_policy_violation(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        created = await client.create()
        assert created.body.get("maxpause") == "120"
        reply = await client.send(pause="500")
    assert reply.condition == "policy-violation"
    assert bosh_server.bosh_sessions == 0


async def test_pause_answers_held_requests_and_extends_inactivity(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create(hold=1)
        held = asyncio.ensure_future(client.send())
        await asyncio.sleep(0.1)
        reply = await asyncio.wait_for(client.send(pause="9"), 1)
        assert (await asyncio.wait_for(held, 1)).status == 200
        assert reply.status == 200 and reply.type is None
        await asyncio.sleep(6.5)  # past inactivity (5 s), within the pause
        assert bosh_server.bosh_sessions == 1
        after = await client.send()
    assert after.status == 200 and after.type is None


async def test_polling_too_often_is_policy_violation(tmp_path: Path) -> None:
    server = wrap(await start_server(tmp_path, polling=5))
    try:
        async with aiohttp.ClientSession() as http:
            client = BoshClient(http, server.url)
            created = await client.create(hold=0)
            assert created.body.get("polling") == "5"
            assert created.body.get("requests") == "1"
            first = await client.send()
            second = await client.send()
        assert first.type is None
        assert second.condition == "policy-violation"
        assert server.bosh_sessions == 0
    finally:
        await server.server.stop()


async def test_server_stop_answers_held_requests_with_system_shutdown(tmp_path: Path) -> None:
    server = wrap(await start_server(tmp_path))
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, server.url)
        await client.create(hold=1)
        held = asyncio.ensure_future(client.send())
        await asyncio.sleep(0.2)
        await server.server.stop()
        reply = await asyncio.wait_for(held, 5)
    assert (reply.type, reply.condition) == ("terminate", "system-shutdown")
    assert server.bosh_sessions == 0


async def test_max_sessions_refuses_more(tmp_path: Path) -> None:
    server = wrap(await start_server(tmp_path, max_sessions=2))
    try:
        async with aiohttp.ClientSession() as http:
            replies = [await BoshClient(http, server.url).create() for _ in range(3)]
        assert [r.type for r in replies] == [None, None, "terminate"]
        assert replies[2].condition == "remote-stream-error"
        assert "resource-constraint" in replies[2].text
        assert server.bosh_sessions == 2
    finally:
        await server.server.stop()


async def test_refused_sessions_are_logged_once_per_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(tmp_path, max_sessions=1)
    try:
        url = wrap(server).url
        async with aiohttp.ClientSession() as http:
            await BoshClient(http, url).create()
            with caplog.at_level(logging.WARNING, logger="chatgate.http.bosh"):
                for _ in range(20):
                    reply = await BoshClient(http, url).create()
                    assert "resource-constraint" in reply.text
        lines = [r for r in caplog.records if "refused new sessions" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
    finally:
        await server.stop()
