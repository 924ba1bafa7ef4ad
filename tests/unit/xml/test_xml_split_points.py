"""Input split at every byte position gives the same events, each as soon as its last
byte is in (issue 10, item 8).

Expat 2.6 added "reparse deferral": with it on, a token completed by a small read may
wait inside the parser until more bytes arrive, so a whole stanza (say its
`</message>`) could sit there until the client sends something else.  The parser
turns it off (`SetReparseDeferralEnabled(False)`, where pyexpat has it).  These
tests hold it to that: however the bytes are cut, the events are the same, and a
stanza comes out of the very `feed()` that delivers its last byte.

`test_the_checks_catch_a_parser_that_holds_bytes_back` shows that these checks
catch a parser that holds bytes back (an expat stand-in that keeps the last byte
of each feed), on every expat, including those without reparse deferral (2.5
and older, where the switch itself cannot be checked).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.parsers import expat as pyexpat

import pytest

import chatgate.xml.parser as parser_module
from chatgate.xml.element import Element
from chatgate.xml.parser import Stanza, StreamClosed, StreamEvent, StreamOpened, XmlStreamParser

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


def _tree(el: Element) -> tuple[object, ...]:
    return (
        el.ns,
        el.name,
        dict(el.attrs),
        [c if isinstance(c, str) else _tree(c) for c in el.children],
    )


def canon(event: StreamEvent) -> tuple[object, ...]:
    """A comparable picture of an event (elements compare by identity)."""
    if isinstance(event, StreamOpened):
        return ("open", event.name, event.ns, event.attrs, event.default_ns, event.prefixes)
    if isinstance(event, Stanza):
        return ("stanza", _tree(event.element))
    assert isinstance(event, StreamClosed)
    return ("close",)


STANZAS: list[bytes] = [
    b"<presence/>",
    b"<message to='bob@localhost' type='chat' id='m1'><body>hello</body></message>",
    # a long token (the body's text) and a long end tag, fed a byte at a time, is
    # where expat 2.6 defers most
    b"<message to='bob@localhost'><body>" + b"x" * 3000 + b"</body></message>",
    "<message xml:lang='fr'><body>d\u00e9j\u00e0 \u2603 \U0001f600 &amp; &lt;</body></message>".encode(),
    b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=''/></iq>",
    b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<resource>" + b"r" * 500 + b"</resource></bind></iq>",
    b"<message><x xmlns='urn:a' long-attribute='" + b"a" * 2000 + b"'/></message>",
    b"\n  ",  # whitespace keepalive between stanzas
    b"<presence type='unavailable'/>",
]
DATA = HEADER + b"".join(STANZAS)


def _stanza_ends() -> list[int]:
    """Byte offsets just past each stanza's last byte."""
    ends, offset = [], len(HEADER)
    for piece in STANZAS:
        offset += len(piece)
        if piece.strip():
            ends.append(offset)
    return ends


def _feed(pieces: Iterator[bytes] | list[bytes]) -> list[tuple[object, ...]]:
    parser = XmlStreamParser()
    events: list[StreamEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return [canon(e) for e in events]


WHOLE = _feed([DATA])


def test_the_transcript_has_every_stanza() -> None:
    assert [e[0] for e in WHOLE] == ["open"] + ["stanza"] * len(_stanza_ends())


def test_a_split_at_every_byte_position_gives_the_same_events() -> None:
    for cut in range(len(DATA) + 1):
        assert _feed([DATA[:cut], DATA[cut:]]) == WHOLE, f"split at byte {cut}"


def _stanzas_seen_after_each_byte(make: type[XmlStreamParser] = XmlStreamParser) -> list[int]:
    parser = make()
    seen, counts = 0, []
    for i in range(len(DATA)):
        seen += sum(isinstance(e, Stanza) for e in parser.feed(DATA[i : i + 1]))
        counts.append(seen)
    return counts


def _expected_counts() -> list[int]:
    ends = _stanza_ends()
    return [sum(end <= i + 1 for end in ends) for i in range(len(DATA))]


def test_fed_a_byte_at_a_time_each_stanza_comes_out_with_its_last_byte() -> None:
    counts = _stanzas_seen_after_each_byte()
    expected = _expected_counts()
    late = [i for i, (got, want) in enumerate(zip(counts, expected, strict=True)) if got != want]
    assert not late, f"stanza events late or early at byte offsets {late[:5]}"


@pytest.mark.parametrize("end", _stanza_ends())
def test_a_stanza_is_out_as_soon_as_the_read_that_completes_it(end: int) -> None:
    """Every way of cutting the bytes before a stanza's end into two reads: after
    both, everything up to that stanza has come out (nothing waits for more input)."""
    wanted = sum(e <= end for e in _stanza_ends())
    for cut in range(len(HEADER), end):
        events = _feed([DATA[:cut], DATA[cut:end]])
        assert sum(e[0] == "stanza" for e in events) == wanted, f"cut at {cut}, end {end}"
        assert events == WHOLE[: 1 + wanted]


class _HoldingExpat:
    """An expat parser that keeps back the last byte of every feed until the next one:
    what reparse deferral does to a token completed by a small read."""

    def __init__(self, real: Any) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_held", b"")

    def Parse(self, data: bytes, final: bool = False) -> int:
        data = self._held + data
        if final:
            object.__setattr__(self, "_held", b"")
            return self._real.Parse(data, True)
        object.__setattr__(self, "_held", data[-1:])
        return self._real.Parse(data[:-1], False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)


def test_the_checks_catch_a_parser_that_holds_bytes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_new = parser_module._new_expat
    monkeypatch.setattr(parser_module, "_new_expat", lambda: _HoldingExpat(real_new()))
    counts = _stanzas_seen_after_each_byte()
    assert counts != _expected_counts()


@pytest.mark.skipif(
    not hasattr(pyexpat.ParserCreate(), "GetReparseDeferralEnabled"),
    reason=f"{pyexpat.EXPAT_VERSION} has no reparse deferral",
)
def test_reparse_deferral_is_off_where_expat_has_it() -> None:
    assert parser_module._new_expat().GetReparseDeferralEnabled() is False
