"""Framed parsers shared by every web connection of the process.

Why: creating an expat parser and installing its handlers was the largest single
cost of a web login: a WebSocket made one per connection and another at the
stream restart, BOSH one per request body.  A `FramedParser` carries no state
from one message to the next once a message has parsed: each message must hold
exactly one complete element with nothing open after it (the parser checks that
before returning), namespace declarations inside it end with it, and the
synthetic stream element around the messages is the same for everyone.  So one
parser per set of limits serves every connection in turn, with the same checks
and limits as a parser of its own.

The one state that does carry over is failure: a parser that refused a message
refuses everything after it.  So a parser that raises is dropped here at once,
and the next message gets a new one; the connection whose message failed is
ended by its caller as before.

Must not: hold a parser across an `await` (parsing is synchronous, the event
loop runs one message at a time), or keep more than one parser per limit set
(the limits come from configuration, so the set is small).
"""

from __future__ import annotations

from chatgate.xml.element import Element
from chatgate.xml.framed import FramedParser

#: (default namespace, max_stanza_bytes, max_depth, max_nodes) -> the shared parser
_Key = tuple[str, int, int, int | None]
_parsers: dict[_Key, FramedParser] = {}


def parse_message(
    data: bytes,
    default_ns: str,
    max_stanza_bytes: int,
    max_depth: int,
    max_nodes: int | None = None,
) -> Element:
    """The one element `data` holds, judged as `FramedParser(default_ns, ...)` judges
    it (same exceptions); the parser is shared, and dropped when it raises."""
    key = (default_ns, max_stanza_bytes, max_depth, max_nodes)
    parser = _parsers.get(key)
    if parser is None:
        parser = _parsers[key] = FramedParser(
            default_ns,
            max_stanza_bytes=max_stanza_bytes,
            max_depth=max_depth,
            max_nodes=max_nodes,
        )
    try:
        return parser.parse(data)
    except BaseException:
        if _parsers.get(key) is parser:
            del _parsers[key]  # failed: it would refuse every later message
        raise


def live_parsers() -> int:
    """How many shared parsers exist (for tests)."""
    return len(_parsers)
