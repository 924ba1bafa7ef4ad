"""XEP-0198 stream management: the counting core (sans-I/O).

Theory of operation
-------------------
Once a client sends `<enable/>`, both sides count the stanzas (message,
presence, iq) they *handled* (XEP-0198 §4): the server counts what the client
sent (`inbound`, reported in `<a h/>` and `<resumed h/>`), and keeps every
stanza it sent to the client in an unacknowledged queue until the client's
`<a h/>` (or the `h` of a `<resume/>`) says it handled it.  Sequence numbers
wrap at 2**32 (§4: "the value of 'h' ... MUST be reset to zero" past 2^32 - 1).

The queue holds serialized stanzas (the bytes the router wrote): replaying them
after a resumption writes the very same bytes, and what is never acknowledged
is parsed back only when the session ends for real (`sm_stream.py`).

The queue is bounded by count and bytes (`QueueLimits`): `push` says when it is
over, and the driver closes the session with `resource-constraint` (as Prosody
does: a client that never acknowledges must not make the server buffer without
end).  An `h` that acknowledges more than was sent is `HandledCountTooHigh`: the
stream ends with `undefined-condition` and XEP-0198 §4's
`<handled-count-too-high/>`.

This module never awaits, never reads the clock and never touches a socket.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.vocabulary.ns import SM
from chatgate.xml.serialize import escape_attr

#: XEP-0198 (stream management)
#: XEP-0352 (client state indication)

_WRAP = 1 << 32
#: what the client's 'h' may be: a decimal unsigned 32-bit integer (xs:unsignedInt)
_MAX_DIGITS = 10


class HandledCountTooHigh(Exception):
    """The peer acknowledged stanzas the server never sent (XEP-0198 §4)."""

    def __init__(self, h: int, sent: int) -> None:
        super().__init__(f"h={h} acknowledges more than the {sent} stanzas sent")
        self.h = h
        self.sent = sent


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Bounds on what one session keeps unacknowledged."""

    stanzas: int
    bytes: int


def parse_h(text: str | None) -> int | None:
    """The value of an 'h' attribute (xs:unsignedInt), or None when it is missing
    or not one."""
    if text is None or not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    value = int(text)
    return value if value < _WRAP else None


class AckQueue:
    """One stream-managed session's counts and unacknowledged stanzas."""

    __slots__ = ("_max_bytes", "_max_stanzas", "_queue", "acked", "inbound", "queued_bytes", "sent")

    def __init__(self, limits: QueueLimits) -> None:
        self._max_stanzas = limits.stanzas
        self._max_bytes = limits.bytes
        #: stanzas handled from the client (mod 2**32): our 'h'
        self.inbound = 0
        #: stanzas sent to the client since <enable/> (mod 2**32)
        self.sent = 0
        #: the client's last 'h': how many of `sent` it acknowledged
        self.acked = 0
        self.queued_bytes = 0
        self._queue: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, data: bytes) -> bool:
        """Record one stanza sent to the client; False once the queue is over one of
        its limits (the stanza is kept all the same: nothing is dropped here)."""
        queue = self._queue
        queue.append(data)
        sent = self.sent + 1
        self.sent = sent if sent != _WRAP else 0
        size = self.queued_bytes = self.queued_bytes + len(data)
        return len(queue) <= self._max_stanzas and size <= self._max_bytes

    def handled(self) -> None:
        """One stanza from the client was handled."""
        self.inbound = (self.inbound + 1) % _WRAP

    def ack(self, h: int) -> int:
        """The client handled every stanza up to `h`: drop those from the queue and
        return how many went.  Raises HandledCountTooHigh when `h` is past what was
        sent.  Acks travel in order on one stream and 'h' only grows, so an `h` below
        the last one is no stale ack but a count past 2**32 - 1: too high as well."""
        count = (h - self.acked) % _WRAP
        if count > len(self._queue):
            raise HandledCountTooHigh(h, self.sent)
        queue = self._queue
        for _ in range(count):
            self.queued_bytes -= len(queue.popleft())
        self.acked = h
        return count

    def unacked(self) -> list[bytes]:
        """What the client has not acknowledged, oldest first (the queue is kept)."""
        return list(self._queue)

    def drain(self) -> list[bytes]:
        """Take every unacknowledged stanza out of the queue (the session ends)."""
        items = list(self._queue)
        self._queue.clear()
        self.queued_bytes = 0
        return items


# ---------------------------------------------------------------- nonzas


def request() -> bytes:
    return f"<r xmlns='{SM}'/>".encode()


def answer(h: int) -> bytes:
    return f"<a xmlns='{SM}' h='{h}'/>".encode()


def enabled(token: str | None, max_seconds: int) -> str:
    """`<enabled/>` (XEP-0198 §3); with a token, the stream may be resumed for up
    to `max_seconds` (§5)."""
    if token is None:
        return f"<enabled xmlns='{SM}'/>"
    return f"<enabled xmlns='{SM}' id=\"{escape_attr(token)}\" resume='true' max='{max_seconds}'/>"


def resumed(token: str, h: int) -> str:
    return f"<resumed xmlns='{SM}' previd=\"{escape_attr(token)}\" h='{h}'/>"


def failed(condition: StanzaErrorCondition, h: int | None = None, text: str = "") -> str:
    """`<failed/>` (XEP-0198 §6) with a stanza error condition, and 'h' when the
    server knows how many stanzas of the former session it handled (§5)."""
    h_attr = f" h='{h}'" if h is not None else ""
    body = f"<{condition.value} xmlns='{ns.STANZA_ERRORS}'/>"
    if text:
        body += f"<text xmlns='{ns.STANZA_ERRORS}'>{escape_attr(text)}</text>"
    return f"<failed xmlns='{SM}'{h_attr}>{body}</failed>"
