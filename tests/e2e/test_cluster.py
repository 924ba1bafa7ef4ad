"""Three chatgate nodes on one machine (issue 14): three `chatgate serve` processes,
one PostgreSQL, one Redis, slixmpp clients spread over the nodes.

One test per outcome the issue names, in order, on one cluster started for the
module (`cluster_harness.py`): messages, presence, subscriptions and roster pushes,
offline delivery, resource conflict, registration and a password change seen by
every node, brute-force failures counted from all nodes together; then a node
killed with SIGKILL; then Redis stopped and started again.  The nodes beat every
0.2 s and are dead after 1 s without a beat, so a crash is noticed in ~1.5 s.

On a failure every node's log is kept in `test-artifacts/test_cluster/<test>/`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import slixmpp

from .cluster_harness import (
    NODE_TIMEOUT,
    ClusterNodeProcess,
    LocalCluster,
    logs_kept_on_failure,
    start_cluster,
)
from .conftest import Client, connect

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CHATGATE_TEST_ARTIFACTS", ROOT / "test-artifacts"))

#: every account the tests use, created before the nodes start (name -> password)
USERS = {
    name: f"{name}-secret-1"
    for name in (
        "alice",
        "bob",
        "carol",
        "dave",
        "eve",
        "frank",
        "grace",
        "harry",
        "gina",
        "ivan",
        "judy",
        "kate",
        "mallory",
        "leo",
        "mia",
        "nina",
    )
}
#: brute-force protection of the test cluster: 3 free failures per address, then
#: each failure is held 2 s before it is answered (far above a normal answer's time,
#: even on a loaded machine)
THROTTLE = """
[auth.throttle.address]
free_failures = 3
base_delay = 2.0
max_delay = 2.0
[auth.throttle.account]
free_failures = 1000

[modules.register]
enabled = true
require_tls = false
"""
HOLD = 2.0
STANZA_TIMEOUT = 8.0


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(extra=THROTTLE, users=USERS)
    try:
        yield cluster
    finally:
        codes = cluster.close()
        shutil.rmtree(cluster.folder, ignore_errors=True)
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture(autouse=True)
def _keep_logs_on_failure(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[None]:
    yield from logs_kept_on_failure(request, cluster)


@contextlib.asynccontextmanager
async def online(cluster: LocalCluster, node: str, jid: str) -> AsyncIterator[Client]:
    """`jid` (user[/resource]) logged in on `node`, with roster and initial presence;
    subscription requests are left to the test (no automatic answers)."""
    user = jid.split("@")[0].split("/")[0]
    resource = jid.split("/", 1)[1] if "/" in jid else None
    full = f"{user}@localhost" + (f"/{resource}" if resource else "")
    server = cluster[node].server
    assert server is not None
    client = await connect(server, full, USERS[user], transport="plain", send_presence=False)
    client.auto_authorize = None
    client.auto_subscribe = False
    client.roster_pushes: asyncio.Queue[slixmpp.Iq] = asyncio.Queue()  # type: ignore[misc]
    client.add_event_handler(
        "roster_update",
        lambda iq: iq["type"] == "set" and client.roster_pushes.put_nowait(iq),  # type: ignore[attr-defined]
    )
    await client.get_roster()
    client.send_presence()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


async def next_message(
    client: Client, body: str, timeout: float = STANZA_TIMEOUT
) -> slixmpp.Message:
    """The next message whose body is `body` (others are skipped)."""

    async def wait() -> slixmpp.Message:
        while True:
            message = await client.messages.get()
            if message["body"] == body:
                return message

    return await asyncio.wait_for(wait(), timeout)


async def roster_push(
    client: Client, contact: str, subscription: str, timeout: float = STANZA_TIMEOUT
) -> slixmpp.Iq:
    """The next roster push about `contact` with `subscription`."""

    async def wait() -> slixmpp.Iq:
        while True:
            iq = await client.roster_pushes.get()  # type: ignore[attr-defined]
            items = iq["roster"]["items"]
            if contact in items and items[contact]["subscription"] == subscription:
                return iq

    return await asyncio.wait_for(wait(), timeout)


async def befriend(a: Client, b: Client) -> None:
    """Mutual subscription between `a` and `b` (RFC 6121 §3), checked at each step."""
    for one, other in ((a, b), (b, a)):
        one.send_presence(pto=other.boundjid.bare, ptype="subscribe")
        await other.next_presence("subscribe", sender=one.boundjid.bare)
        other.send_presence(pto=one.boundjid.bare, ptype="subscribed")
        await one.next_presence("subscribed", sender=other.boundjid.bare)
    # each side's roster now says both
    await roster_push(a, b.boundjid.bare, "both")
    await roster_push(b, a.boundjid.bare, "both")


# -- raw logins (a chosen source address, timed) ------------------------------------------

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


def _read_until(sock: socket.socket, *tokens: bytes) -> bytes:
    data = b""
    while not any(token in data for token in tokens):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _opened(node: ClusterNodeProcess, source: str) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", node.port), timeout=20, source_address=(source, 0)
    )
    sock.sendall(HEADER)
    _read_until(sock, b"</stream:features>")
    return sock


def plain_login(
    node: ClusterNodeProcess, user: str, password: str, source: str
) -> tuple[bool, float]:
    """One SASL PLAIN login on `node` from `source`: (succeeded, seconds to the answer)."""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    with _opened(node, source) as sock:
        started = time.monotonic()
        sock.sendall(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        answer = _read_until(sock, b"<success", b"</failure>", b"</stream:stream>")
        took = time.monotonic() - started
    assert b"<success" in answer or b"</failure>" in answer, answer
    return b"<success" in answer, took


def register(node: ClusterNodeProcess, user: str, password: str, source: str) -> bytes:
    """XEP-0077 in-band registration on `node` (before authentication); the answer."""
    with _opened(node, source) as sock:
        sock.sendall(
            f"<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{user}"
            f"</username><password>{password}</password></query></iq>".encode()
        )
        return _read_until(sock, b"</iq>", b"/>", b"</stream:stream>")


# -- across the nodes -------------------------------------------------------------------


async def test_messages_cross_nodes(cluster: LocalCluster) -> None:
    async with online(cluster, "n1", "alice/r1") as alice, online(cluster, "n2", "bob/r2") as bob:
        alice.send_message(mto="bob@localhost/r2", mbody="hello from n1", mtype="chat")
        got = await next_message(bob, "hello from n1")
        assert got["from"] == "alice@localhost/r1"
        bob.send_message(mto="alice@localhost", mbody="hello from n2", mtype="chat")
        got = await next_message(alice, "hello from n2")
        assert got["from"] == "bob@localhost/r2"


async def test_subscription_and_roster_pushes_reach_every_resource_on_every_node(
    cluster: LocalCluster,
) -> None:
    async with (
        online(cluster, "n1", "carol/r1") as carol1,
        online(cluster, "n3", "carol/r3") as carol3,
        online(cluster, "n2", "dave/r2") as dave2,
        online(cluster, "n3", "dave/r3") as dave3,
    ):
        carol1.send_presence(pto="dave@localhost", ptype="subscribe")
        # RFC 6121 §3.1.3: the request goes to every available resource of the contact
        for dave in (dave2, dave3):
            await dave.next_presence("subscribe", sender="carol@localhost")
        # §3.1.2: the sender's roster push (ask='subscribe') to all its resources
        for carol in (carol1, carol3):
            push = await roster_push(carol, "dave@localhost", "none")
            assert push["roster"]["items"]["dave@localhost"]["ask"] == "subscribe"
        dave2.send_presence(pto="carol@localhost", ptype="subscribed")
        for dave in (dave2, dave3):
            await roster_push(dave, "carol@localhost", "from")
        for carol in (carol1, carol3):
            await carol.next_presence("subscribed", sender="dave@localhost")
            await roster_push(carol, "dave@localhost", "to")
        # and the approval brings dave's presence to both of carol's resources
        for carol in (carol1, carol3):
            await carol.next_presence(None, sender="dave@localhost/r2")


async def test_presence_cross_nodes(cluster: LocalCluster) -> None:
    async with online(cluster, "n1", "alice/p1") as alice, online(cluster, "n2", "bob/p2") as bob:
        await befriend(alice, bob)
        bob.send_presence(pstatus="on node two", pshow="away")
        presence = await alice.next_presence(None, sender="bob@localhost/p2")
        while presence["status"] != "on node two":
            presence = await alice.next_presence(None, sender="bob@localhost/p2")
        assert presence["show"] == "away"
        await asyncio.wait_for(bob.disconnect(), 5)
        await alice.next_presence("unavailable", sender="bob@localhost/p2")


async def test_offline_message_is_delivered_at_login_on_another_node(
    cluster: LocalCluster,
) -> None:
    async with online(cluster, "n1", "alice/o1") as alice:
        alice.send_message(mto="eve@localhost", mbody="while you were away", mtype="chat")
        await asyncio.sleep(0.5)  # stored (no answer is sent for a stored message)
    async with online(cluster, "n3", "eve/o3") as eve:
        got = await next_message(eve, "while you were away")
        assert got["from"].bare == "alice@localhost"
        assert got["delay"]["stamp"] is not None  # XEP-0203: it waited


async def test_resource_conflict_across_nodes_replaces_the_first_session(
    cluster: LocalCluster,
) -> None:
    async with (
        online(cluster, "n1", "frank/desk") as first,
        online(cluster, "n2", "frank/desk") as second,
    ):
        error = await asyncio.wait_for(first.stream_errors.get(), STANZA_TIMEOUT)
        assert error["condition"] == "conflict"  # RFC 6120 §7.7.2.2, newest wins
        assert second.boundjid.full == "frank@localhost/desk"
        # the survivor is the one reachable, from a third node
        async with online(cluster, "n3", "alice/c3") as alice:
            alice.send_message(mto="frank@localhost/desk", mbody="which one?", mtype="chat")
            await next_message(second, "which one?")


async def test_registration_on_one_node_then_login_on_another(cluster: LocalCluster) -> None:
    answer = await asyncio.to_thread(
        register, cluster["n1"], "newcomer", "newcomer-secret-1", "127.0.0.21"
    )
    assert b"type='result'" in answer or b'type="result"' in answer, answer
    for node in ("n2", "n3"):
        ok, _ = await asyncio.to_thread(
            plain_login, cluster[node], "newcomer", "newcomer-secret-1", "127.0.0.22"
        )
        assert ok, f"{node} does not know the account registered on n1"
    # and one created with the CLI while every node runs
    cluster.add_user("clicreated", "clicreated-secret-1")
    for node in ("n1", "n2", "n3"):
        ok, _ = await asyncio.to_thread(
            plain_login, cluster[node], "clicreated", "clicreated-secret-1", "127.0.0.22"
        )
        assert ok, f"{node} does not know the account created with the CLI"


async def test_password_change_on_one_node_refuses_the_old_password_everywhere(
    cluster: LocalCluster,
) -> None:
    # every node has grace's credentials cached first
    for node in ("n1", "n2", "n3"):
        ok, _ = await asyncio.to_thread(
            plain_login, cluster[node], "grace", USERS["grace"], "127.0.0.31"
        )
        assert ok
    async with online(cluster, "n1", "grace/g1") as grace:
        grace.register_plugin("xep_0077")
        await grace.plugin["xep_0077"].change_password("grace-secret-2")
    await asyncio.sleep(0.3)
    for node in ("n2", "n3", "n1"):
        ok, _ = await asyncio.to_thread(
            plain_login, cluster[node], "grace", USERS["grace"], "127.0.0.32"
        )
        assert not ok, f"{node} still takes the old password"
    ok, _ = await asyncio.to_thread(
        plain_login, cluster["n3"], "grace", "grace-secret-2", "127.0.0.31"
    )
    assert ok


async def test_brute_force_failures_are_counted_from_all_nodes_together(
    cluster: LocalCluster,
) -> None:
    """Three free failures per address: one on each node uses them up, so the fourth,
    wherever it lands, is held as it would be on a single server."""
    source = "127.0.0.41"
    for node in ("n1", "n2", "n3"):
        ok, took = await asyncio.to_thread(plain_login, cluster[node], "mallory", "wrong", source)
        assert not ok
        assert took < HOLD * 0.7, f"free failure on {node} held {took:.2f} s"
        await asyncio.sleep(0.3)  # the count travels between nodes
    ok, took = await asyncio.to_thread(plain_login, cluster["n1"], "mallory", "wrong", source)
    assert not ok
    assert took >= HOLD * 0.8, f"fourth failure answered in {took:.2f} s: not held"
    # a right password from that address is still answered at once
    ok, took = await asyncio.to_thread(
        plain_login, cluster["n2"], "mallory", USERS["mallory"], source
    )
    assert ok and took < HOLD * 0.7


# -- a node dies ------------------------------------------------------------------------


async def test_killed_node_leaves_contacts_see_unavailable_and_messages_go_offline(
    cluster: LocalCluster,
) -> None:
    async with (
        online(cluster, "n1", "harry/h1") as harry,
        online(cluster, "n3", "gina/phone") as gina,
    ):
        await befriend(harry, gina)
        since = len(cluster["n1"].log_text())
        cluster["n3"].kill()
        began = time.monotonic()
        await harry.next_presence("unavailable", sender="gina@localhost/phone", timeout=6)
        noticed = time.monotonic() - began
        assert noticed < 3 * NODE_TIMEOUT + 2, f"unavailable after {noticed:.1f} s"
        cluster["n1"].wait_for_log("n3", since=since, timeout=2)
        harry.send_message(mto="gina@localhost", mbody="are you there?", mtype="chat")
        harry.send_message(mto="gina@localhost/phone", mbody="still?", mtype="chat")
        await asyncio.sleep(0.5)
        with contextlib.suppress(Exception):
            gina.abort()
    async with online(cluster, "n2", "gina/tablet") as gina:
        await next_message(gina, "are you there?")
        await next_message(gina, "still?")  # RFC 6121 §8.5.3.2.1: no such resource: as bare
    # n3 comes back under its name: a new run of the node, known to the others again
    since = len(cluster["n2"].log_text())
    await asyncio.to_thread(cluster["n3"].start)
    cluster["n2"].wait_for_log("node n3 joined", since=since, timeout=5)
    async with (
        online(cluster, "n3", "gina/back") as gina,
        online(cluster, "n1", "harry/h2") as harry,
    ):
        harry.send_message(mto="gina@localhost/back", mbody="welcome back", mtype="chat")
        await next_message(gina, "welcome back")


# -- Redis goes away and comes back -----------------------------------------------------


async def test_postgresql_outage_keeps_sessions_chatting_and_nothing_half_written(
    cluster: LocalCluster,
) -> None:
    postgres = cluster.postgres
    if postgres is None:
        pytest.skip("the cluster runs on SQLite here (PostgreSQL is not installed)")
    async with (
        online(cluster, "n1", "leo/l1") as leo,
        online(cluster, "n2", "mia/m2") as mia,
    ):
        postgres.stop()  # type: ignore[attr-defined]
        try:
            # Established sessions chat across nodes: nothing on the way needs storage.
            leo.send_message(mto="mia@localhost/m2", mbody="the database is down", mtype="chat")
            await next_message(mia, "the database is down")
            mia.send_message(mto="leo@localhost", mbody="we still talk", mtype="chat")
            await next_message(leo, "we still talk")
            # A message for an offline user needs storage: its sender is told, at once.
            leo.send_message(mto="nina@localhost", mbody="not stored", mtype="chat")
            error = await _next_error(leo)
            assert error["error"]["type"] in ("wait", "cancel"), error
        finally:
            postgres.start()  # type: ignore[attr-defined]
        # Back: offline storage works again (a node may fail one call while its
        # pool notices the restart: the sender is told, and sends again).
        for _attempt in range(3):
            leo.send_message(mto="nina@localhost", mbody="stored after", mtype="chat")
            try:
                await _next_error(leo, timeout=1.5)
            except TimeoutError:
                break
        else:
            raise AssertionError("offline storage did not come back")
    async with online(cluster, "n3", "nina/n3") as nina:
        await next_message(nina, "stored after")
        await asyncio.sleep(0.5)
        # What failed during the outage was not stored, even in part.
        while not nina.messages.empty():
            assert nina.messages.get_nowait()["body"] != "not stored"


async def _next_error(client: Client, timeout: float = STANZA_TIMEOUT) -> slixmpp.Message:
    async def wait() -> slixmpp.Message:
        while True:
            message = await client.messages.get()
            if message["type"] == "error":
                return message

    return await asyncio.wait_for(wait(), timeout)


async def test_redis_outage_keeps_local_sessions_and_resynchronises(cluster: LocalCluster) -> None:
    async with (
        online(cluster, "n1", "ivan/i1") as ivan,
        online(cluster, "n1", "judy/j1") as judy,
        online(cluster, "n2", "kate/k2") as kate,
    ):
        await befriend(ivan, kate)
        n1, n2 = cluster["n1"], cluster["n2"]
        since1, since2 = len(n1.log_text()), len(n2.log_text())
        cluster.redis.stop()
        n1.wait_for_log("Redis", since=since1, timeout=5)
        # the same node: still chatting
        ivan.send_message(mto="judy@localhost/j1", mbody="redis is down", mtype="chat")
        await next_message(judy, "redis is down")
        judy.send_message(mto="ivan@localhost", mbody="we are fine here", mtype="chat")
        await next_message(ivan, "we are fine here")
        # another node: refused or queued, and the log says so
        before_send = len(n1.log_text())
        ivan.send_message(mto="kate@localhost/k2", mbody="across the outage", mtype="chat")
        line = await asyncio.to_thread(_cross_node_refusal, n1, before_send)
        assert line, "no log line about the refused or queued cross-node message"
        print("cross-node refusal logged:", line)
        # ... and the sender is told it was not delivered (try again later).
        error = await _next_error(ivan)
        assert error["error"]["condition"] == "resource-constraint", error
        assert error["error"]["type"] == "wait", error
        # kate's new status cannot reach ivan now: n2 refuses it, and notes it
        before_status = len(n2.log_text())
        kate.send_presence(pstatus="during the outage")
        assert await asyncio.to_thread(_cross_node_refusal, n2, before_status)
        # Redis returns (empty: no persistence): both nodes put their state back
        cluster.redis.start()
        n1.wait_for_log("reachable again", since=since1, timeout=10)
        n2.wait_for_log("reachable again", since=since2, timeout=10)
        # ... and ivan gets the status he missed, once the cluster has resynchronised.
        presence = await ivan.next_presence(None, sender="kate@localhost/k2", timeout=10)
        while presence["status"] != "during the outage":
            presence = await ivan.next_presence(None, sender="kate@localhost/k2", timeout=10)
        await asyncio.sleep(NODE_TIMEOUT + 0.5)
        ivan.send_message(mto="kate@localhost/k2", mbody="after the outage", mtype="chat")
        await next_message(kate, "after the outage")
        kate.send_message(mto="ivan@localhost", mbody="back across", mtype="chat")
        await next_message(ivan, "back across")
        kate.send_presence(pstatus="after redis")
        presence = await ivan.next_presence(None, sender="kate@localhost/k2")
        while presence["status"] != "after redis":
            presence = await ivan.next_presence(None, sender="kate@localhost/k2")


def _cross_node_refusal(node: ClusterNodeProcess, since: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in node.log_text()[since:].splitlines():
            lowered = line.lower()
            if ("refus" in lowered or "queue" in lowered) and "WARNING" in line:
                return line
        time.sleep(0.05)
    return ""


def test_no_node_logged_a_traceback(cluster: LocalCluster) -> None:
    for name, text in cluster.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
