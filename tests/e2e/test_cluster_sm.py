"""XEP-0198 resumption across the nodes of a real two-node cluster (one Redis, one
database, two `chatgate serve` processes): a session that enabled stream
management on one node, whose TCP connection is reset, is resumed on the other
node -- same full JID, what was sent meanwhile delivered once and in order, its
contacts seeing no unavailable presence -- and every way it must fail, fails
with `<failed><item-not-found/></failed>` (another user's token, a forged token,
the node that held it killed, the second of two concurrent resumptions).

The client is `Raw` of test_stream_management.py (written from RFC 6120 and
XEP-0198 directly, `reset()` is a TCP RST).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import shutil
import time
from collections.abc import Callable, Iterator

import pytest
from slixmpp import JID

from .cluster_harness import NODE_TIMEOUT, LocalCluster, start_cluster
from .conftest import Client
from .test_push import PUBSUB, publishes
from .test_stream_management import SM, Raw, _cut, bodies, message

pytestmark = pytest.mark.e2e

FULL = "alice@localhost/phone"
USERS = {
    name: f"{name}-password"
    for name in ("alice", "bob", "carol", "dave", "kate", "mallory", "nina", "pushbot")
}
EXTRA = """
[modules.stream_management]
resume_timeout = 20
max_resume_timeout = 20

[modules.push]
min_interval = 0.0  # every notification at once: a wrong one is seen, not deferred
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    cluster = start_cluster(("n1", "n2"), extra=EXTRA, users=USERS)
    try:
        yield cluster
    finally:
        cluster.close()
        logs = cluster.logs()
        shutil.rmtree(cluster.folder, ignore_errors=True)
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text}"


def stanzas(text: str) -> int:
    """How many stanzas `text` holds (what a client counts for its 'h')."""
    return len(re.findall(r"<(?:message|presence|iq)[\s>/]", text))


def settle(future: asyncio.Future[object]) -> Callable[[object], None]:
    """An event handler that settles `future` with the first event."""

    def handler(event: object) -> None:
        if not future.done():
            future.set_result(event)

    return handler


def plaintext(client: Client) -> Client:
    """`client` set for the cluster's plain listeners (no TLS, PLAIN allowed)."""
    client.enable_plaintext = True
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    return client


def went_unavailable(text: str, full: str) -> bool:
    """Whether `text` holds an unavailable presence from `full`."""
    for tag in re.findall(r"<presence [^>]*>", text):
        if re.search(rf"from=[\"']{re.escape(full)}[\"']", tag) and "unavailable" in tag:
            return True
    return False


def connect(cluster: LocalCluster, node: str) -> Raw:
    return Raw(cluster[node].port)


def online(cluster: LocalCluster, node: str, user: str, resource: str) -> Raw:
    """`user` bound on `node` with initial presence, no stream management."""
    raw = connect(cluster, node)
    raw.login(user, USERS[user])
    raw.bind(resource)
    raw.send("<presence/>")
    raw.quiet(0.3)
    return raw


def managed(cluster: LocalCluster, node: str, user: str, resource: str) -> tuple[Raw, str]:
    """`user` bound on `node` with resumable stream management; its SM-ID."""
    raw = connect(cluster, node)
    token = raw.session(user, resource)
    assert token, "no resumption token"
    return raw, token


def resume(raw: Raw, user: str, token: str, h: int) -> str:
    """Log in and send `<resume/>`; the server's answer (`<resumed/>` or `<failed/>`)."""
    raw.login(user, USERS[user])
    raw.send(f"<resume xmlns='{SM}' previd='{token}' h='{h}'/>")
    return raw.expect(r"<resumed [^>]*/>|<failed .*?</failed>|<failed [^>]*/>").group(0)


def test_a_reset_session_resumes_on_the_other_node_with_everything_sent_meanwhile(
    cluster: LocalCluster,
) -> None:
    carol = online(cluster, "n2", "carol", "desk")
    bob = online(cluster, "n1", "bob", "desk")
    alice, token = managed(cluster, "n1", "alice", "phone")
    seen = ""  # everything alice receives, to count its 'h' as a client does

    def expect(pattern: str) -> None:
        nonlocal seen
        match = alice.expect(pattern)
        seen += match.string[: match.end()]

    # Dave (on the other node) is subscribed to alice's presence (RFC 6121 §3), and
    # carol got directed presence (§4.6): both would be told if her session ended.
    dave = online(cluster, "n2", "dave", "desk")
    dave.send("<presence to='alice@localhost' type='subscribe'/>")
    expect(r"<presence [^>]*type=.subscribe.[^>]*>")
    alice.send("<presence to='dave@localhost' type='subscribed'/>")
    alice.send("<presence><priority>5</priority></presence>")
    dave.expect(r"<presence [^>]*from=.alice@localhost/phone.[^>]*>\s*<priority>5")
    alice.send("<presence to='carol@localhost/desk'><priority>5</priority></presence>")
    carol.expect(r"<presence [^>]*from=.alice@localhost/phone")
    # The first message between two accounts may wait for a database read (the
    # recipient's blocklist): warm both paths so the test's own order is defined.
    for raw in (carol, bob):
        raw.send(message("alice@localhost/phone", "warm"))
        expect(r"<body>warm</body>")
    seen += alice.quiet(0.3)
    alice.received += stanzas(seen)
    alice.reset()
    cluster["n1"].wait_for_log("alice@localhost/phone hibernated")

    sent = [f"m{n}" for n in range(6)]
    for body in sent[:2]:  # from another node, to the full JID
        carol.send(message("alice@localhost/phone", body))
    bob.send(message("alice@localhost/phone", sent[2]))  # from the session's node
    carol.send(message("alice@localhost", sent[3]))  # to the bare JID
    time.sleep(0.3)

    again = connect(cluster, "n2")
    answer = resume(again, "alice", token, alice.received)
    assert answer.startswith("<resumed "), answer
    assert f'previd="{token}"' in answer or f"previd='{token}'" in answer
    carol.send(message("alice@localhost/phone", sent[4]))  # now served by n2
    bob.send(message("alice@localhost", sent[5]))  # from n1, to the bare JID
    got: list[str] = []
    received = ""
    deadline = time.monotonic() + 10
    while len(got) < len(sent) and time.monotonic() < deadline:
        text = again.quiet(0.3)
        received += text
        got += bodies(text)
    # Each once; each sender's in the order sent (RFC 6120 §10.1: two senders'
    # messages have no order between them, here one of them crosses nodes).
    assert sorted(got) == sent, got
    from_carol = [body for body in got if body in ("m0", "m1", "m3", "m4")]
    assert from_carol == ["m0", "m1", "m3", "m4"], got
    assert [body for body in got if body in ("m2", "m5")] == ["m2", "m5"], got

    # Same full JID: what it sends carries it; its 'h' went on from the old count.
    again.send(message("carol@localhost/desk", "back"))
    stanza = carol.expect(r"<message [^>]*>.*?<body>back</body>")
    assert "alice@localhost/phone" in stanza.group(0)
    assert not went_unavailable(carol.quiet(0.5) + dave.quiet(0.1), FULL)
    again.send(f"<r xmlns='{SM}'/>")
    assert again.expect(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>").group(1) == "5"
    # Its presence is what it was: dave's probe is answered with priority 5.
    dave.send("<presence type='unavailable'/>")
    dave.send("<presence/>")
    dave.expect(r"<presence [^>]*from=.alice@localhost/phone.[^>]*>\s*<priority>5")
    handled = alice.received + stanzas(received + again.buffer)
    assert "resumed from node n1" in cluster["n2"].log_text()

    # Again, and back to the first node: the token follows its session.
    again.reset()
    cluster["n2"].wait_for_log("alice@localhost/phone hibernated")
    carol.send(message("alice@localhost/phone", "m6"))
    time.sleep(0.3)
    third = connect(cluster, "n1")
    answer = resume(third, "alice", token, handled)
    assert answer.startswith("<resumed "), answer
    assert "m6" in bodies(third.quiet(1.0))
    assert not went_unavailable(carol.quiet(0.3) + dave.quiet(0.1), FULL)
    for raw in (third, carol, bob, dave):
        raw.close()


async def test_slixmpp_resumes_on_the_other_node_and_gets_what_was_sent_meanwhile(
    cluster: LocalCluster,
) -> None:
    """The same with a client nobody here wrote: slixmpp's own XEP-0198 plugin, whose
    reconnection is pointed at the other node (as a load balancer would)."""
    kate = plaintext(Client("kate@localhost/phone", USERS["kate"]))
    kate.register_plugin("xep_0198")
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future[object] = loop.create_future()
    kate.add_event_handler("sm_enabled", settle(enabled))
    kate.connect("127.0.0.1", cluster["n1"].port)
    await asyncio.wait_for(enabled, 15)
    kate.send_presence()
    alice = online(cluster, "n2", "alice", "sender")
    try:
        alice.send(message("kate@localhost/phone", "first"))
        assert (await kate.next_message())["body"] == "first"
        kate.plugin["xep_0198"].send_ack()
        await kate.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=5)
        gone: asyncio.Future[object] = loop.create_future()
        kate.add_event_handler("disconnected", settle(gone))
        _cut(kate)
        await asyncio.wait_for(gone, 10)
        await asyncio.to_thread(cluster["n1"].wait_for_log, "kate@localhost/phone hibernated")
        for body in ("while", "you", "were", "away"):
            alice.send(message("kate@localhost/phone", body))
        await asyncio.sleep(0.3)
        resumed: asyncio.Future[object] = loop.create_future()
        kate.add_event_handler("session_resumed", settle(resumed))
        kate.connect("127.0.0.1", cluster["n2"].port)
        await asyncio.wait_for(resumed, 15)
        got = [(await asyncio.wait_for(kate.next_message(), 10))["body"] for _ in range(4)]
        assert got == ["while", "you", "were", "away"]
        await kate.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=5)
        assert kate.messages.empty()  # nothing twice ("first" was acknowledged)
        assert str(kate.boundjid) == "kate@localhost/phone"
    finally:
        alice.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(kate.disconnect(), 5)


async def test_a_phone_hibernated_on_one_node_is_woken_by_a_message_from_the_other(
    cluster: LocalCluster,
) -> None:
    """XEP-0357 with XEP-0198: a message decided on its sender's node (n2) for a
    session waiting to be resumed on n1 wakes the phone through its app server
    (slixmpp, connected to n2); while the session is live, or once resumed, no
    notification is sent."""
    app = plaintext(Client("pushbot@localhost/app", USERS["pushbot"]))
    loop = asyncio.get_running_loop()
    started: asyncio.Future[object] = loop.create_future()
    app.add_event_handler("session_start", settle(started))
    notifications = publishes(app)
    app.connect("127.0.0.1", cluster["n2"].port)
    await asyncio.wait_for(started, 15)
    nina, token = managed(cluster, "n1", "nina", "phone")
    nina.send(
        "<iq type='set' id='push'><enable xmlns='urn:xmpp:push:0'"
        " jid='pushbot@localhost/app' node='device-9'/></iq>"
    )
    nina.expect(r"<iq [^>]*id=.push.[^>]*type=.result.|<iq [^>]*type=.result.[^>]*id=.push.")
    bob = online(cluster, "n2", "bob", "push-sender")
    try:
        bob.send(message("nina@localhost/phone", "while you are here"))
        nina.expect(r"<body>while you are here</body>")
        await asyncio.sleep(0.5)
        assert notifications.empty()  # a live device got it

        nina.reset()
        await asyncio.to_thread(cluster["n1"].wait_for_log, "nina@localhost/phone hibernated")
        await asyncio.sleep(1.0)  # n2 hears of it (one pub/sub hop; generous under load)
        bob.send(message("nina@localhost/phone", "while you are away"))
        iq = await asyncio.wait_for(notifications.get(), 10)
        assert iq["from"] == "nina@localhost"
        publish = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        assert publish is not None and publish.get("node") == "device-9"

        back = connect(cluster, "n1")
        # h: what it had counted (less than it got: the rest is sent again)
        assert resume(back, "nina", token, nina.received).startswith("<resumed ")
        assert "while you are away" in "".join(bodies(back.quiet(1.0)))
        await asyncio.sleep(1.0)  # n2 hears of it
        bob.send(message("nina@localhost/phone", "back again"))
        back.expect(r"<body>back again</body>")
        await asyncio.sleep(0.5)
        assert notifications.empty()
        back.close()
    finally:
        bob.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.disconnect(), 5)


def test_another_users_or_a_forged_token_gets_item_not_found(cluster: LocalCluster) -> None:
    alice, token = managed(cluster, "n1", "alice", "tablet")
    alice.reset()
    cluster["n1"].wait_for_log("alice@localhost/tablet hibernated")
    mallory = connect(cluster, "n2")
    answer = resume(mallory, "mallory", token, 0)
    assert "<item-not-found " in answer
    assert mallory.bind("mine") == "mallory@localhost/mine"  # it may bind instead
    mallory.close()
    node, nonce, mac = token.split(".")
    forged_mac = base64.urlsafe_b64encode(bytes(16)).rstrip(b"=").decode()
    forged_node = base64.urlsafe_b64encode(b"n2").rstrip(b"=").decode()
    for forged in (f"{node}.{nonce}.{forged_mac}", f"{forged_node}.{nonce}.{mac}", "x" * 600):
        attempt = connect(cluster, "n2")
        assert "<item-not-found " in resume(attempt, "alice", forged, 0)
        attempt.close()
    # The real token still works after all that.
    real = connect(cluster, "n2")
    assert resume(real, "alice", token, 0).startswith("<resumed ")
    real.close()


def test_resuming_an_attached_session_closes_its_old_stream_with_conflict(
    cluster: LocalCluster,
) -> None:
    alice, token = managed(cluster, "n2", "alice", "laptop")
    new = connect(cluster, "n1")
    assert resume(new, "alice", token, alice.received).startswith("<resumed ")
    alice.expect(r"<conflict ")
    new.close()


def test_an_h_too_high_on_the_other_node_closes_that_stream_and_the_session_stays(
    cluster: LocalCluster,
) -> None:
    alice, token = managed(cluster, "n1", "alice", "pad")
    alice.reset()
    cluster["n1"].wait_for_log("alice@localhost/pad hibernated")
    bogus = connect(cluster, "n2")
    bogus.login("alice", USERS["alice"])
    bogus.send(f"<resume xmlns='{SM}' previd='{token}' h='4000'/>")
    error = bogus.expect(r"<stream:error>.*?</stream:error>").group(0)
    assert "undefined-condition" in error and "handled-count-too-high: h=4000" in error
    bogus.close()
    again = connect(cluster, "n2")
    assert resume(again, "alice", token, alice.received).startswith("<resumed ")
    again.close()


def test_two_concurrent_resumptions_of_one_token_exactly_one_wins(cluster: LocalCluster) -> None:
    alice, token = managed(cluster, "n1", "alice", "watch")
    alice.reset()
    cluster["n1"].wait_for_log("alice@localhost/watch hibernated")
    raws = [connect(cluster, "n2"), connect(cluster, "n2")]
    for raw in raws:
        raw.login("alice", USERS["alice"])
    for raw in raws:  # back to back: both reach n1 before either is done
        raw.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
    answers = [raw.expect(r"<resumed [^>]*/>|<failed .*?</failed>").group(0) for raw in raws]
    assert sum(a.startswith("<resumed ") for a in answers) == 1, answers
    assert sum("<item-not-found " in a for a in answers) == 1, answers
    for raw in raws:
        raw.close()


def test_with_redis_away_a_session_resumes_on_its_own_node_and_fails_cleanly_elsewhere(
    cluster: LocalCluster,
) -> None:
    n1, n2 = cluster["n1"], cluster["n2"]
    alice, token = managed(cluster, "n1", "alice", "car")
    alice.reset()
    n1.wait_for_log("alice@localhost/car hibernated")
    since1, since2 = len(n1.log_text()), len(n2.log_text())
    cluster.redis.stop()
    try:
        n1.wait_for_log("Redis", since=since1, timeout=5)
        n2.wait_for_log("Redis", since=since2, timeout=5)
        elsewhere = connect(cluster, "n2")
        assert "<item-not-found " in resume(elsewhere, "alice", token, alice.received)
        elsewhere.close()
        here = connect(cluster, "n1")
        assert resume(here, "alice", token, alice.received).startswith("<resumed ")
    finally:
        cluster.redis.start()
    n1.wait_for_log("reachable again", since=since1, timeout=10)
    n2.wait_for_log("reachable again", since=since2, timeout=10)
    here.close()


def test_a_session_of_a_killed_node_is_not_found_and_the_client_binds_anew(
    cluster: LocalCluster,
) -> None:
    """Last: it kills n1."""
    alice, token = managed(cluster, "n1", "dave", "phone")
    cluster["n1"].kill()
    started = time.monotonic()
    again = connect(cluster, "n2")
    answer = resume(again, "dave", token, alice.received)
    assert "<item-not-found " in answer
    assert time.monotonic() - started < NODE_TIMEOUT + 6
    assert again.bind("phone") == "dave@localhost/phone"
    again.send("<presence/>")
    assert re.search(r"<presence", again.quiet(0.5))
    again.close()
