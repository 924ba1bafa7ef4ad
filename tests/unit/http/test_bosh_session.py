"""BOSH session creation, login and stream restart over real HTTP (XEP-0124 §7,
XEP-0206 §3-§5)."""

from __future__ import annotations

import aiohttp

from .bosh_client import SASL, STREAMS, XBOSH, BoshClient, BoshServer, q


async def test_creation_response_carries_session_attributes_and_features(
    bosh_server: BoshServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        reply = await client.create(wait=60, hold=1)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.body
    assert body.get("sid")
    assert body.get("wait") == "2"  # clamped to max_wait
    assert body.get("hold") == "1"
    assert body.get("requests") == "2"
    assert body.get("inactivity") == "5"
    assert body.get("ver") == "1.11"
    assert body.get("from") == "localhost"
    assert body.get("authid")
    assert body.get("secure") == "false"  # plain HTTP
    assert body.get(q(XBOSH, "version")) == "1.0"
    assert body.get(q(XBOSH, "restartlogic")) == "true"
    assert body.get("type") is None
    mechanisms = body.findall(
        f"{q(STREAMS, 'features')}/{q(SASL, 'mechanisms')}/{q(SASL, 'mechanism')}"
    )
    assert "SCRAM-SHA-1" in [m.text for m in mechanisms]
    assert bosh_server.bosh_sessions == 1


async def test_scram_login_restart_and_bind(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        jid = await client.login("alice", "alice-password")
        assert jid == "alice@localhost/web"
        reply = await client.send("", type="terminate")
    assert reply.type == "terminate"
    assert reply.condition is None
    assert bosh_server.bosh_sessions == 0


async def test_wrong_password_gets_sasl_failure(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create()
        reply = await client.send(
            f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNlAHdyb25nLXBhc3N3b3Jk</auth>"
        )
    assert reply.body.find(f"{q(SASL, 'failure')}/{q(SASL, 'not-authorized')}") is not None


async def test_unknown_host_terminates_with_host_unknown(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        body = (
            "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'"
            " rid='5' to='elsewhere.example' wait='2' hold='1' xmpp:version='1.0'/>"
        )
        reply = await client.raw(body)
    assert reply.status == 200
    assert reply.type == "terminate"
    assert reply.condition == "host-unknown"
    assert bosh_server.bosh_sessions == 0
    assert bosh_server.connections == 0


async def test_restart_before_bind_offers_bind(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("bob", "bob-password")
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.login("bob", "bob-password", resource="laptop")
        assert client.creation is not None
    # the features after the restart named bind (asserted in login); the session is live
    assert bosh_server.bosh_sessions == 1
