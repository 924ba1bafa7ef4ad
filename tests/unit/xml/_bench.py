"""Micro-benchmark of the XML layer (not a test: `PYTHONPATH=src python tests/unit/xml/_bench.py`).

Figures go in the report and module docstrings; `bench/` holds the real, end-to-end runs.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from chatgate.xml.framed import FramedParser
from chatgate.xml.parser import Stanza, XmlStreamParser
from chatgate.xml.serialize import serialize

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
MESSAGE = (
    b"<message to='user2@localhost' id='abc123' type='chat'>"
    b"<body>Hello there, this is message 12345</body></message>"
)
PER_CHUNK = 50


def report(label: str, fn: Callable[[], object], runs: int, per_run: int) -> None:
    best = min(timeit.repeat(fn, number=runs, repeat=7))
    each = best / runs / per_run
    print(f"{label:34} {1 / each:12,.0f} stanzas/s  {each * 1e6:6.2f} us each")


def main() -> None:
    chunk = MESSAGE * PER_CHUNK
    parser = XmlStreamParser()
    parser.feed(HEADER)
    assert len(parser.feed(chunk)) == PER_CHUNK
    report(f"feed(), {PER_CHUNK} stanzas per chunk", lambda: parser.feed(chunk), 2000, PER_CHUNK)

    event = parser.feed(MESSAGE)[0]
    assert isinstance(event, Stanza)
    stanza = event.element
    report("serialize()", lambda: serialize(stanza), 200_000, 1)

    def round_trip() -> None:
        for ev in parser.feed(chunk):
            serialize(ev.element).encode()  # type: ignore[union-attr]

    report("feed + serialize + encode", round_trip, 2000, PER_CHUNK)

    framed = FramedParser()
    message = MESSAGE.replace(b"<message ", b"<message xmlns='jabber:client' ", 1)
    report("FramedParser.parse (1 per message)", lambda: framed.parse(message), 50_000, 1)


if __name__ == "__main__":
    main()
