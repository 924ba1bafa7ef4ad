"""Request bookkeeping over real HTTP: rid order, retransmission, the window,
held requests, malformed, oversized and unknown bodies (XEP-0124 §10-§14, §17)."""

from __future__ import annotations

import asyncio

import aiohttp

from .bosh_client import CLIENT, BoshClient, BoshServer, q


async def _ping(client: BoshClient, rid: int, iq_id: str) -> asyncio.Task:
    payload = f"<iq xmlns='{CLIENT}' type='get' id='{iq_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    return asyncio.ensure_future(client.send(payload, rid=rid))


async def test_out_of_order_rids_are_processed_in_order(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.login("alice", "alice-password")
        first, second = client.next_rid(), client.next_rid()
        later = await _ping(client, second, "second")
        await asyncio.sleep(0.2)
        assert not later.done()  # rid `first` is missing: `second` waits unprocessed
        earlier = await _ping(client, first, "first")
        replies = [await earlier, await later]
    ids = [
        iq.get("id")
        for reply in replies
        for iq in reply.body.iter(q(CLIENT, "iq"))
        if iq.get("type") == "result"
    ]
    assert ids == ["first", "second"]


async def test_repeated_rid_gets_the_same_response(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.login("alice", "alice-password")
        rid = client.next_rid()
        payload = f"<iq xmlns='{CLIENT}' type='get' id='once' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        original = await client.send(payload, rid=rid)
        again = await client.send(payload, rid=rid)
    assert original.status == again.status == 200
    assert "id='once'" in original.text or 'id="once"' in original.text
    assert again.text == original.text


async def test_rid_beyond_the_window_is_item_not_found(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create(hold=1)  # requests = 2: rids next and next+1 only
        reply = await client.send(rid=client.next_rid() + 5)
        after = await client.send()
    assert reply.status == 404
    assert (reply.type, reply.condition) == ("terminate", "item-not-found")
    assert after.status == 404  # the session is gone
    assert bosh_server.bosh_sessions == 0
    assert bosh_server.connections == 0


async def test_old_rid_without_cached_response_is_item_not_found(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create(hold=1)
        reply = await client.send(rid=900)
    assert reply.status == 404
    assert reply.condition == "item-not-found"


async def test_never_more_than_hold_requests_held(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create(wait=2, hold=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        held = asyncio.ensure_future(client.send())
        await asyncio.sleep(0.2)
        assert not held.done()  # held: nothing to say yet
        newer = asyncio.ensure_future(client.send())
        first = await asyncio.wait_for(held, 1)
        # the older one was answered, empty, as soon as the newer one arrived
        assert loop.time() - started < 1.5
        assert first.status == 200 and first.children() == [] and first.type is None
        assert not newer.done()
        second = await newer  # answered empty when `wait` passes
    assert second.status == 200 and second.type is None
    assert loop.time() - started >= 1.9


async def test_too_many_simultaneous_requests_is_policy_violation(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create(wait=2, hold=2)  # requests = 3
        base = client.next_rid()
        held = [
            asyncio.ensure_future(client.send(rid=base)),
            asyncio.ensure_future(client.send(rid=base + 1)),
        ]
        await asyncio.sleep(0.2)
        gap = asyncio.ensure_future(client.send(rid=base + 3))  # waits for base+2
        await asyncio.sleep(0.2)
        reply = await client.send(rid=base + 4)  # a fourth at once: too many
        others = await asyncio.gather(*held, gap)
    assert (reply.type, reply.condition) == ("terminate", "policy-violation")
    assert all(o.type == "terminate" for o in others)
    assert bosh_server.bosh_sessions == 0


async def test_malformed_body_is_bad_request(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        broken = await client.raw("<body xmlns='http://jabber.org/protocol/httpbind' rid='1'")
        not_body = await client.raw("<stream xmlns='http://jabber.org/protocol/httpbind' rid='1'/>")
        wrong_ns = await client.raw("<body xmlns='jabber:client' rid='1'/>")
        no_rid = await client.raw("<body xmlns='http://jabber.org/protocol/httpbind'/>")
        comment = await client.raw(
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='1'><!-- x --></body>"
        )
    for reply in (broken, not_body, wrong_ns, no_rid, comment):
        assert reply.status == 400, reply.text
        assert (reply.type, reply.condition) == ("terminate", "bad-request")
    assert bosh_server.bosh_sessions == 0


async def test_malformed_body_in_a_session_ends_it(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create()
        reply = await client.raw(client.wrap("<message><unclosed></message>"))
    assert reply.status == 400
    assert reply.condition == "bad-request"
    assert bosh_server.bosh_sessions == 0
    assert bosh_server.connections == 0


async def test_oversized_body_is_413(bosh_server: BoshServer) -> None:
    assert bosh_server.server.http is not None
    limit = bosh_server.server.http.options.max_request_size
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create()
        big = client.wrap("<message><body>" + "x" * (limit + 10) + "</body></message>")
        reply = await client.raw(big)
        # the endpoint still serves the session afterwards
        after = await client.send()
    assert reply.status == 413
    assert reply.type == "terminate"
    assert after.status == 200


async def test_oversized_stanza_before_login_is_policy_violation(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create()
        reply = await client.send("<message><body>" + "x" * 70_000 + "</body></message>")
    assert reply.condition == "policy-violation"
    assert bosh_server.bosh_sessions == 0


async def test_wrong_sid_is_404_item_not_found(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create()
        client.sid = "no-such-session"
        reply = await client.send()
    assert reply.status == 404
    assert (reply.type, reply.condition) == ("terminate", "item-not-found")
    assert bosh_server.bosh_sessions == 1  # the real one is untouched


async def test_get_says_what_the_endpoint_is(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(bosh_server.url) as response:
        text = await response.text()
    assert response.status == 200
    assert "BOSH" in text


async def test_ack_is_reported_when_asked_for(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url, first_rid=500)
        created = await client.create(hold=1, ack="1")
        assert created.body.get("ack") == "500"
        held = asyncio.ensure_future(client.send(rid=501))
        await asyncio.sleep(0.1)
        newer = asyncio.ensure_future(client.send(rid=502))
        answered = await asyncio.wait_for(held, 1)
        await newer
    # 501 was answered after 502 arrived: the ack says 502 was received
    assert answered.body.get("ack") == "502"


async def test_creation_body_with_too_many_stanzas_is_refused(bosh_server: BoshServer) -> None:
    assert bosh_server.server.ctx is not None
    burst = bosh_server.server.ctx.config.limits.preauth_stanza_burst
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        body = (
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost'"
            " xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'>"
            + "<presence/>" * (burst + 1)
            + "</body>"
        )
        reply = await client.raw(body)
    assert reply.type == "terminate" and reply.status == 400
    assert bosh_server.bosh_sessions == 0


async def test_creation_body_over_the_preauth_size_is_413(bosh_server: BoshServer) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        body = (
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost'>"
            + "<message><body>"
            + "x" * 70_000
            + "</body></message></body>"
        )
        reply = await client.raw(body)
    assert reply.status == 413
    assert (reply.type, reply.condition) == ("terminate", "policy-violation")
    assert bosh_server.bosh_sessions == 0
