"""XEP-0114 components in a two-node cluster (real `chatgate serve` nodes, Redis):
a component connected to one node serves accounts on the other, holds its domain
cluster-wide, and can connect elsewhere once its node died."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Iterator

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from tests.e2e.cluster_harness import NODE_TIMEOUT, ClusterNodeProcess, LocalCluster, start_cluster
from tests.e2e.conftest import logged_in
from tests.e2e.test_components import DOMAIN, SECRET, Raw, component

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXTRA = f"""
[component_listener]
port = 0
failure_delay = 0.2

[[components]]
domain = "{DOMAIN}"
secret = "{SECRET}"
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    cluster = start_cluster(("n1", "n2"), extra=EXTRA, users={"alice": "alice-pass"})
    try:
        yield cluster
    finally:
        cluster.close()
    for name, text in cluster.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text}"


def component_port(node: ClusterNodeProcess) -> int:
    line = node.wait_for_log("listening: components on", since=0)
    match = re.search(r":(\d+) \(", line)
    assert match is not None, line
    return int(match.group(1))


async def test_a_component_on_one_node_serves_accounts_on_another(cluster: LocalCluster) -> None:
    n1, n2 = cluster["n1"], cluster["n2"]
    assert n2.server is not None
    async with (
        component(component_port(n1)) as comp,
        logged_in(n2.server, "alice@localhost", "alice-pass", transport="plain") as alice,
    ):
        await alice.plugin["xep_0199"].ping(slixmpp.JID(DOMAIN), timeout=5)
        comp.send_message(mto="alice@localhost", mfrom=f"bot@{DOMAIN}", mbody="across nodes")
        got = await alice.next_message()
        assert (got["from"], got["body"]) == (f"bot@{DOMAIN}", "across nodes")
        alice.send_message(mto=f"bot@{DOMAIN}", mbody="back", mtype="chat")
        received = await asyncio.wait_for(comp.messages.get(), 10)
        assert received["body"] == "back"
        # The domain is held cluster-wide: the other node refuses a second connection.
        second = Raw(component_port(n2))
        second.handshake(second.open(DOMAIN), SECRET)
        second.expect(rb"<conflict")
        second.close()
    # Gone: service-unavailable from the other node too (its claim was released).
    async with logged_in(n2.server, "alice@localhost", "alice-pass", transport="plain") as alice:
        with pytest.raises(IqError) as caught:
            await alice.plugin["xep_0199"].send_ping(slixmpp.JID(DOMAIN), timeout=5)
        assert caught.value.iq["error"]["condition"] == "service-unavailable"


async def test_stanzas_sent_right_after_the_handshake_wait_for_the_claim(
    cluster: LocalCluster,
) -> None:
    n1, n2 = cluster["n1"], cluster["n2"]
    assert n2.server is not None
    async with logged_in(n2.server, "alice@localhost", "alice-pass", transport="plain") as alice:
        await alice.plugin["xep_0199"].ping(slixmpp.JID("localhost"), timeout=5)
        eager = Raw(component_port(n1))
        stream_id = eager.open(DOMAIN)
        digest = hashlib.sha1((stream_id + SECRET).encode()).hexdigest()
        # One write: the handshake and a stanza before its answer (the claim in Redis).
        eager.send(
            f"<handshake>{digest}</handshake>"
            f"<message from='bot@{DOMAIN}' to='alice@localhost'><body>eager</body></message>"
        )
        eager.expect(rb"<handshake[^>]*/>")
        got = await alice.next_message()
        assert got["body"] == "eager"
        eager.close()
    await asyncio.sleep(0.3)  # the claim is released


async def test_after_its_node_died_a_component_connects_to_another(cluster: LocalCluster) -> None:
    n1, n2 = cluster["n1"], cluster["n2"]
    assert n2.server is not None
    held = Raw(component_port(n1))
    held.handshake(held.open(DOMAIN), SECRET)
    held.expect(rb"<handshake[^>]*/>")
    n1.kill()
    held.close()
    port = component_port(n2)
    deadline = time.monotonic() + NODE_TIMEOUT * 4
    while True:  # refused with conflict until the dead node's claim expires
        attempt = Raw(port)
        attempt.handshake(attempt.open(DOMAIN), SECRET)
        data = attempt.expect(rb"<handshake[^>]*/>|<conflict")
        if b"<conflict" not in data:
            break
        attempt.close()
        assert time.monotonic() < deadline, "the dead node's claim did not expire"
        await asyncio.sleep(0.3)
    try:
        async with logged_in(
            n2.server, "alice@localhost", "alice-pass", transport="plain"
        ) as alice:
            # A round trip after the initial presence: alice is available from now on.
            await alice.plugin["xep_0199"].ping(slixmpp.JID("localhost"), timeout=5)
            attempt.send(
                f"<message from='bot@{DOMAIN}' to='alice@localhost'><body>moved</body></message>"
            )
            got = await alice.next_message()
            assert got["body"] == "moved"
    finally:
        attempt.close()
