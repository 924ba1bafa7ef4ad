"""aioxmpp clients for end-to-end tests: a second independent client library (after
slixmpp), as issue 15 asks for the features aioxmpp's own end-to-end suite covers.

aioxmpp 0.13 is driven as a library user drives it: a `PresenceManagedClient`
over STARTTLS to the test server's port, trusting its self-signed certificate
(`no_verify`: the certificate's validation is tested elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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
