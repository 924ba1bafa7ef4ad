"""BOSH timers are lazy (bosh_session.py: one `wait` timer and one inactivity timer per
session, re-armed when they fire): a held request is still answered when its `wait`
is over, each one on its own deadline, and the inactivity period counts from the
last moment the session went idle, not from an earlier idle period."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .bosh_client import BoshClient, BoshServer


async def test_held_requests_are_answered_after_wait_each_on_its_own(
    bosh_server: BoshServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, bosh_server.url)
        await client.create(wait=2, hold=2)
        t0 = time.monotonic()
        first = asyncio.ensure_future(client.send())
        await asyncio.sleep(0.8)
        second = asyncio.ensure_future(client.send())
        first_reply = await asyncio.wait_for(first, 5)
        t1 = time.monotonic() - t0
        second_reply = await asyncio.wait_for(second, 5)
        t2 = time.monotonic() - t0
    assert first_reply.status == second_reply.status == 200
    assert first_reply.type is None and second_reply.type is None
    assert 1.8 < t1 < 2.6, t1  # wait = 2 s
    assert 2.6 < t2 < 3.4, t2  # its own 2 s, from 0.8 s


async def test_inactivity_counts_from_the_last_idle_moment(bosh_server: BoshServer) -> None:
    await bosh_server.add_user("alice", "alice-password")
    async with aiohttp.ClientSession() as http:
        alice = BoshClient(http, bosh_server.url)
        await alice.login("alice", "alice-password")  # idle from here; inactivity 5 s
        await asyncio.sleep(3)
        await alice.send()  # held for wait (2 s), then answered: idle again from ~5 s
        await asyncio.sleep(3.5)  # ~8.5 s: past the first idle period's end, not this one's
        assert bosh_server.bosh_sessions == 1
        await asyncio.sleep(2.5)  # ~11 s: over 5 s since the session went idle again
        assert bosh_server.bosh_sessions == 0
        reply = await alice.send()
    assert reply.status == 404 and reply.condition == "item-not-found"
    assert bosh_server.connections == 0
