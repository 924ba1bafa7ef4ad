"""XEP-0163 PEP in a cluster: an event published on one node reaches the
interested sessions on every node.

Who hears an event is decided in two steps (`modules/pep/notifier.py`):

1. the accounts: the owner and its contacts online anywhere that the node's
   access model lets in.  The publishing node decides this (rosters and node
   configurations are in the shared database; "online anywhere" is its session
   directory's mirror);
2. the sessions of those accounts whose XEP-0115 caps ask for ``node+notify``.
   Caps are learned by asking the session itself (`Router.ask`), whose reply
   arrives at the node its client is on; so each node answers this step for its
   own sessions only, from its own `Audience` and caps cache.

So the publishing node hands the event, with the accounts of step 1, to every
other node on the peers' topic ``pep`` (one PUBLISH per node, per event, not per
recipient), and each node delivers to its own interested sessions, asking the
caps of any it does not know yet (they hear the node's last item once learned, as
on one node).  Nothing is kept per node or per session in Redis: a node gone
takes nothing with it, and a node that joins hears the next event.  Redis away:
events reach the publishing node's sessions only (the broadcast is refused, and
logged once per outage); nothing is replayed (an event is a notification; the
items themselves stay in the database, and a client that comes back online
receives the last item).

The verified caps cache stays per node: a ver means the same everywhere, but
sharing it would save each node only its first question per ver, at the price of
a Redis read on a session's first presence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from chatgate.modules.pep.notifier import Audience
from chatgate.peers import Peers
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.parser import StreamParseError
from chatgate.xml.serialize import serialize

log = logging.getLogger(__name__)

TOPIC = "pep"
#: accounts one event may name (an owner's online contacts; rosters are bounded lower)
MAX_ACCOUNTS = 100_000
#: the largest event accepted from another node (an item is at most 1 MiB)
MAX_EVENT_BYTES = 2 * 1024 * 1024


class PepFanout:
    """Hands events to the other nodes and delivers theirs here (module docstring)."""

    def __init__(self, peers: Peers, audience: Audience) -> None:
        self.peers = peers
        self.audience = audience
        self._failing = False
        audience.fanout = self.send
        #: told of each event that arrives from another node, by owner and node
        #: (the avatar hash of XEP-0398 §4 follows the metadata node this way)
        self.on_event: Callable[[str, str], None] | None = None
        peers.on_message(TOPIC, self._arrived)

    def send(self, owner_bare: str, bares: list[str], node: str, event: Element) -> None:
        others = len(self.peers.alive()) - 1
        if others <= 0:
            return
        payload = json.dumps(
            {"o": owner_bare, "b": bares, "n": node, "e": serialize(event)}
        ).encode()
        sent = self.peers.broadcast(TOPIC, payload)
        if sent < others:
            if not self._failing:
                self._failing = True
                log.warning(
                    "pep: an event reached %d of %d other nodes (Redis away or a node"
                    " busy): their sessions miss it",
                    sent,
                    others,
                )
        else:
            self._failing = False

    def _arrived(self, sender: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            owner, node, xml = str(message["o"]), str(message["n"]), str(message["e"])
            bares = message["b"]
            if not isinstance(bares, list) or len(bares) > MAX_ACCOUNTS:
                raise TypeError("accounts must be a list")
            if len(xml) > MAX_EVENT_BYTES:
                raise ValueError("event too large")
            event = parse_fragment(xml.encode(), max_stanza_bytes=MAX_EVENT_BYTES)
        except (ValueError, KeyError, TypeError, StreamParseError) as exc:
            log.warning("pep: a malformed event from node %s was dropped: %s", sender, exc)
            return
        audience = self.audience
        audience.send_event(owner, audience.wanting([str(b) for b in bares], node), event)
        if self.on_event is not None:
            self.on_event(owner, node)
