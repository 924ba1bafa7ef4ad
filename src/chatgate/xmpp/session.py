"""The typed record of one bound client session (no free-form attributes).

A session knows how to hand bytes to its transport; it never routes, parses or
touches storage.  Modules keep their per-session state in their own tables keyed
by the session, not on this object.
"""

from __future__ import annotations

from collections.abc import Callable

from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize


class StanzaCounts:
    """Stanzas this process's bound sessions sent and were sent, since it started.

    Per process: each server process counts its own (a cluster sums them); they
    only grow.  The hot path increments them inline (an attribute increment, never
    a call): `Router.route` counts each stanza a bound client sent, `C2SSession.send`
    and the router's deliveries each stanza written to a session.  Stream-level
    output (features, SASL, stream errors) is not counted.  Read by
    `chatgate.administration.stats`."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0


#: this process's stanza counts
STANZAS = StanzaCounts()


class C2SSession:
    __slots__ = (
        "available",
        "bare",
        "close",
        "directed",
        "domain",
        "full",
        "interested",
        "presence",
        "priority",
        "resource",
        "stream_id",
        "tls_active",
        "transport",
        "username",
        "write",
    )

    def __init__(
        self,
        *,
        username: str,
        domain: str,
        resource: str,
        stream_id: str,
        write: Callable[[bytes], None],
        close: Callable[[StreamErrorCondition | None, str], None],
        transport: str,
        tls_active: bool = False,
    ) -> None:
        self.username = username
        self.domain = domain
        self.resource = resource
        self.bare = f"{username}@{domain}"
        self.full = f"{self.bare}/{resource}"
        self.stream_id = stream_id
        #: writes serialized stanzas to the peer (transport-agnostic)
        self.write = write
        #: closes the stream, with a stream error when a condition is given
        self.close = close
        self.transport = transport
        #: the stream was encrypted when the session was bound (in-band password
        #: changes need it, XEP-0077 §3.3)
        self.tls_active = tls_active
        # The three fields below are written only by the session directory
        # (`xmpp/directory.py`, `mark_available`/`mark_unavailable`), which a shared
        # implementation mirrors for other nodes; everyone else reads them.
        #: sent initial presence and not yet unavailable (RFC 6121 §4.2)
        self.available = False
        #: priority of the last available presence (RFC 6121 §4.7.2.3)
        self.priority = 0
        #: last available presence broadcast, for probes (RFC 6121 §4.3.2)
        self.presence: Element | None = None
        #: requested the roster, so it gets roster pushes (RFC 6121 §2.1.6)
        self.interested = False
        #: JIDs that got directed presence (RFC 6121 §4.6), to send unavailable later;
        #: at most `[limits] max_directed_presences` (enforced by modules/presence.py)
        self.directed: set[str] = set()

    def send(self, el: Element) -> None:
        STANZAS.sent += 1
        self.write(serialize(el).encode())

    def __repr__(self) -> str:
        return f"<C2SSession {self.full} {self.transport}>"
