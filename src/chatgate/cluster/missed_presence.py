"""Presence that could not reach another node while Redis was unreachable, sent
when it can be.

A presence broadcast (RFC 6121 §4.2.2, §4.4.2, §4.5.2) to a contact's session on
another node goes through Redis.  While Redis is away the forwarder refuses it,
and a contact online through the outage would keep showing what it saw before:
a user who logged out stays available to it until their next login.  So the
refused presence is kept, the latest per sender for each recipient (a later one
replaces an earlier one, as it would on the wire), and sent once the recipient's
session is known again after the outage (`MissedPresence.take`): its node may
claim it again after this node has resynchronised.  A presence from the same
sender that reaches the recipient meanwhile (`passed`) makes the kept one stale,
so it is dropped.

Bounded: past `max_bytes` a presence is not kept (logged once per outage), and
what is kept is forgotten `ttl` seconds after Redis returned (a recipient that has
not reappeared by then is gone).  Per node, in memory: it is this node's own
refused work, which no other node could send.
"""

from __future__ import annotations

import logging

from chatgate.xml.framed import parse_fragment

log = logging.getLogger(__name__)

#: Bytes of kept presence a node holds at most.
MAX_BYTES = 4 * 1024 * 1024
#: Seconds after Redis returned that kept presence waits for its recipient.
TTL = 60.0


def sender_of(data: bytes) -> str | None:
    """The 'from' of an availability presence this node serialized (no type, or
    'unavailable'), read from its start tag; None for anything else.  Subscription
    presence is not kept (dropped as before): a request stays pending in the
    contact's roster, and the roster push of a state change says the same."""
    end = data.find(b">")
    if end < 0:
        return None
    head = data[: end + 1]
    if not head.endswith(b"/>"):
        head = head[:-1] + b"/>"
    try:
        attrs = parse_fragment(head).attrs
    except Exception:  # what we serialized ourselves: nothing to keep
        return None
    if attrs.get("type", "unavailable") != "unavailable":
        return None
    return attrs.get("from")


class MissedPresence:
    """Refused presence, by recipient full JID, then sender (see the module docstring)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        #: recipient full JID -> sender -> the latest refused presence (read by the
        #: forwarding path, which looks only while it is not empty)
        self.pending: dict[str, dict[str, bytes]] = {}
        self._bytes = 0
        self._overflowed = 0

    def keep(self, recipient: str, data: bytes) -> None:
        sender = sender_of(data)
        if sender is None:
            return
        kept = self.pending.setdefault(recipient, {})
        earlier = kept.pop(sender, None)
        if earlier is not None:
            self._bytes -= len(earlier)
        if self._bytes + len(data) > self.max_bytes:
            if not kept:
                del self.pending[recipient]
            if not self._overflowed:
                log.warning(
                    "cluster: over %d bytes of presence refused for other nodes: the"
                    " rest is not sent when Redis returns",
                    self.max_bytes,
                )
            self._overflowed += 1
            return
        kept[sender] = data
        self._bytes += len(data)

    def passed(self, recipient: str, data: bytes) -> None:
        """A presence reached `recipient`: what was kept from its sender is stale."""
        kept = self.pending.get(recipient)
        if kept is None:
            return
        sender = sender_of(data)
        earlier = kept.pop(sender, None) if sender is not None else None
        if earlier is not None:
            self._bytes -= len(earlier)
            if not kept:
                del self.pending[recipient]

    def take(self, recipient: str) -> list[bytes]:
        """What was kept for `recipient`, oldest first; forgotten here."""
        kept = self.pending.pop(recipient, None)
        if kept is None:
            return []
        taken = list(kept.values())
        self._bytes -= sum(len(data) for data in taken)
        return taken

    def forget(self) -> int:
        """Drop everything kept (the recipients did not reappear); how many."""
        dropped = sum(len(kept) for kept in self.pending.values())
        self.pending.clear()
        self._bytes = 0
        self._overflowed = 0
        return dropped
