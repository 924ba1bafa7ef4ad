"""What a stream says, apart from how a transport frames it.

The negotiation core and the connection driver speak of a stream in five
framing-neutral acts: open it (`StreamHeader`), offer features, send one
top-level element, end it with or without a stream error (RFC 6120 §4.4,
§4.9).  Each transport turns those acts into its own bytes through a
`StreamOutput`:

* TCP and TLS (`xmpp/output.py`): one XML document, `<stream:stream>` ...
  `</stream:stream>` (RFC 6120 §4);
* WebSocket (RFC 7395): one element per message, `<open/>` and `<close/>`;
* BOSH (XEP-0124, XEP-0206): elements wrapped in `<body/>`, the stream's
  attributes on the session-creation response, `type='terminate'` at the end.

A session writes one serialized element at a time (`StreamOutput.element`); an
output may coalesce what one loop turn wrote into one system call.

Elements reach an output serialized for a `jabber:client` parent (the TCP stream
declares it once, so stanzas carry no `xmlns`).  Where every element stands
alone (WebSocket messages, children of a BOSH `<body/>`), `qualify` adds the
declaration the element relies on.  It only looks at the start tag: a namespace
declaration, when an element has one, is its first attribute, as both the
serializer (`xml/serialize.py`) and the negotiation core write it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.serialize import escape_text


@dataclass(slots=True)
class StreamHeader:
    """The server's side of a stream opening (RFC 6120 §4.7).  Not frozen: two are
    built per login and read once (a frozen dataclass pays `object.__setattr__`
    per field)."""

    #: §4.7.1: the served domain
    from_: str
    #: §4.7.3: the stream id (BOSH reports it as `authid`)
    stream_id: str
    #: §4.7.2: the client's `from`, echoed when it sent one
    to: str | None = None
    #: §4.7.4
    lang: str = "en"


@dataclass(frozen=True, slots=True)
class StreamError:
    """A stream error (RFC 6120 §4.9): the last thing a stream says."""

    condition: StreamErrorCondition
    text: str = ""

    def element(self, stream_prefix_declared: bool = True) -> str:
        """`<stream:error>`; with `stream_prefix_declared=False` the element declares
        the `stream` prefix itself (RFC 7395 §3.6: every message stands alone)."""
        decl = "" if stream_prefix_declared else f" xmlns:stream='{ns.STREAMS}'"
        body = f"<{self.condition.value} xmlns='{ns.STREAM_ERRORS}'/>"
        if self.text:
            body += f"<text xmlns='{ns.STREAM_ERRORS}'>{escape_text(self.text)}</text>"
        return f"<stream:error{decl}>{body}</stream:error>"


class StreamOutput(Protocol):
    """The driver's side of a transport's framer: a stream in five acts."""

    def header(self, header: StreamHeader) -> None:
        """Open (or, after a restart, re-open) the server's stream."""

    def features(self, children: str) -> None:
        """`<stream:features>` with these serialized children (RFC 6120 §4.3.2)."""

    def element(self, data: bytes) -> None:
        """One serialized top-level element (a stanza or a negotiation element)."""

    def end(self, error: StreamError | None) -> None:
        """End the stream, after the stream error if one is given, and send
        everything still pending at once (the transport closes next)."""

    def flush(self) -> None:
        """Send what is pending now (before a TLS handshake, for one)."""

    def discard(self) -> None:
        """The connection is gone: drop what is pending."""


_CLIENT_DECL = f" xmlns='{ns.CLIENT}'".encode()
_STREAM_DECL = f" xmlns:stream='{ns.STREAMS}'".encode()
_XMLNS = (b" xmlns=", b" xmlns:stream=")
_TAG_NAME = re.compile(rb"<[^\s/>]+")


def qualify(data: bytes) -> bytes:
    """`data` (one element serialized for a `jabber:client` parent) made to stand
    alone: a stanza gets `xmlns='jabber:client'`, a `stream:`-prefixed element the
    declaration of its prefix; an element that declares its namespace is returned
    as it is."""
    match = _TAG_NAME.match(data)
    if match is None:
        raise ValueError("not a serialized element")
    end = match.end()
    if data.startswith(_XMLNS, end):
        return data
    decl = _STREAM_DECL if data.startswith(b"<stream:") else _CLIENT_DECL
    return data[:end] + decl + data[end:]
