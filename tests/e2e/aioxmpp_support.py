"""aioxmpp clients for end-to-end tests: a second independent client library (after
slixmpp), as issue 15 asks for the features aioxmpp's own end-to-end suite covers.

aioxmpp 0.13 is driven as a library user drives it: a `PresenceManagedClient`
over STARTTLS to the test server's port, trusting its self-signed certificate
(`no_verify`: the certificate's validation is tested elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher

from tests.e2e.conftest import RunningServer


@contextlib.asynccontextmanager
async def aioxmpp_client(
    server: RunningServer, jid: str, password: str, *, available: bool = True
) -> AsyncIterator[aioxmpp.PresenceManagedClient]:
    """A logged-in aioxmpp client for `jid` (a full or bare JID on the test server),
    available unless told otherwise; disconnected on exit."""
    security = aioxmpp.make_security_layer(password, no_verify=True)
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid),
        security,
        override_peer=[("127.0.0.1", server.starttls_port, aioxmpp.connector.STARTTLSConnector())],
    )
    if available:
        client.presence = aioxmpp.PresenceState(True)
    async with client.connected():
        yield client


class Inbox:
    """The messages a client receives (of any type), queued for assertions."""

    def __init__(self, client: aioxmpp.Client) -> None:
        self.queue: asyncio.Queue[aioxmpp.Message] = asyncio.Queue()
        dispatcher = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
        dispatcher.register_callback(None, None, self.queue.put_nowait)

    async def next(self, timeout: float = 10) -> aioxmpp.Message:
        return await asyncio.wait_for(self.queue.get(), timeout)


def text_of(message: Any) -> str:
    """The body of an aioxmpp message, whatever language map it came in."""
    body = message.body
    return body.any() if body else ""


class Emissions:
    """Every emission of an aioxmpp signal (its positional and keyword arguments),
    queued for assertions: `await emissions.next()` is the next one to come."""

    def __init__(self, signal: Any) -> None:
        self.queue: asyncio.Queue[tuple[tuple[Any, ...], dict[str, Any]]] = asyncio.Queue()
        signal.connect(self._record)

    def _record(self, *args: Any, **kwargs: Any) -> None:
        # a STRONG connection stays while the callback returns a false value
        self.queue.put_nowait((args, kwargs))

    async def next(self, timeout: float = 10) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def silent(self, seconds: float = 0.5) -> bool:
        """True when nothing is emitted for `seconds` (after what came before)."""
        try:
            await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return True
        return False


@contextlib.asynccontextmanager
async def aioxmpp_client_with(
    server: RunningServer, jid: str, password: str, services: Sequence[type[Any]]
) -> AsyncIterator[aioxmpp.PresenceManagedClient]:
    """Like `aioxmpp_client`, with `services` summoned before the stream starts, as
    an application loads them: the roster is fetched at login (so roster pushes
    come), and the initial presence carries entity caps (XEP-0115) with every
    feature the services register (such as a PEP node's `+notify`)."""
    security = aioxmpp.make_security_layer(password, no_verify=True)
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid),
        security,
        override_peer=[("127.0.0.1", server.starttls_port, aioxmpp.connector.STARTTLSConnector())],
    )
    for service in services:
        client.summon(service)
    presence = client.summon(aioxmpp.PresenceServer)

    def announce_caps() -> None:
        # aioxmpp leaves it to the application to send its presence again when its
        # caps change (a PEP node claimed later, say): this is what it asks for
        presence.resend_presence()

    client.summon(aioxmpp.EntityCapsService).on_ver_changed.connect(announce_caps)
    await asyncio.sleep(0)  # the caps hash is computed in a call_soon after the summons
    client.presence = aioxmpp.PresenceState(True)
    async with client.connected():
        yield client


async def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def befriend(a: aioxmpp.Client, b: aioxmpp.Client) -> None:
    """A mutual presence subscription (RFC 6121 §3) between two clients that have
    `aioxmpp.RosterClient` loaded, each approving the other's request; returns
    once both rosters say `both`."""
    rosters = (a.summon(aioxmpp.RosterClient), b.summon(aioxmpp.RosterClient))
    for roster in rosters:

        def approve(stanza: aioxmpp.Presence, roster: aioxmpp.RosterClient = roster) -> None:
            roster.approve(stanza.from_.bare())

        roster.on_subscribe.connect(approve)
    bare_a, bare_b = a.local_jid.bare(), b.local_jid.bare()
    rosters[0].subscribe(bare_b)
    rosters[1].subscribe(bare_a)

    def mutual() -> bool:
        one, two = rosters[0].items.get(bare_b), rosters[1].items.get(bare_a)
        return bool(one and two and one.subscription == two.subscription == "both")

    await wait_until(mutual)


def add_users(server: RunningServer, names: Sequence[str], password: str) -> None:
    """Create accounts `names`, all with `password`, in one `chatgate user import`
    (one CLI start instead of one per `add_user`)."""
    accounts = server.data_dir.parent / f"accounts-{names[0]}.txt"
    accounts.write_text("".join(f"{name} {password}\n" for name in names))
    result = server.cli("user", "import", str(accounts), "--format", "plain")
    assert result.returncode == 0, result.stdout + result.stderr
