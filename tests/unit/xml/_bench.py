"""Micro-benchmark of the XML layer (not a test: run `python tests/unit/xml/_bench.py`).

Figures go in the report and module docstrings; `bench/` holds the real, end-to-end runs.
"""

from __future__ import annotations

import timeit

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


def main() -> None:
    chunk = MESSAGE * PER_CHUNK
    parser = XmlStreamParser()
    parser.feed(HEADER)
    assert len(parser.feed(chunk)) == PER_CHUNK

    def feed() -> None:
        parser.feed(chunk)

    runs = 2000
    best = min(timeit.repeat(feed, number=runs, repeat=5))
    print(f"feed():      {runs * PER_CHUNK / best:10,.0f} stanzas/s  ({best / runs / PER_CHUNK * 1e6:.2f} us each)")

    el = parser.feed(MESSAGE)[0]
    assert isinstance(el, Stanza)
    stanza = el.element
    runs = 200000
    best = min(timeit.repeat(lambda: serialize(stanza), number=runs, repeat=5))
    print(f"serialize(): {runs / best:10,.0f} stanzas/s  ({best / runs * 1e6:.2f} us each)")

    def round_trip() -> None:
        for event in parser.feed(chunk):
            serialize(event.element).encode()  # type: ignore[union-attr]

    runs = 2000
    best = min(timeit.repeat(round_trip, number=runs, repeat=5))
    print(f"parse+serialize+encode: {runs * PER_CHUNK / best:10,.0f} stanzas/s  ({best / runs / PER_CHUNK * 1e6:.2f} us each)")


if __name__ == "__main__":
    main()
