"""XEP-0198 stream management end to end: the real `chatgate serve` and clients
nobody here wrote (slixmpp's xep_0198 plugin), plus a raw-socket client (`Raw`)
for what no library exposes: `<a h/>`, `<failed h/>`, stream errors, bogus counts.

`Raw` is written from RFC 6120 and XEP-0198 directly (PLAIN over the plain
listener, responses matched with regular expressions).  `Raw.reset()` ends the
TCP connection with an RST (SO_LINGER 0), as a phone losing its network looks
to the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from .conftest import Client, RunningServer, logged_in, start_server

pytestmark = pytest.mark.e2e

HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
SM = "urn:xmpp:sm:3"
#: seconds a dropped session waits for its client in these tests
RESUME_TIMEOUT = 3
USERS = ("alice", "bob", "carol", "ivan", "kate", "nina")


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = ""
        self.features = ""
        self.received = 0

    # ------------------------------------------------------------ wire

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def expect(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Wait for `pattern` in what arrived; everything up to its end is consumed."""
        regex = re.compile(pattern, re.DOTALL)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match is not None:
                self.buffer = self.buffer[match.end() :]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.buffer!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"closed before {pattern!r}; got {self.buffer!r}")
            self.buffer += data.decode()

    def quiet(self, seconds: float = 0.5) -> str:
        """Everything that arrives within `seconds` (consumed)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self.buffer += data.decode()
        text, self.buffer = self.buffer, ""
        return text

    def reset(self) -> None:
        """Drop the connection with a TCP RST (no </stream:stream>)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("</stream:stream>")
        self.sock.close()

    # ------------------------------------------------------------ negotiation

    def login(self, user: str, password: str) -> str:
        """Open the stream and authenticate with PLAIN; returns the features offered
        after authentication (the stream is restarted, not yet bound)."""
        self.send(HEADER)
        self.expect(r"</stream:features>")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        self.expect(r"<success[^>]*/>|<success[^>]*>.*?</success>")
        self.send(HEADER)
        self.features = self.expect(r"<stream:features>(.*?)</stream:features>").group(1)
        return self.features

    def bind(self, resource: str) -> str:
        self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        return self.expect(r"<jid>([^<]+)</jid>").group(1)

    def enable(self, resume: bool = True) -> re.Match[str]:
        self.send(f"<enable xmlns='{SM}'" + (" resume='true'" if resume else "") + "/>")
        return self.expect(r"<enabled [^>]*/>")

    def session(self, user: str, resource: str, *, resume: bool = True) -> str:
        """Log in, bind, enable SM, send initial presence; returns the SM-ID ('' without).
        `self.received` counts the stanzas received since (the presence echoed back
        to the sender, RFC 6121 §4.2.2), for the client's 'h'."""
        self.login(user, f"{user}-password")
        self.bind(resource)
        enabled = self.enable(resume).group(0)
        self.send("<presence/>")
        self.received = len(re.findall(r"<presence", self.quiet(0.5)))
        match = re.search(r"id=[\"']([^\"']+)", enabled)
        return match.group(1) if match else ""


def message(to: str, body: str, mtype: str = "chat") -> str:
    return f"<message to='{to}' type='{mtype}' id='{body}'><body>{body}</body></message>"


def bodies(text: str) -> list[str]:
    return re.findall(r"<body>([^<]*)</body>", text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    extra = f"""allow_plain_without_tls = true

[modules.stream_management]
resume_timeout = {RESUME_TIMEOUT}
max_resume_timeout = {RESUME_TIMEOUT}
max_unacked_stanzas = 20
ack_after_stanzas = 3
"""
    srv = start_server(tmp_path_factory.mktemp("sm"), extra)
    for name in USERS:
        srv.add_user(name, f"{name}-password")
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


def sender(server: RunningServer, user: str) -> Raw:
    raw = Raw(server.plain_port)
    raw.login(user, f"{user}-password")
    raw.bind("sender")
    return raw


def test_sm_feature_is_offered_after_authentication_only(server: RunningServer) -> None:
    raw = Raw(server.plain_port)
    raw.send(HEADER)
    before = raw.expect(r"<stream:features>(.*?)</stream:features>").group(1)
    assert SM not in before
    # Before authentication, <enable/> and <resume/> fail, and the stream goes on.
    raw.send(f"<enable xmlns='{SM}'/>")
    raw.expect(r"<failed xmlns='urn:xmpp:sm:3'><unexpected-request ")
    raw.send(f"<resume xmlns='{SM}' previd='x' h='0'/>")
    raw.expect(r"<failed xmlns='urn:xmpp:sm:3'><unexpected-request ")
    raw.close()
    raw = Raw(server.plain_port)
    assert f"<sm xmlns='{SM}'/>" in raw.login("alice", "alice-password")
    # Before binding, <enable/> fails too (XEP-0198 §3); binding still works after.
    raw.send(f"<enable xmlns='{SM}'/>")
    raw.expect(r"<failed xmlns='urn:xmpp:sm:3'><unexpected-request ")
    assert raw.bind("one") == "alice@localhost/one"
    raw.close()


def test_acks_count_stanzas_both_ways(server: RunningServer) -> None:
    raw = Raw(server.plain_port)
    raw.login("alice", "alice-password")
    raw.bind("acks")
    enabled = raw.enable(resume=False).group(0)
    assert "id=" not in enabled and "resume" not in enabled
    # Enabling twice is refused, the stream goes on.
    raw.send(f"<enable xmlns='{SM}'/>")
    raw.expect(r"<failed xmlns='urn:xmpp:sm:3'><unexpected-request ")
    raw.send(f"<r xmlns='{SM}'/>")
    assert raw.expect(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>").group(1) == "0"
    for n in range(4):
        raw.send(f"<iq type='get' id='p{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    raw.send(f"<r xmlns='{SM}'/>")
    # Four stanzas handled; the <r/> itself and the earlier nonzas are not counted.
    assert raw.expect(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>").group(1) == "4"
    # Four results were sent: with ack_after_stanzas = 3 the server asked already.
    raw.expect(r"<r xmlns='urn:xmpp:sm:3'/>")
    raw.send(f"<a xmlns='{SM}' h='4'/>")
    raw.send(f"<r xmlns='{SM}'/>")
    assert raw.expect(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>").group(1) == "4"
    raw.close()


def test_an_ack_of_more_than_was_sent_ends_the_stream(server: RunningServer) -> None:
    raw = Raw(server.plain_port)
    raw.login("alice", "alice-password")
    raw.bind("bogus")
    raw.enable()
    raw.send(f"<a xmlns='{SM}' h='99'/>")
    error = raw.expect(r"<stream:error>(.*?)</stream:error>").group(1)
    assert "<undefined-condition " in error and "handled-count-too-high" in error
    raw.expect(r"</stream:stream>")


def test_nonsense_h_is_refused(server: RunningServer) -> None:
    raw = Raw(server.plain_port)
    raw.login("alice", "alice-password")
    raw.bind("nonsense")
    raw.enable()
    raw.send(f"<a xmlns='{SM}' h='-1'/>")
    assert "<invalid-xml " in raw.expect(r"<stream:error>(.*?)</stream:error>").group(1)


def test_r_without_stream_management_fails_without_ending_the_stream(
    server: RunningServer,
) -> None:
    raw = Raw(server.plain_port)
    raw.login("alice", "alice-password")
    raw.bind("plain")
    raw.send(f"<r xmlns='{SM}'/>")
    raw.expect(r"<failed xmlns='urn:xmpp:sm:3'><unexpected-request ")
    raw.send("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    raw.expect(r"<iq [^>]*id=\"still\"|<iq [^>]*id='still'")
    raw.close()


def test_resume_after_a_reset_replays_what_was_not_acknowledged(server: RunningServer) -> None:
    bob = Raw(server.plain_port)
    token = bob.session("bob", "phone")
    assert token
    alice = sender(server, "alice")
    alice.send(message("bob@localhost/phone", "one"))
    assert bodies(bob.expect(r"<message.*?</message>").group(0)) == ["one"]
    bob.send(f"<r xmlns='{SM}'/>")
    handled_by_server = int(bob.expect(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>").group(1))
    assert handled_by_server == 1  # the initial presence
    handled = bob.received + 1  # "one" too
    bob.send(f"<a xmlns='{SM}' h='{handled}'/>")
    bob.reset()
    time.sleep(0.3)  # the server notices the reset
    alice.send(message("bob@localhost/phone", "two"))
    alice.send(message("bob@localhost", "three"))
    alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    alice.expect(r"id=.sync.")
    # No error bounced: the hibernated session took both.
    assert 'type="error"' not in alice.buffer and "type='error'" not in alice.buffer

    again = Raw(server.plain_port)
    again.login("bob", "bob-password")
    again.send(f"<resume xmlns='{SM}' previd='{token}' h='{handled}'/>")
    resumed = again.expect(r"<resumed [^>]*/>").group(0)
    assert f'previd="{token}"' in resumed and "h='1'" in resumed
    assert bodies(again.quiet(1.0)) == ["two", "three"]
    # The same session: same full JID, still available (a message to the bare JID
    # reaches it, with no bind and no new presence).
    alice.send(message("bob@localhost", "four"))
    assert bodies(again.expect(r"<message.*?</message>").group(0)) == ["four"]
    again.close()
    alice.close()


def test_resume_by_another_account_is_item_not_found(server: RunningServer) -> None:
    carol = Raw(server.plain_port)
    token = carol.session("carol", "laptop")
    alice = Raw(server.plain_port)
    alice.login("alice", "alice-password")
    alice.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
    failed = alice.expect(r"<failed [^>]*>.*?</failed>").group(0)
    assert "<item-not-found " in failed and "h=" not in failed
    # The stream goes on: alice binds instead (XEP-0198 §5).
    assert alice.bind("desk") == "alice@localhost/desk"
    # Carol's session is untouched.
    alice.send(message("carol@localhost/laptop", "still yours"))
    assert bodies(carol.expect(r"<message.*?</message>").group(0)) == ["still yours"]
    alice.close()
    carol.close()


def test_unknown_token_and_resume_on_a_bound_stream_fail(server: RunningServer) -> None:
    raw = Raw(server.plain_port)
    raw.login("alice", "alice-password")
    raw.send(f"<resume xmlns='{SM}' previd='no-such-token' h='0'/>")
    assert "<item-not-found " in raw.expect(r"<failed [^>]*>.*?</failed>").group(0)
    raw.send(f"<resume xmlns='{SM}' previd='no-such-token' h='many'/>")
    assert "<bad-request " in raw.expect(r"<failed [^>]*>.*?</failed>").group(0)
    raw.send(f"<resume xmlns='{SM}' h='0'/>")
    assert "<bad-request " in raw.expect(r"<failed [^>]*>.*?</failed>").group(0)
    raw.bind("x")
    raw.send(f"<resume xmlns='{SM}' previd='no-such-token' h='0'/>")
    assert "<unexpected-request " in raw.expect(r"<failed [^>]*>.*?</failed>").group(0)
    raw.close()


def test_resume_with_h_past_what_was_sent_is_a_stream_error(server: RunningServer) -> None:
    carol = Raw(server.plain_port)
    token = carol.session("carol", "tab")
    carol.reset()
    time.sleep(0.3)
    again = Raw(server.plain_port)
    again.login("carol", "carol-password")
    again.send(f"<resume xmlns='{SM}' previd='{token}' h='50'/>")
    error = again.expect(r"<stream:error>(.*?)</stream:error>").group(1)
    assert "<undefined-condition " in error and "handled-count-too-high" in error
    # The hibernated session was left as it was: a correct resume still works.
    third = Raw(server.plain_port)
    third.login("carol", "carol-password")
    third.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
    third.expect(r"<resumed [^>]*/>")
    third.close()


def test_resume_closes_the_old_stream_if_still_open(server: RunningServer) -> None:
    carol = Raw(server.plain_port)
    token = carol.session("carol", "old")
    again = Raw(server.plain_port)
    again.login("carol", "carol-password")
    again.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
    again.expect(r"<resumed [^>]*/>")
    assert "<conflict " in carol.expect(r"<stream:error>(.*?)</stream:error>").group(1)
    again.close()


def test_clean_close_is_not_hibernated(server: RunningServer) -> None:
    carol = Raw(server.plain_port)
    token = carol.session("carol", "gone")
    carol.close()
    time.sleep(0.3)
    raw = Raw(server.plain_port)
    raw.login("carol", "carol-password")
    raw.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
    failed = raw.expect(r"<failed [^>]*>.*?</failed>").group(0)
    # Ended, and the server says how many stanzas of the old session it handled.
    assert "<item-not-found " in failed and "h='1'" in failed
    raw.close()


async def test_unacknowledged_messages_go_offline_after_the_timeout(
    server: RunningServer,
) -> None:
    ivan = Raw(server.plain_port)
    token = ivan.session("ivan", "mobile")
    alice = sender(server, "alice")
    alice.send(message("ivan@localhost/mobile", "before"))
    ivan.expect(r"<message.*?</message>")  # received but never acknowledged
    ivan.reset()
    await asyncio.sleep(0.3)
    alice.send(message("ivan@localhost/mobile", "during"))
    alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    alice.expect(r"id=.sync.")
    await asyncio.sleep(RESUME_TIMEOUT + 1)
    # Too late to resume, and the server still knows how far it got.
    late = Raw(server.plain_port)
    late.login("ivan", "ivan-password")
    late.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
    assert "<item-not-found " in late.expect(r"<failed [^>]*>.*?</failed>").group(0)
    late.close()
    # Both messages wait in offline storage for the next session (slixmpp).
    async with logged_in(server, "ivan@localhost/home", "ivan-password") as client:
        got = [await client.next_message(), await client.next_message()]
        assert [m["body"] for m in got] == ["before", "during"]
        assert all(m["delay"]["stamp"] is not None for m in got)
    alice.close()


async def _slixmpp_with_sm(server: RunningServer, jid: str, password: str) -> Client:
    """A slixmpp client with its own XEP-0198 plugin, logged in over the plain
    listener, stream management enabled with resumption."""
    client = Client(jid, password)
    client.register_plugin("xep_0198")
    client.enable_plaintext = True
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future[object] = loop.create_future()
    client.add_event_handler("sm_enabled", lambda e: enabled.done() or enabled.set_result(e))
    client.connect("127.0.0.1", server.plain_port)
    await asyncio.wait_for(enabled, 15)
    assert client.plugin["xep_0198"].sm_id
    client.send_presence()
    return client


def _cut(client: Client) -> None:
    """Reset the client's TCP connection under it (RST, no </stream:stream>)."""
    transport = client.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def test_slixmpp_resumes_after_a_reset_and_gets_what_was_sent_meanwhile(
    server: RunningServer,
) -> None:
    kate = await _slixmpp_with_sm(server, "kate@localhost/phone", "kate-password")
    alice = sender(server, "alice")
    try:
        alice.send(message("kate@localhost/phone", "first"))
        assert (await kate.next_message())["body"] == "first"
        kate.plugin["xep_0198"].send_ack()  # what slixmpp handled, "first" included
        await kate.plugin["xep_0199"].ping(jid="localhost", timeout=5)  # the ack is in
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[object] = loop.create_future()
        kate.add_event_handler("disconnected", lambda e: gone.done() or gone.set_result(e))
        _cut(kate)
        await asyncio.wait_for(gone, 10)
        await asyncio.sleep(0.3)  # the server sees the reset
        for body in ("while", "you", "were", "away"):
            alice.send(message("kate@localhost", body))
        alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        alice.expect(r"id=.sync.")
        assert "type='error'" not in alice.buffer and 'type="error"' not in alice.buffer

        resumed: asyncio.Future[object] = loop.create_future()
        kate.add_event_handler("session_resumed", lambda e: resumed.done() or resumed.set_result(e))
        kate.connect("127.0.0.1", server.plain_port)
        await asyncio.wait_for(resumed, 15)
        got = [(await kate.next_message())["body"] for _ in range(4)]
        assert got == ["while", "you", "were", "away"]
        # Nothing twice: "first" was acknowledged before the reset.
        await kate.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        assert kate.messages.empty()
    finally:
        alice.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(kate.disconnect(), 5)


def test_a_hibernated_session_keeps_its_presence_until_the_timeout(server: RunningServer) -> None:
    carol = Raw(server.plain_port)
    carol.session("carol", "phone2")
    alice = sender(server, "alice")
    # Directed presence (RFC 6121 §4.6): alice gets carol's unavailable when carol's
    # session really ends, and only then.
    carol.send("<presence to='alice@localhost/sender'><status>here</status></presence>")
    alice.expect(r"<presence [^>]*from=.carol@localhost/phone2.")
    carol.reset()
    assert "unavailable" not in alice.quiet(1.5)
    gone = alice.expect(r"<presence [^>]*>", timeout=RESUME_TIMEOUT + 5).group(0)
    assert "carol@localhost/phone2" in gone and "unavailable" in gone
    alice.close()


async def test_an_overflowing_queue_ends_the_session_and_loses_nothing(
    server: RunningServer,
) -> None:
    nina = Raw(server.plain_port)
    nina.session("nina", "phone")  # never acknowledges anything
    alice = sender(server, "alice")
    sent = [f"m{n}" for n in range(30)]
    for body in sent:
        alice.send(message("nina@localhost/phone", body))
    error = nina.expect(r"<stream:error>(.*?)</stream:error>").group(1)
    assert "<resource-constraint " in error
    alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    alice.expect(r"id=.sync.")
    # What nina never acknowledged, and what came after, is in offline storage.
    async with logged_in(server, "nina@localhost/home", "nina-password") as client:
        got = [(await client.next_message())["body"] for _ in sent]
        assert sorted(got) == sorted(sent)
    alice.close()


def test_binding_the_resource_of_a_hibernated_session_ends_it_and_loses_nothing(
    server: RunningServer,
) -> None:
    bob = Raw(server.plain_port)
    bob.session("bob", "tablet")
    alice = sender(server, "alice")
    alice.send(message("bob@localhost/tablet", "unacked"))
    bob.expect(r"<message.*?</message>")
    bob.reset()
    time.sleep(0.3)
    # The client comes back without resuming and binds the same resource: the
    # hibernated session is replaced ([session] resource_conflict = "newest") and
    # what it never acknowledged is handled as undelivered, so it reaches the new one.
    again = Raw(server.plain_port)
    again.login("bob", "bob-password")
    assert again.bind("tablet") == "bob@localhost/tablet"
    again.send("<presence/>")
    # (Earlier tests left bob offline messages too: what their clients never acked.)
    got = again.expect(r"<message[^>]*>(?:(?!</message>).)*<body>unacked</body>.*?</message>")
    assert "urn:xmpp:delay" not in got.group(0)  # handed over directly, not stored
    again.close()
    alice.close()


def test_zz_a_session_still_hibernated_at_shutdown_is_ended_cleanly(
    server: RunningServer,
) -> None:
    """Runs last in this module: the fixture then stops the server (SIGTERM) while
    carol's session is hibernated, and asserts a clean exit without a traceback."""
    carol = Raw(server.plain_port)
    carol.session("carol", "phone")
    alice = sender(server, "alice")
    alice.send(message("carol@localhost/phone", "kept"))
    carol.expect(r"<message.*?</message>")
    carol.reset()
    time.sleep(0.3)
    alice.close()
