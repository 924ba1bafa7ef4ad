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
