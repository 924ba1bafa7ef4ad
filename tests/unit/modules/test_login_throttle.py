"""Brute-force protection as the connection driver applies it (issue 9 item 13): the
credentials are evaluated at once, only a failure is held back, the stream accepts
nothing meanwhile, an attempt abandoned mid-evaluation counts as a failure, and an
address whose slots are all taken is refused unevaluated.  SASL and XEP-0078 alike."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chatgate.auth.provider import Capability
from chatgate.auth.throttle import throttle_account
from chatgate.xmpp.negotiation import State

from ..xmpp.transcript import split
from .wire import Server, Wire, plain

ADDRESS = "192.0.2.7"
HOLD = 0.5  # seconds: long enough that a few loop turns never reach it
HELD = {"address": {"free_failures": 0, "base_delay": HOLD, "max_delay": HOLD}}
NOT_AUTHORIZED = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"


@contextlib.asynccontextmanager
async def server(
    tmp: Path, throttle: dict[str, Any], modules: dict[str, Any] | None = None, **kw: Any
) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, modules or {}, auth={"throttle": throttle}, **kw)
    try:
        await srv.add_user("alice", "wonderland")
        yield srv
    finally:
        await srv.stop()


def feed(wire: Wire, text: str) -> None:
    """Client text, parsed and handed over, without waiting for what it started."""
    for chunk in split(text.encode(), wire.mode):
        if wire.conn.closed:
            break
        wire.conn.events(wire.parser.feed(chunk))


async def written_soon(wire: Wire) -> str:
    """What the server wrote within a few turns of the event loop (no timers fire)."""
    for _ in range(10):
        await asyncio.sleep(0)
    wire.conn.output.flush()
    return wire.transport.out.decode()


async def counted(srv: Server, action: Any) -> None:
    """Run `action`, then wait until the driver has reported one failed attempt (the
    password check runs in a worker thread)."""
    reported = asyncio.Event()
    gate = srv.ctx.login_gate
    report = gate.failed

    def spy(*args: Any, **kw: Any) -> float:
        reported.set()
        return report(*args, **kw)

    gate.failed = spy  # type: ignore[method-assign]
    try:
        action()
        await reported.wait()
    finally:
        gate.failed = report  # type: ignore[method-assign]


def fail_from(srv: Server, address: str, times: int) -> None:
    for _ in range(times):
        srv.ctx.auth_throttle.failed(address, "victim@localhost", 0.0, reserved=False)


def auth_set(username: str, iq_id: str = "a1", **cred: str) -> str:
    parts = f"<username>{username}</username>"
    parts += "".join(f"<{k}>{v}</{k}>" for k, v in cred.items())
    return (
        f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:auth'>{parts}"
        "<resource>r</resource></query></iq>"
    )


# ---------------------------------------------------------------- SASL


async def test_a_wrong_password_is_answered_after_its_hold_and_the_stream_waits(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, HELD) as srv:
        wire = srv.connect(mode)
        await wire.open()
        start = len(wire.transport.out)
        await counted(srv, lambda: feed(wire, plain("alice", "wrong")))
        assert "<failure" not in (await written_soon(wire))[start:]
        assert wire.conn.negotiation.state is State.FAILURE_PENDING
        assert srv.ctx.auth_throttle.stats.failures == 1  # counted at once, held back
        await wire.settle()
        assert wire.transport.out.decode()[start:] == NOT_AUTHORIZED
        assert wire.conn.negotiation.state is State.OPEN
        assert "<success" in await wire.send(plain("alice", "wonderland"))


async def test_a_new_attempt_while_a_failure_is_held_ends_the_stream(
    tmp_path: Path, mode: str
) -> None:
    """RFC 6120 §6.4.3: the client waits for the outcome; one that guesses again at once
    gets policy-violation, and its second guess is never evaluated."""
    async with server(tmp_path, HELD) as srv:
        wire = srv.connect(mode)
        await wire.open()
        await counted(srv, lambda: feed(wire, plain("alice", "wrong")))
        assert wire.conn.negotiation.state is State.FAILURE_PENDING
        feed(wire, plain("alice", "wonderland"))
        await wire.settle()
        assert wire.closed
        out = wire.transport.out.decode()
        assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
        assert "<success" not in out
        assert srv.ctx.auth_throttle.stats.failures == 1


async def test_the_last_allowed_failure_closes_the_stream_after_its_answer(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, {"address": {"base_delay": 0.05, "max_delay": 0.05}}) as srv:
        wire = srv.connect(mode)
        await wire.open()
        for _ in range(3):
            out = await wire.send(plain("alice", "wrong"))
        assert out.startswith(NOT_AUTHORIZED)
        assert "too many failed authentication attempts" in out
        assert wire.closed


async def test_a_right_password_from_an_address_with_many_failures_gets_in_at_once(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, {}) as srv:
        fail_from(srv, ADDRESS, 50)  # the old throttle banned the address for an hour here
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        async with asyncio.timeout(5):  # a hold would be 20 s here
            assert "<success" in await wire.send(plain("alice", "wonderland"))


async def test_an_address_with_every_slot_taken_is_refused_unevaluated(
    tmp_path: Path, mode: str
) -> None:
    throttle = {"address": {"max_in_flight": 2, "max_in_flight_per_account": 1}}
    async with server(tmp_path, throttle) as srv:
        for user in ("u1@localhost", "u2@localhost"):  # two attempts in flight elsewhere
            srv.ctx.auth_throttle.check(ADDRESS, user, asyncio.get_running_loop().time())
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        out = await wire.send(plain("alice", "wonderland"))
        assert out == (
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/>"
            "<text xml:lang='en'>try again later</text></failure>"
        )
        assert srv.ctx.auth_throttle.stats.failures == 0
        other = srv.connect(mode, address="198.51.100.1")
        assert "<jid>" in await other.login_plain("alice", "wonderland")


class _SlowPasswords:
    """A password service that answers only when told to (an LDAP server, say)."""

    offers = frozenset({Capability.VERIFY_PASSWORD})

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.asked = asyncio.Event()

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> None:
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        self.asked.set()
        await self.go.wait()
        return password == "wonderland"

    async def user_exists(self, username: str, domain: str) -> bool:
        return username == "alice"


async def test_an_attempt_abandoned_during_evaluation_is_a_failure_that_holds_its_slot(
    tmp_path: Path,
) -> None:
    """The client sends its guess and leaves (it may read the silence as "wrong"): the
    attempt counts as a failure and its slot stays taken for the failure's hold."""
    service = _SlowPasswords()
    async with server(tmp_path, HELD, provider=service) as srv:
        wire = srv.connect(address=ADDRESS)
        await wire.open()
        feed(wire, plain("alice", "wrong"))
        await service.asked.wait()
        wire.conn.connection_lost()
        service.go.set()
        await wire.settle()
        throttle = srv.ctx.auth_throttle
        assert throttle.stats.failures == 1
        now = asyncio.get_running_loop().time()
        assert throttle.in_flight(ADDRESS, now) == 1  # type: ignore[attr-defined]
        assert throttle.in_flight(ADDRESS, now + HOLD + 0.01) == 0  # type: ignore[attr-defined]


async def test_a_long_plain_password_is_malformed_and_not_a_guess(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, HELD) as srv:
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        data = base64.b64encode(b"\0alice\0" + b"w" * 40_000).decode()
        out = await wire.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>"
        )
        assert out == (
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/>"
            "<text xml:lang='en'>the password is longer than 1024 bytes</text></failure>"
        )
        assert srv.ctx.auth_throttle.stats.failures == 0


# ---------------------------------------------------------------- XEP-0078


LEGACY = {"legacy_auth": {"enabled": True}}
LEGACY_NOT_AUTHORIZED = '<error type="auth" code="401"><not-authorized '


async def test_legacy_right_password_from_an_address_with_many_failures_gets_in(
    tmp_path: Path, mode: str
) -> None:
    """Replaces the old test_banned_address_is_refused_without_checking: no lockout."""
    async with server(tmp_path, {}, LEGACY) as srv:
        fail_from(srv, ADDRESS, 50)
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        assert await wire.send(auth_set("alice", password="wonderland")) == (
            '<iq type="result" id="a1"/>'
        )
        assert srv.ctx.router.directory.bound_here("alice@localhost")


async def test_legacy_wrong_password_is_held_then_not_authorized(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, HELD, LEGACY) as srv:
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        start = len(wire.transport.out)
        await counted(srv, lambda: feed(wire, auth_set("alice", password="wrong")))
        assert "<iq" not in (await written_soon(wire))[start:]
        await wire.settle()
        assert LEGACY_NOT_AUTHORIZED in wire.transport.out.decode()[start:]
        account = throttle_account("alice", "localhost")
        assert srv.ctx.auth_throttle.failed(ADDRESS, account, 0.0, reserved=False).delay == HOLD


async def test_legacy_busy_address_is_refused_unchecked(tmp_path: Path, mode: str) -> None:
    throttle = {"address": {"max_in_flight": 1, "max_in_flight_per_account": 1}}
    async with server(tmp_path, throttle, LEGACY) as srv:
        srv.ctx.auth_throttle.check(ADDRESS, "u1@localhost", asyncio.get_running_loop().time())
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        out = await wire.send(auth_set("alice", password="wonderland"))
        assert '<error type="wait" code="500"><resource-constraint ' in out
        assert not srv.ctx.router.directory.bound_here("alice@localhost")


async def test_legacy_over_long_password_is_not_acceptable_and_not_counted(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, HELD, LEGACY) as srv:
        wire = srv.connect(mode, address=ADDRESS)
        await wire.open()
        out = await wire.send(auth_set("alice", password="p" * 2000))
        assert '<error type="modify" code="406"><not-acceptable ' in out
        assert "the password is longer than 1024 bytes" in out and "ppppp" not in out
        assert srv.ctx.auth_throttle.stats.failures == 0


async def test_a_scram_exchange_left_after_its_challenge_frees_its_slot_uncounted(
    tmp_path: Path, mode: str
) -> None:
    """SCRAM parked between its challenge and the client's proof evaluated nothing: a
    client that hangs up there (probing salts, say) frees its slot at once, uncounted.
    (Needs `C2SConnection.connection_lost` to call `_abandon_attempt`.)"""
    throttle = {"address": {"max_in_flight": 2, "max_in_flight_per_account": 1}}
    async with server(tmp_path, throttle) as srv:
        first = base64.b64encode(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL").decode()
        for _ in range(5):
            wire = srv.connect(mode, address=ADDRESS)
            await wire.open()
            out = await wire.send(
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
                f"{first}</auth>"
            )
            assert out.startswith("<challenge"), out
            throttle = srv.ctx.auth_throttle
            now = asyncio.get_running_loop().time()
            assert throttle.in_flight(ADDRESS, now) == 1  # type: ignore[attr-defined]
            wire.conn.connection_lost()
            assert throttle.in_flight(ADDRESS, now) == 0  # type: ignore[attr-defined]
        assert srv.ctx.auth_throttle.stats.failures == 0
