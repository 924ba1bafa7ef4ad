"""XEP-0352 client state indication: what an inactive client gets later.

A client that says `<inactive/>` (a phone with its screen off) gets a
`ClientStateFilter` on its session's write path; `<active/>` removes it.  While
it is installed, each serialized stanza is sorted (`classify`):

* held: presence updates (available or unavailable; only the latest per sender
  full JID is kept, in the place of the latest), chat-state-only messages
  (XEP-0085, no body), and group chat messages that do not mention the user;
* urgent: everything else -- messages with a body, errors, IQs, subscription
  requests, messages that mention the user (their localpart in the body, or a
  XEP-0372 reference to their JID).  An urgent stanza first flushes what was
  held, then goes out: the radio is awake anyway, and the client sees
  everything in the order the server sent it (Prosody's mod_csi_simple
  does the same).

What is held is bounded (`HoldLimits`, count and bytes); past a bound
everything held is flushed, so a busy roster costs at most one bound of memory
per inactive session.  The filter looks at the bytes' start tag and a few
substrings only: it is not a parser, and with no filter installed (an active
client) the write path does nothing more than before.

Never awaits, never reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_CHAT_STATES = b"http://jabber.org/protocol/chatstates"
_REFERENCE = b"urn:xmpp:reference:0"
_TYPE = re.compile(rb"""\stype=["']([^"']*)["']""")
_FROM = re.compile(rb"""\sfrom=["']([^"']*)["']""")
_BODY = re.compile(rb"<body[^>]*>(.*?)</body>", re.DOTALL)
#: presence types that are state updates (RFC 6121 §4): None is available
_STATE_PRESENCE = (None, b"unavailable")


@dataclass(frozen=True, slots=True)
class HoldLimits:
    """What one inactive session may have held."""

    stanzas: int
    bytes: int


def _attr(pattern: re.Pattern[bytes], data: bytes) -> bytes | None:
    end = data.find(b">")
    match = pattern.search(data, 0, end if end > 0 else len(data))
    return match.group(1) if match else None


def classify(data: bytes, mention: Callable[[bytes], bool]) -> bytes | None:
    """How to treat one serialized stanza while the client is inactive: None when
    urgent, otherwise the key it is held under (presence replaces an earlier one
    with the same key; other held stanzas get a unique key from the caller)."""
    if data.startswith(b"<presence"):
        if _attr(_TYPE, data) in _STATE_PRESENCE:
            return b"p" + (_attr(_FROM, data) or b"")
        return None
    if data.startswith(b"<message"):
        mtype = _attr(_TYPE, data)
        if mtype == b"error":
            return None
        if b"<body" in data:
            if mtype == b"groupchat" and not mention(data):
                return b""
            return None
        if _CHAT_STATES in data:
            return b""
        return None
    return None


class ClientStateFilter:
    """The write path of an inactive session (see the module docstring)."""

    __slots__ = ("_bytes", "_held", "_seq", "bare", "forward", "limits", "localpart")

    def __init__(
        self, forward: Callable[[bytes], None], localpart: str, bare: str, limits: HoldLimits
    ) -> None:
        #: where stanzas go when they leave (stream management, or the output)
        self.forward = forward
        self.limits = limits
        self.localpart = localpart.lower().encode()
        self.bare = bare.encode()
        self._held: dict[bytes, bytes] = {}
        self._bytes = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._held)

    def mentions(self, data: bytes) -> bool:
        """The message names this user: its localpart in the body, or a XEP-0372
        reference to its JID."""
        if _REFERENCE in data and b"xmpp:" + self.bare in data:
            return True
        match = _BODY.search(data)
        return match is not None and self.localpart in match.group(1).lower()

    def write(self, data: bytes) -> None:
        key = classify(data, self.mentions)
        if key is None:
            self.flush()
            self.forward(data)
            return
        held = self._held
        if key:
            earlier = held.pop(key, None)
            if earlier is not None:
                self._bytes -= len(earlier)
        else:
            self._seq += 1
            key = b"#%d" % self._seq
        held[key] = data
        self._bytes += len(data)
        if len(held) > self.limits.stanzas or self._bytes > self.limits.bytes:
            self.flush()

    def flush(self) -> None:
        """Send everything held, in order."""
        if self._held:
            forward = self.forward
            for data in self.take():
                forward(data)

    def take(self) -> list[bytes]:
        """Everything held, in order, now the caller's."""
        items = list(self._held.values())
        self._held.clear()
        self._bytes = 0
        return items
