"""XEP-0114 external components against a real `chatgate serve`: slixmpp's
`ComponentXMPP` as the component, slixmpp clients as accounts, and a raw socket
where the test must see the exact stream error."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import slixmpp
from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.exceptions import IqError

from tests.e2e.conftest import RunningServer, free_ports, logged_in, start_server

pytestmark = pytest.mark.e2e

DOMAIN = "gw.localhost"
SECRET = "correct horse battery staple"
OTHER = "bot.example"
OTHER_SECRET = "another-secret-of-its-own"


def start_with_components(tmp: Path, limits: str = "") -> tuple[RunningServer, int]:
    """`conftest.start_server` with the two components on a port of their own."""
    (component,) = free_ports(1)
    (tmp / "bot.secret").write_text(OTHER_SECRET + "\n")
    tables = f"""mechanisms = ["SCRAM-SHA-256", "PLAIN"]

[limits]
{limits}

[component_listener]
port = {component}
failure_delay = 0.2
handshake_timeout = 5

[[components]]
domain = "{DOMAIN}"
secret = "{SECRET}"
name = "Test gateway"

[[components]]
domain = "{OTHER}"
secret_file = "bot.secret"
"""
    return start_server(tmp, tables, listeners=4), component


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int]]:
    server, port = start_with_components(tmp_path_factory.mktemp("components"))
    server.add_user("alice", "alice-pass")
    yield server, port
    code = server.stop()
    assert code == 0, server.log_text()
    assert "Traceback" not in server.log_text(), server.log_text()


class Component(ComponentXMPP):
    def __init__(self, jid: str, secret: str, port: int) -> None:
        super().__init__(jid, secret, "127.0.0.1", port)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.messages: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.add_event_handler("message", self.messages.put_nowait)


C = TypeVar("C", bound=Component)


@contextlib.asynccontextmanager
async def component(
    port: int, jid: str = DOMAIN, secret: str = SECRET, kind: type[C] = Component
) -> AsyncIterator[C]:
    comp = kind(jid, secret, port)
    started = asyncio.get_running_loop().create_future()
    comp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    comp.connect()
    try:
        await asyncio.wait_for(started, 10)
        yield comp
    finally:
        comp.abort()
        await asyncio.sleep(0.2)  # the server sees the close


class Raw:
    """A component connection spoken by hand, to see exact stream errors."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.data = b""

    def send(self, text: str | bytes) -> None:
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def open(self, domain: str) -> str:
        self.send(
            "<stream:stream xmlns='jabber:component:accept'"
            f" xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
        )
        match = re.search(
            rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"]", self.expect(rb"<stream:stream[^>]*>")
        )
        assert match is not None
        return match.group(1).decode()

    def handshake(self, stream_id: str, secret: str) -> None:
        digest = hashlib.sha1((stream_id + secret).encode()).hexdigest()
        self.send(f"<handshake>{digest}</handshake>")

    def expect(self, pattern: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.data):
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"{pattern!r} not in {self.data!r}") from None
            if not chunk:
                raise AssertionError(f"closed before {pattern!r}: {self.data!r}")
            self.data += chunk
        return self.data

    def closed(self, timeout: float = 10) -> bool:
        """Read until the server closes (True) or the timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.data += chunk
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(setup: tuple[RunningServer, int]) -> Iterator[Raw]:
    conn = Raw(setup[1])
    yield conn
    conn.close()


# ---------------------------------------------------------------- handshake


def test_the_right_handshake_is_accepted(raw: Raw) -> None:
    stream_id = raw.open(DOMAIN)
    assert len(stream_id) >= 16
    raw.handshake(stream_id, SECRET)
    raw.expect(rb"<handshake[^>]*/>")


def test_a_wrong_handshake_is_refused_with_not_authorized(raw: Raw) -> None:
    stream_id = raw.open(DOMAIN)
    raw.handshake(stream_id, "not the secret")
    raw.expect(rb"<not-authorized")
    assert raw.closed()
    assert b"<handshake" not in raw.data.split(b">", 2)[-1]


def test_a_secret_from_a_file_works_and_an_unknown_domain_is_host_unknown(
    setup: tuple[RunningServer, int],
) -> None:
    good = Raw(setup[1])
    good.handshake(good.open(OTHER), OTHER_SECRET)
    good.expect(rb"<handshake[^>]*/>")
    good.close()
    bad = Raw(setup[1])
    bad.send(
        "<stream:stream xmlns='jabber:component:accept'"
        " xmlns:stream='http://etherx.jabber.org/streams' to='nobody.localhost'>"
    )
    bad.expect(rb"<host-unknown")
    assert bad.closed()
    bad.close()


def test_a_client_stream_on_the_component_port_is_invalid_namespace(raw: Raw) -> None:
    raw.send(
        "<stream:stream xmlns='jabber:client'"
        f" xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}'>"
    )
    raw.expect(rb"<invalid-namespace")
    assert raw.closed()


# ---------------------------------------------------------------- routing


async def test_an_account_pings_the_component_and_the_component_pings_the_server(
    setup: tuple[RunningServer, int],
) -> None:
    server, port = setup
    async with component(port) as comp, logged_in(server, "alice@localhost", "alice-pass") as alice:
        rtt = await alice.plugin["xep_0199"].ping(slixmpp.JID(DOMAIN), timeout=5)
        assert rtt >= 0
        # slixmpp's itest: a JID of the component pings the server and gets the result.
        sender = slixmpp.JID(f"whatever@{DOMAIN}")
        pong = await comp.plugin["xep_0199"].send_ping(slixmpp.JID("localhost"), ifrom=sender)
        assert pong["type"] == "result"
        assert pong["to"] == sender
        # The host lists the component in its disco#items.
        items = await alice.plugin["xep_0030"].get_items(jid="localhost", timeout=5)
        listed = {item[0]: item[2] for item in items["disco_items"]["items"]}
        assert listed.get(DOMAIN) == "Test gateway"
        assert OTHER in listed


async def test_messages_flow_both_ways_between_an_account_and_the_component(
    setup: tuple[RunningServer, int],
) -> None:
    server, port = setup
    async with component(port) as comp, logged_in(server, "alice@localhost", "alice-pass") as alice:
        # A round trip after the initial presence: alice is available from now on.
        await alice.plugin["xep_0199"].ping(slixmpp.JID("localhost"), timeout=5)
        comp.send_message(
            mto="alice@localhost", mfrom=f"bot@{DOMAIN}", mbody="hello from the gateway"
        )
        got = await alice.next_message()
        assert got["from"] == f"bot@{DOMAIN}"
        assert got["body"] == "hello from the gateway"
        alice.send_message(mto=f"someone@{DOMAIN}/res", mbody="hi gateway", mtype="chat")
        received = await asyncio.wait_for(comp.messages.get(), 10)
        assert received["to"] == f"someone@{DOMAIN}/res"
        assert received["from"] == alice.boundjid
        assert received["body"] == "hi gateway"


async def test_a_disconnected_component_is_service_unavailable(
    setup: tuple[RunningServer, int],
) -> None:
    server, _port = setup
    async with logged_in(server, "alice@localhost", "alice-pass") as alice:
        with pytest.raises(IqError) as caught:
            await alice.plugin["xep_0199"].send_ping(slixmpp.JID(DOMAIN), timeout=5)
        assert caught.value.iq["error"]["condition"] == "service-unavailable"
        alice.send_message(mto=f"x@{DOMAIN}", mbody="anyone?")
        bounce = await alice.next_message()
        assert bounce["type"] == "error"
        assert bounce["error"]["condition"] == "service-unavailable"


async def test_a_second_connection_for_a_connected_domain_gets_conflict_and_the_first_stays(
    setup: tuple[RunningServer, int],
) -> None:
    server, port = setup
    async with component(port) as comp, logged_in(server, "alice@localhost", "alice-pass") as alice:
        second = Raw(port)
        second.handshake(second.open(DOMAIN), SECRET)
        second.expect(rb"<conflict")
        assert second.closed()
        second.close()
        await alice.plugin["xep_0199"].ping(slixmpp.JID(DOMAIN), timeout=5)
        assert comp.is_connected()


async def test_a_forged_from_closes_only_that_component(setup: tuple[RunningServer, int]) -> None:
    server, port = setup
    async with logged_in(server, "alice@localhost", "alice-pass") as alice:
        bad = Raw(port)
        bad.handshake(bad.open(OTHER), OTHER_SECRET)
        bad.expect(rb"<handshake[^>]*/>")
        bad.send(
            "<message from='admin@localhost' to='alice@localhost'><body>forged</body></message>"
        )
        bad.expect(rb"<invalid-from")
        assert bad.closed()
        bad.close()
        with pytest.raises(asyncio.TimeoutError):
            await alice.next_message(timeout=1)
        # Only that connection: the account and the other component still work.
        async with component(port) as _comp:
            await alice.plugin["xep_0199"].ping(slixmpp.JID(DOMAIN), timeout=5)


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (
            b"<message to='alice@localhost'><body>x</bod></message>",
            rb"<not-well-formed|<invalid-xml",
        ),
        (
            b"<message to='alice@localhost'><body>" + b"x" * 300_000 + b"</body></message>",
            rb"<policy-violation",
        ),
        (b"<query xmlns='jabber:iq:roster'/>", rb"<unsupported-stanza-type"),
    ],
    ids=["malformed", "huge", "not-a-stanza"],
)
async def test_bad_input_closes_only_that_component_connection(
    setup: tuple[RunningServer, int], payload: bytes, condition: bytes
) -> None:
    server, port = setup
    async with logged_in(server, "alice@localhost", "alice-pass") as alice:
        bad = Raw(port)
        bad.handshake(bad.open(DOMAIN), SECRET)
        bad.expect(rb"<handshake[^>]*/>")
        with contextlib.suppress(OSError):
            bad.send(payload)
        bad.expect(condition)
        assert bad.closed()
        bad.close()
        await asyncio.sleep(0.1)
        # The domain is free again, and the account was not disturbed.
        async with component(port):
            await alice.plugin["xep_0199"].ping(slixmpp.JID(DOMAIN), timeout=5)


def test_a_component_gets_only_read_only_answers_from_the_server(raw: Raw) -> None:
    raw.handshake(raw.open(DOMAIN), SECRET)
    raw.expect(rb"<handshake[^>]*/>")
    # A component is not an account: the server keeps no roster for it ...
    raw.send(
        f"<iq type='get' id='r1' from='u@{DOMAIN}' to='localhost'>"
        "<query xmlns='jabber:iq:roster'/></iq>"
    )
    raw.expect(rb"id=['\"]r1['\"][^>]*>.*?<service-unavailable")
    # ... but answers what anyone may ask it,
    raw.send(
        f"<iq type='get' id='v1' from='u@{DOMAIN}' to='localhost'>"
        "<query xmlns='jabber:iq:version'/></iq>"
    )
    raw.expect(
        rb"<iq[^>]*type=['\"]result['\"][^>]*id=['\"]v1|<iq[^>]*id=['\"]v1['\"][^>]*type=['\"]result"
    )
    # and no federation: another domain is remote-server-not-found.
    raw.send(
        f"<message id='m1' from='u@{DOMAIN}' to='x@elsewhere.example'><body>x</body></message>"
    )
    raw.expect(rb"<remote-server-not-found")


def test_check_lists_the_components(setup: tuple[RunningServer, int]) -> None:
    server, port = setup
    result = server.cli("check")
    assert result.returncode == 0, result.stderr
    assert f"XEP-0114 on 127.0.0.1:{port}" in result.stdout
    assert f'{DOMAIN} "Test gateway"  listed by localhost  auth: secret' in result.stdout
    assert f"{OTHER}  listed by localhost  auth: secret_file bot.secret" in result.stdout
    assert SECRET not in result.stdout and OTHER_SECRET not in result.stdout


def test_guessing_handshakes_is_throttled_like_logins(tmp_path: Path) -> None:
    server, port = start_with_components(tmp_path)
    try:
        # [auth.throttle]'s free failures: answered not-authorized after failure_delay.
        for _ in range(6):
            guess = Raw(port)
            guess.handshake(guess.open(OTHER), "a guess")
            guess.expect(rb"<not-authorized", timeout=30)
            guess.close()
        # Past them each wrong answer is held, and its slot with it: guesses in
        # parallel run out of the domain's slots and are refused at once.
        guesses = [Raw(port) for _ in range(4)]
        for guess in guesses:
            guess.handshake(guess.open(OTHER), "a guess")
        outcomes = [g.expect(rb"<not-authorized|<policy-violation", timeout=30) for g in guesses]
        for guess in guesses:
            guess.close()
        assert any(b"<policy-violation" in o for o in outcomes), outcomes
        # Meanwhile the right secret for another component still works at once.
        good = Raw(port)
        good.handshake(good.open(DOMAIN), SECRET)
        good.expect(rb"<handshake[^>]*/>", timeout=3)
        good.close()
    finally:
        assert server.stop() == 0
    assert "handshake throttled" in server.log_text()


def test_serve_refuses_a_component_on_a_service_domain_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "chatgate.toml"
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{tmp_path / "var"}"
[[listeners]]
port = 0
tls = "none"
require_tls = false
[http]
enabled = false
[component_listener]
port = 0
[[components]]
domain = "conference.localhost"
secret = "{SECRET}"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "chatgate", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "conference.localhost is already served here" in output
    assert "listening:" not in output


async def test_a_fast_component_is_read_more_slowly_and_loses_nothing(tmp_path: Path) -> None:
    server, port = start_with_components(tmp_path, "c2s_rate = 32768\nc2s_burst = 8192")
    try:
        server.add_user("alice", "alice-pass")
        async with logged_in(server, "alice@localhost", "alice-pass") as alice:
            await alice.plugin["xep_0199"].ping(slixmpp.JID("localhost"), timeout=5)
            fast = Raw(port)
            fast.handshake(fast.open(DOMAIN), SECRET)
            fast.expect(rb"<handshake[^>]*/>")
            began = time.monotonic()
            # 64 KiB at once: 8 KiB of burst, then 32 KiB/s.
            fast.send(
                "".join(
                    f"<message from='bot@{DOMAIN}' to='alice@localhost'><body>{i:04d}{'x' * 1000}"
                    "</body></message>"
                    for i in range(64)
                )
            )
            bodies = [(await alice.next_message(timeout=15))["body"][:4] for _ in range(64)]
            elapsed = time.monotonic() - began
            fast.close()
        assert bodies == [f"{i:04d}" for i in range(64)]
        assert elapsed > 1.0, elapsed
    finally:
        assert server.stop() == 0
