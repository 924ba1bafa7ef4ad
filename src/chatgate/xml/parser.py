"""Incremental XMPP stream parser: bytes in, stream events out (RFC 6120 §4 and §11).

Owns: turning the bytes of one XML stream into `StreamOpened`, `Stanza` and `StreamClosed`
events; enforcing restricted XML (§11.1), UTF-8 (§11.6), the stanza size and depth limits;
mapping every refusal to its RFC 6120 §4.9.3 stream error condition.  Name limits and
the shared caches of checked names are `names.py`'s; the self-contained messages of
RFC 7395 WebSocket framing and stored XML are parsed by `framed.py`, on top of this
parser (through `failure`, `fail`, `stray_text` and `ends_outside_elements`).
Must not: do I/O, await, read the clock, log per stanza, or know what a stanza means
(the negotiation core and the router do).

Theory of operation
-------------------
One expat push parser per stream (a stream restart, §4.3.3, calls `reset()` and gets a
fresh one), with namespace processing.  Expat reports qualified names as
"uri<SEP>local"; SEP is U+0001 because XML 1.0 §2.2 forbids that character anywhere in
a document, so the split is unambiguous whatever a peer puts in a namespace URI (with
" " as separator a namespace name containing a space would be ambiguous); `names.py`
splits, checks and caches them.  `buffer_text`
lets pyexpat merge text in C (one call for a body with entities and newlines); the parser
still joins the pieces that arrive in different `feed()` calls, once per text node, so a
tree never depends on how the bytes were split.

    depth 0      <stream:stream ...>        -> StreamOpened (on its start tag)
    depth 1        <message>...</message>   -> Stanza (on its end tag); whitespace -> nothing
    depth 2..n       children               -> built into the stanza's Element
    depth 0      </stream:stream>           -> StreamClosed

Handlers are closures over a few locals (the element stack, the events list) because
that is the cheapest state access CPython offers; elements below depth 1 cost one name
lookup in a shared cache, one `Element` and two list appends.  Measured (CPython 3.11,
expat 2.5, `tests/unit/xml/_bench.py`): a typical chat message costs ~2.7 us fed 50 to a
chunk, of which expat itself is ~0.5 us and calling five Python handlers ~0.8 us.
`ordered_attributes` would save expat a dict but cost us a dict(zip()); a DefaultHandler
is not needed (the DOCTYPE is refused before any entity could be declared) and expat's
own checks of external DTDs are moot for the same reason.

Refusals.  A handler that refuses raises `PeerProtocolError`; pyexpat stops calling
handlers and `Parse()` re-raises it, after tokenizing (not acting on) the rest of that
slice.  The parser then stays failed: every later `feed()` raises the same condition.
Events completed earlier in the failing call ride on the exception
(`StreamParseError.events`), so a session may still process stanzas that were fine.

- §11.1 prohibits comments, processing instructions, internal or external DTD subsets,
  and internal or external entity references other than the predefined entities; a
  receiver MUST close the stream, with <restricted-xml/> (§4.9.3.18) as the SHOULD.  A
  DOCTYPE is refused by its start handler.  Until the stream header has been seen the
  input is handed to expat one '>'-terminated piece at a time, so nothing after the
  refused declaration is even tokenized: a billion-laughs or quadratic-blowup document
  costs one small declaration.  Entities can only be declared in a DTD, so with the DTD
  refused every `&name;` other than the five predefined ones is undeclared; expat calls
  that a well-formedness error, but §4.9.3.18 names entity references under
  <restricted-xml/> and §11.1 prohibits them, so UNDEFINED_ENTITY maps to RESTRICTED_XML,
  the more specific condition.
- §11.6: UTF-8 is the only encoding; a peer that sends anything else MUST get a stream
  error, <unsupported-encoding/> (§4.9.3.22) as the SHOULD.  Expat is told the encoding
  is UTF-8 (so a BOM or declaration cannot switch it); a declaration naming anything
  else, or bytes that are not UTF-8, are refused with UNSUPPORTED_ENCODING.  Bytes are
  checked with CPython's UTF-8 decoder (skipped for pure-ASCII input); expat sees exactly
  the bytes it would have seen had they come one at a time, so the earliest error wins
  however the input was split.  Also §11.6: a U+FEFF, even as the first character, is a
  zero-width no-break space, never a byte order mark: text before the stream header,
  NOT_WELL_FORMED.
- §4.9.3.2 <bad-namespace-prefix/>: an unbound prefix (expat's UNBOUND_PREFIX).
- Everything else expat rejects is §4.9.3.13 <not-well-formed/>: text before the header,
  a misplaced XML declaration, mismatched tags, junk after the closing tag...  Whitespace
  around the header is XML (1.0 §2.8 `Misc`) and many clients send a newline after the
  declaration, so it is accepted.  Non-whitespace text directly inside the stream
  element is well-formed but cannot be processed: §4.9.3.1 <bad-format/>.

Limits (§4.9.3.14 <policy-violation/>, and RFC 6120 §13.12 on resource exhaustion):
- A stanza's size is counted from the '<' of its start tag to the '<' of its end tag (to
  the end of the tag for an empty-element stanza).  After every slice of input (at most
  64 KiB) the bytes expat has consumed since the stanza started are compared with the
  limit, so an over-sized stanza is refused while it arrives and at most
  `max_stanza_bytes` + one slice of it is ever held.
- Expat buffers an unfinished token (a start tag, say) whole; more than
  `max_stanza_bytes` of one pending token is refused too.  A start tag that long makes
  its stanza too long anyway, so the verdict is the same however the bytes were split.
- Limits are checked between slices, errors inside expat as they happen, so for input
  that is *both* over a limit and malformed further on, which of the two conditions is
  reported can depend on splitting (the events never do; the stream closes either way).
  The same holds for two absurd inputs: an end tag padded with more than
  `max_stanza_bytes` of whitespace (refused only when it arrives in pieces), and a
  comment or PI that long (POLICY_VIOLATION in pieces, RESTRICTED_XML in one piece).
- The prolog (XML declaration, whitespace, stream header) counts like a stanza; it is
  fed in '>'-terminated pieces capped at the limit, so this check is exact.
- An element deeper than `max_depth` (the stream element is depth 0, stanzas depth 1).
- More than `max_nodes` elements and attributes in one stanza (default: one per 16
  bytes of `max_stanza_bytes`, at least 64; 16,384 for 256 KiB).  A tree costs ~190
  bytes an element and ~130 an attribute, so a stanza of `<a/>` once built a tree 50
  times its size, held for as long as its end tag was awaited; now at most ~12 times.
  Real stanzas spend 30 bytes or more a node, so the budget only meets such floods.
- A namespace name over `MAX_NAMESPACE_BYTES` (1,024) or an element, attribute or
  prefix name over `MAX_NAME_BYTES` (256), in UTF-8 bytes; more than
  `MAX_HEADER_DECLARATIONS` (16) namespace declarations on the stream header (see
  `names.py`).

Memory (RFC 6120 §13.12; issue 9 item 6).  Besides one stanza (bounded above), a
parser and the process keep:
- `names.NAMES` and `names.ATTR_NAMES`, the shared caches of checked names: 2 MiB
  and 256 KiB at most (see `names.py`).
- expat's own tables: it keeps every element, attribute and prefix name it has met for
  the life of the parser (~7 bytes per byte of new names), and pyexpat interned them
  all again in a dict (~15 in all).  Interning is off (`intern=None`: the name cache
  does that job, bounded), and the expat parser is *recycled*: once `recycle_bytes`
  (default: `max_stanza_bytes`, at least 64 KiB) have been fed to it, the next slice
  that completes a stanza has it replaced, right after the last stanza completed in
  that slice, by a fresh one primed with the stream header (as waking from
  hibernation does); the bytes after that stanza are fed again, to the new parser.
  A parser's tables thus grow by at most ~7 times (`recycle_bytes` +
  `max_stanza_bytes` + one slice), however long the stream lives.  Costs ~15 us per
  recycling, ~0.01 us a stanza.  Expat >= 2.6's reparse deferral is turned off: it
  would report a stanza in a later `Parse` call than the one that completed it.
- Text of the open element is joined every 256 pieces and is bounded by the stanza's
  size; header namespace declarations by the limits above.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias
from xml.parsers import expat

from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.vocabulary.errors import StreamErrorCondition as Cond
from chatgate.xml.element import Element
from chatgate.xml.names import (
    MAX_HEADER_DECLARATIONS,
    NAMES,
    PLAIN_ATTRS,
    SEP,
    SHORT_NAME,
    SHORT_NAMESPACE,
    check_attrs,
    check_name,
    split_name,
)
from chatgate.xml.serialize import escape_attr

# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header (RFC 6120 §4.7), reported on its start tag.

    `attrs` holds to/from/id/version and "{http://www.w3.org/XML/1998/namespace}lang";
    `default_ns` is the content namespace (§4.8.2) declared with xmlns, None when absent;
    `prefixes` maps each prefix declared on the header to its namespace (normally
    {"stream": "http://etherx.jabber.org/streams"}, §4.8.1).
    """

    name: str
    ns: str
    attrs: dict[str, str]
    default_ns: str | None
    prefixes: dict[str, str]


@dataclass(frozen=True, slots=True)
class Stanza:
    """One complete depth-1 element: a stanza or a negotiation element (RFC 6120 §4.1)."""

    element: Element


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer's closing stream tag (RFC 6120 §4.4)."""


StreamEvent: TypeAlias = StreamOpened | Stanza | StreamClosed


class StreamParseError(PeerProtocolError):
    """The peer sent XML we refuse; `condition` is the RFC 6120 §4.9.3 stream error.

    `events` are the events completed before the error within the failing `feed()` call
    (empty on later calls): input that was fine stays usable.
    """

    def __init__(
        self, condition: Cond, text: str = "", events: list[StreamEvent] | None = None
    ) -> None:
        super().__init__(condition, text)
        self.events: list[StreamEvent] = events if events is not None else []


# ---------------------------------------------------------------------------- internals

_SLICE = 65536
_UTF8_BOM = b"\xef\xbb\xbf"
_XML_WHITESPACE = " \t\r\n"
_XML_WHITESPACE_BYTES = b" \t\r\n"
_utf8_decode = codecs.utf_8_decode
_new_stanza = object.__new__
_set_stanza_element = Stanza.__dict__["element"].__set__  # see _make_handlers

#: Default node budget: one element or attribute per this many bytes of stanza limit.
NODE_BYTES: Final = 16

_E = expat.errors
_RESTRICTED_CODES = frozenset(
    _E.codes[message]
    for message in (
        _E.XML_ERROR_UNDEFINED_ENTITY,
        _E.XML_ERROR_RECURSIVE_ENTITY_REF,
        _E.XML_ERROR_BINARY_ENTITY_REF,
        _E.XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF,
        _E.XML_ERROR_EXTERNAL_ENTITY_HANDLING,
        _E.XML_ERROR_PARAM_ENTITY_REF,
        _E.XML_ERROR_ENTITY_DECLARED_IN_PE,
        _E.XML_ERROR_NOT_STANDALONE,
        _E.XML_ERROR_AMPLIFICATION_LIMIT_BREACH,
    )
)
_ENCODING_CODES = frozenset(
    _E.codes[message]
    for message in (_E.XML_ERROR_UNKNOWN_ENCODING, _E.XML_ERROR_INCORRECT_ENCODING)
)
_UNBOUND_PREFIX = _E.codes[_E.XML_ERROR_UNBOUND_PREFIX]


def _refuse(condition: Cond, text: str) -> PeerProtocolError:
    return PeerProtocolError(condition, text)


#: Stands for "no parser" (hibernating or closed): a real, never-fed parser object,
#: so that `_expat` keeps one type and the live paths need no None checks.
_NO_EXPAT: Final = expat.ParserCreate()


_HAS_DEFERRAL: Final = hasattr(_NO_EXPAT, "SetReparseDeferralEnabled")


def _new_expat() -> expat.XMLParserType:
    """An expat parser as every stream uses it: UTF-8, namespaces, no interning (pyexpat
    would keep every name it reports in a dict for the parser's life), and no reparse
    deferral (expat >= 2.6 may hold a complete token back until more bytes arrive)."""
    parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=SEP, intern=None)
    if _HAS_DEFERRAL:
        parser.SetReparseDeferralEnabled(False)
    return parser


def _expat_error(exc: expat.ExpatError) -> PeerProtocolError:
    code = exc.code
    text = expat.ErrorString(code) or "not well-formed"
    if code in _RESTRICTED_CODES:
        return _refuse(Cond.RESTRICTED_XML, f"entity references are not allowed ({text})")
    if code == _UNBOUND_PREFIX:
        return _refuse(Cond.BAD_NAMESPACE_PREFIX, text)
    if code in _ENCODING_CODES:
        return _refuse(Cond.UNSUPPORTED_ENCODING, text)
    return _refuse(Cond.NOT_WELL_FORMED, text)


# States of the stream element.
_BEFORE, _OPEN, _CLOSED = 0, 1, 2


class XmlStreamParser:
    """Push parser for one XMPP stream: `feed(bytes) -> list[StreamEvent]`.

    Events come out identical however the input is split.  `feed()` raises
    `StreamParseError` (a `PeerProtocolError`) with the RFC 6120 condition when the peer
    breaks the XML rules or a limit; see the module docstring for the full mapping.
    `max_stanza_bytes` and `max_depth` must be positive (else `ValueError`);
    `max_nodes` (elements and attributes per stanza) and `recycle_bytes` (bytes fed
    to one expat parser before it is replaced) default from `max_stanza_bytes`.
    """

    __slots__ = (
        "_boundary",
        "_events",
        "_expat",
        "_failure",
        "_fed",
        "_head",
        "_last_end",
        "_recycle_at",
        "_reopen",
        "_replaying",
        "_stack",
        "_stanza_ended",
        "_stanza_start",
        "_state",
        "_stray_text",
        "_utf8_tail",
        "max_depth",
        "max_nodes",
        "max_stanza_bytes",
        "recycle_bytes",
    )

    def __init__(
        self,
        *,
        max_stanza_bytes: int = 262144,
        max_depth: int = 64,
        max_nodes: int | None = None,
        recycle_bytes: int | None = None,
    ) -> None:
        if max_stanza_bytes < 1 or max_depth < 1:
            raise ValueError("max_stanza_bytes and max_depth must be positive")
        if max_nodes is None:
            max_nodes = max(64, max_stanza_bytes // NODE_BYTES)
        if recycle_bytes is None:
            recycle_bytes = max(max_stanza_bytes, _SLICE)
        if max_nodes < 1 or recycle_bytes < 1:
            raise ValueError("max_nodes and recycle_bytes must be positive")
        self.max_stanza_bytes = max_stanza_bytes
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.recycle_bytes = recycle_bytes
        self.reset()

    def reset(self) -> None:
        """Forget everything and expect a new stream header (RFC 6120 §4.3.3 restart).

        Also clears a failure: the next stream is judged on its own.
        """
        old = getattr(self, "_expat", _NO_EXPAT)
        if old is not _NO_EXPAT:
            _release_expat(old)
        self._expat = _new_expat()  # _NO_EXPAT while hibernating or after close()
        self._events: list[StreamEvent] = []
        self._stack: list[Element] = []
        self._state = _BEFORE
        self._stanza_start = 0
        self._fed = 0  # bytes handed to expat so far
        self._utf8_tail = b""  # an unfinished UTF-8 sequence at the end of the last feed
        self._head: bytes | None = b""  # the first bytes, until we know they are no BOM
        self._stray_text = False  # non-whitespace text between stanzas, refused at the next tag
        self._failure: tuple[Cond, str] | None = None
        self._reopen = b""  # a header re-declaring the stream's namespaces (hibernation)
        self._replaying = False
        self._stanza_ended = False  # a top-level stanza ended during the current feed
        self._boundary = False  # everything fed so far ends at a stanza boundary
        self._last_end = 0  # byte index where the last top-level end tag began
        self._recycle_at = self.recycle_bytes  # replace expat once _fed gets there
        _make_handlers(self)

    @property
    def is_open(self) -> bool:
        """The stream header has been received and the closing tag has not."""
        return self._state == _OPEN

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Parse the next bytes of the stream; return the events they complete, in order.

        Raises `StreamParseError` when the input is refused, and again on every later
        call (with the same condition and no events) until `reset()`.
        """
        if self._failure is not None:
            raise StreamParseError(*self._failure)
        if self._state == _CLOSED:
            # After the stream's end tag only whitespace may follow (XML 1.0 §2.1).
            # Checked here, not left to expat, which reports trailing junk only once
            # it sees a whole token: split input would otherwise go unnoticed.
            if data.strip(_XML_WHITESPACE_BYTES):
                raise self.fail(Cond.NOT_WELL_FORMED, "junk after document element")
            return []
        if self._expat is _NO_EXPAT:
            if not data.strip(_XML_WHITESPACE_BYTES):
                return []  # a keepalive does not wake a hibernated parser
            self._resume()
        events = self._events
        try:
            if self._head is not None:
                data = self._check_bom(data)
            # RFC 6120 §11.6: UTF-8 only.  Validate before expat sees the bytes.
            bad = -1
            tail = self._utf8_tail
            if tail or not data.isascii():
                buf = tail + data if tail else data
                try:
                    _, used = _utf8_decode(buf, "strict", False)
                    self._utf8_tail = buf[used:]
                except UnicodeDecodeError as exc:
                    # Expat gets the bytes it would have got had the input arrived one
                    # byte at a time: up to the invalid byte, including the lead bytes
                    # of a sequence that only the invalid byte broke.
                    bad = exc.start
                    try:
                        _utf8_decode(buf[bad : exc.end], "strict", False)
                        bad = exc.end
                    except UnicodeDecodeError:
                        pass
                    bad = max(0, bad - len(tail))
                    data = data[:bad]
            if self._state == _BEFORE:
                data = self._feed_prolog(data)
            if data:
                if len(data) <= _SLICE:
                    self._parse(data)
                else:
                    for start in range(0, len(data), _SLICE):
                        self._parse(data[start : start + _SLICE])
                self._note_boundary(data)
                if self._state == _CLOSED:
                    self._check_trailer(data)
            if bad >= 0:
                if self._state == _CLOSED:
                    # The bad byte follows the end tag: junk, as it is when fed alone.
                    raise _refuse(Cond.NOT_WELL_FORMED, "junk after document element")
                raise _refuse(Cond.UNSUPPORTED_ENCODING, "the stream must be UTF-8")
        except PeerProtocolError as exc:
            done = events[:]
            events.clear()
            if self._state == _CLOSED and exc.condition is Cond.RESTRICTED_XML:
                # A comment or PI after the end tag is junk, whether expat saw it in
                # the bytes that closed the stream or (fed later) the check above did.
                raise self.fail(Cond.NOT_WELL_FORMED, "junk after document element", done) from None
            raise self.fail(exc.condition, exc.text, done) from None
        if not events:
            return []
        done = events[:]
        events.clear()
        return done

    def hibernate(self) -> bool:
        """Free the expat parser if the input so far ends exactly between stanzas.

        An idle client connection spends nearly all its life between stanzas, and
        an expat parser with its buffers is most of what the connection costs in
        memory.  The next `feed()` with more than whitespace creates a new parser
        and replays a header declaring the same namespaces, so the events are the
        same as if nothing had happened.  Returns True when the parser was freed.
        """
        if (
            self._expat is _NO_EXPAT
            or self._state != _OPEN
            or not self._boundary
            or self._stack
            or self._stray_text
            or self._utf8_tail
            or self._failure is not None
        ):
            return self._expat is _NO_EXPAT
        _release_expat(self._expat)
        self._expat = _NO_EXPAT
        return True

    def close(self) -> None:
        """Free the expat parser now (the stream is over or restarts with a new parser)."""
        if self._expat is not _NO_EXPAT:
            _release_expat(self._expat)
            self._expat = _NO_EXPAT

    @property
    def hibernating(self) -> bool:
        return self._expat is _NO_EXPAT

    def _resume(self) -> None:
        self._expat = _new_expat()
        self._state = _BEFORE
        self._replaying = True
        _make_handlers(self)
        try:
            self._expat.Parse(self._reopen, False)
        finally:
            self._replaying = False
        self._fed = len(self._reopen)
        self._last_end = 0
        self._recycle_at = self._fed + self.recycle_bytes

    def _note_boundary(self, data: bytes) -> None:
        """Record whether the input ends right after a top-level stanza (or whitespace).

        Whether expat still holds an unfinished token cannot be asked of it, so this
        looks at the bytes: after the last stanza's closing tag there may be only
        whitespace.  An end tag has no attributes, so its first '>' ends it; anything
        unfinished after it (even "<pre" of a next stanza) keeps the parser awake.
        """
        if self._stack or self._state != _OPEN:
            self._boundary = False
            return
        if self._stanza_ended:
            self._stanza_ended = False
            start = self._last_end - (self._fed - len(data))
            if start >= 0 and data[start : start + 1] != b"<":
                # An empty-element tag: expat reports its end just past the "/>".
                rest = data[start:]
            else:
                # An end tag: expat reports where its "<" is (maybe in an earlier feed).
                gt = data.find(b">", max(0, start))
                rest = data[gt + 1 :] if gt >= 0 else b"<"
            self._boundary = not rest.strip(_XML_WHITESPACE_BYTES)
        elif data.strip(_XML_WHITESPACE_BYTES):
            self._boundary = False
        # whitespace only: the boundary is what it was

    def _check_trailer(self, data: bytes) -> None:
        """Only whitespace may follow the stream's end tag in the bytes that closed it."""
        start = self._last_end - (self._fed - len(data))
        gt = data.find(b">", max(0, start))
        if gt >= 0 and data[gt + 1 :].strip(_XML_WHITESPACE_BYTES):
            raise _refuse(Cond.NOT_WELL_FORMED, "junk after document element")

    # ------------------------------------------------------------ for layers on top
    # What a parser built on this one (`framed.py`: one element per message) needs to
    # judge a message, so that it never reads the fields below.

    @property
    def failure(self) -> tuple[Cond, str] | None:
        """The refusal (condition, text) every `feed()` raises until `reset()`; None
        while the stream is fine."""
        return self._failure

    def fail(
        self, condition: Cond, text: str, events: list[StreamEvent] | None = None
    ) -> StreamParseError:
        """Enter the failed state (every later `feed()` raises `condition`); return
        the exception to raise.  For a layer that refuses input by its own rules."""
        self._failure = (condition, text)
        return StreamParseError(condition, text, events)

    @property
    def stray_text(self) -> bool:
        """Non-whitespace text was fed outside any stanza and has not been refused yet
        (it is, with BAD_FORMAT, at the next tag)."""
        return self._stray_text

    def ends_outside_elements(self, data: bytes) -> bool:
        """Whether the input so far ends outside every stanza: no element open, no
        unfinished UTF-8 sequence, and whatever expat still holds back of `data` (the
        bytes last fed) is whitespace (it may keep a CR, waiting for an LF)."""
        if self._stack or self._utf8_tail:
            return False
        pending = self._fed - self._expat.CurrentByteIndex
        return not (pending and data[-pending:].strip(_XML_WHITESPACE_BYTES))

    # ------------------------------------------------------------ internals

    def _parse(self, data: bytes) -> None:
        """Hand one slice to expat, then apply the size limits to what is still open,
        and recycle expat when it is due (see the module docstring)."""
        base = self._fed
        self._fed = base + len(data)
        last_end = self._last_end
        try:
            self._expat.Parse(data, False)
        except expat.ExpatError as exc:
            if self._state == _CLOSED:
                # Whatever expat calls it, anything after the stream's end is the same
                # fault; one text for it keeps the verdict independent of splitting.
                raise _refuse(Cond.NOT_WELL_FORMED, "junk after document element") from None
            raise _expat_error(exc) from None
        limit = self.max_stanza_bytes
        if self._state == _BEFORE:
            if self._fed > limit:
                raise _refuse(Cond.POLICY_VIOLATION, f"stream header over {limit} bytes")
            return
        consumed = self._expat.CurrentByteIndex
        # An unfinished token (a start tag, say) cannot be longer than a whole stanza.
        if self._fed - consumed > limit or (self._stack and consumed - self._stanza_start > limit):
            raise _refuse(Cond.POLICY_VIOLATION, f"stanza over {limit} bytes")
        if self._fed >= self._recycle_at and self._last_end != last_end and self._state == _OPEN:
            self._recycle(data, base)

    def _recycle(self, data: bytes, base: int) -> None:
        """Replace expat right after the last stanza completed in `data` (a slice whose
        first byte is at index `base`), and feed the new parser the bytes after it.

        The events up to that stanza are out; the partial tree after it is dropped
        and rebuilt from the same bytes, so nothing changes but expat's memory.  Where
        the stanza ended is found from `_last_end`: expat reports an end tag at its
        "<", an empty-element tag just past its "/>".  With reparse deferral off, the
        token that completed the stanza ends in `data`; anything else (it never
        happens) skips recycling until a later slice.
        """
        pos = self._last_end - base
        if pos < 0:
            # An end tag that began in an earlier slice: the first ">" here closes it.
            gt = data.find(b">")
            if gt < 0 or b"<" in data[:gt]:
                return
            cut = gt + 1
        elif data.startswith(b"</", pos):
            # An end tag (or, after an empty-element stanza, the stream's own end tag,
            # which would have closed the stream: not the case here).
            gt = data.find(b">", pos)
            if gt < 0:
                return
            cut = gt + 1
        elif (pos >= 2 and data.startswith(b"/>", pos - 2)) or (pos == 1 and data[:1] == b">"):
            cut = pos  # just past an empty-element stanza's "/>" (its ">" may be data[0])
        else:
            return
        # Indices of the new parser are the old ones shifted: its byte len(_reopen) is
        # data[cut].  `_last_end` moves along, so `_note_boundary` still finds the end.
        shift = len(self._reopen) - (base + cut)
        last_end = self._last_end + shift
        self._stack.clear()
        self._stray_text = False
        _release_expat(self._expat)
        self._resume()
        self._last_end = last_end
        if cut < len(data):
            self._parse(data[cut:])

    def _feed_prolog(self, data: bytes) -> bytes:
        """Before the stream header: feed one '>'-terminated piece at a time.

        A refused declaration (DOCTYPE, comment, PI) stops the parser before the bytes
        after it reach expat.  The prolog (XML declaration, whitespace, header) counts
        against `max_stanza_bytes`, and no piece goes past the byte that would exceed
        it, so expat sees the same bytes however the input was split.  Returns what is
        left once the header has been seen; the header's piece ends with its '>'.
        """
        limit = self.max_stanza_bytes
        while data and self._state == _BEFORE:
            end = data.find(b">") + 1
            if end == 0:
                end = len(data)
            end = min(end, limit + 1 - self._fed)
            self._parse(data[:end])
            data = data[end:]
        return data

    def _check_bom(self, data: bytes) -> bytes:
        # RFC 6120 §11.6: a leading U+FEFF is a zero-width no-break space, i.e. text
        # before the stream header, which XML does not allow.
        head = (self._head or b"") + data[:3]
        if len(head) >= 3 or not _UTF8_BOM.startswith(head):
            self._head = None  # checked once per stream
            if head.startswith(_UTF8_BOM):
                raise _refuse(Cond.NOT_WELL_FORMED, "U+FEFF before the stream header")
        else:
            self._head = head
        return data


def _reopening_header(
    local: str, ns: str, default_ns: str | None, prefixes: dict[str, str]
) -> bytes:
    """The stream's start tag with the peer's qualified name and namespace declarations,
    to prime a fresh parser: the peer's `</stream:stream>` must match it."""
    qname = local
    if ns and ns != default_ns:
        prefix = next((p for p, uri in prefixes.items() if uri == ns), None)
        if prefix:
            qname = f"{prefix}:{local}"
    decls = [f' xmlns="{escape_attr(default_ns)}"'] if default_ns else []
    decls.extend(f' xmlns:{prefix}="{escape_attr(uri)}"' for prefix, uri in prefixes.items())
    return f"<{qname}{''.join(decls)}>".encode()


def _release_expat(parser: expat.XMLParserType) -> None:
    """Break the parser <-> handler-closure cycle so the parser is freed at once.

    The element and text handlers close over the parser (and over the
    `XmlStreamParser` that holds it), and the parser holds the handlers: dropped as
    is, a parser (with its buffers) waits for the cyclic garbage collector, which
    an idle server may not run for a long time.  Freed by reference counting
    instead, a hibernated parser's memory is really free, and a stream restart
    leaves no garbage.  The other handlers reach neither (`declare` closes over its
    own small state only, the rest are module functions), so they stay: three
    attribute stores per parser instead of nine."""
    parser.StartElementHandler = None
    parser.EndElementHandler = None
    parser.CharacterDataHandler = None


def _restricted(what: str) -> Callable[..., None]:
    """A handler refusing one kind of restricted XML (RFC 6120 §11.1).  Built once per
    kind at import: a parser is created at every stream start and restart."""

    def refuse(*_args: object) -> None:
        raise _refuse(Cond.RESTRICTED_XML, f"{what} are not allowed (RFC 6120 §11.1)")

    return refuse


def _xml_decl(version: str, encoding: str | None, standalone: int) -> None:
    """RFC 6120 §11.6: UTF-8 only (the XML declaration may name no other encoding)."""
    if encoding is not None and encoding.upper() != "UTF-8":
        raise _refuse(Cond.UNSUPPORTED_ENCODING, f"encoding {encoding!r}: only UTF-8")


_REFUSE_DTD = _restricted("DTDs")
_REFUSE_ENTITY_DECL = _restricted("entity declarations")
_REFUSE_COMMENT = _restricted("comments")
_REFUSE_PI = _restricted("processing instructions")


def _make_handlers(p: XmlStreamParser) -> None:
    """Install the expat handlers for `p`'s current parser (called by `reset()`)."""
    parser = p._expat
    stack = p._stack
    emit = p._events.append
    names = NAMES.mapping
    max_depth = p.max_depth
    max_bytes = p.max_stanza_bytes
    max_nodes = p.max_nodes
    short_name = SHORT_NAME
    plain_attrs = PLAIN_ATTRS
    new_element = Element
    prefixes: dict[str, str] = {}
    default_ns: list[str | None] = [None]
    declared = [0]
    budget = 0  # elements and attributes the open stanza may still have
    # Text of the innermost open element since its last child tag, in pieces; joined once
    # at the next tag.  (`+=` per piece would be quadratic for a text node
    # that a peer trickles in one byte per read.)
    run: list[str] = []

    def start(qname: str, attrs: dict[str, str]) -> None:
        nonlocal budget
        try:
            ns, local = names[qname]
        except KeyError:
            ns, local = split_name(qname)
        if attrs:
            budget -= len(attrs)
            # Names in PLAIN_ATTRS are known short and unnamespaced: one set test
            # instead of two tests per attribute.
            if not attrs.keys() <= plain_attrs:
                for key in attrs:
                    if SEP in key or len(key) > short_name:
                        attrs = check_attrs(attrs)
                        break
        if stack:
            budget -= 1
            if budget < 0:
                raise _refuse(Cond.POLICY_VIOLATION, f"stanza over {max_nodes} nodes")
            if len(stack) >= max_depth:
                raise _refuse(Cond.POLICY_VIOLATION, f"elements nested over {max_depth} deep")
            children = stack[-1].children
            if run:
                children.append(run[0] if len(run) == 1 else "".join(run))
                run.clear()
            el = new_element(local, ns, attrs, [])
            children.append(el)
            stack.append(el)
        elif p._state == _OPEN:
            if p._stray_text:
                raise _refuse(Cond.BAD_FORMAT, "text is not allowed between stanzas")
            budget = max_nodes - 1 - len(attrs)
            if budget < 0:
                raise _refuse(Cond.POLICY_VIOLATION, f"stanza over {max_nodes} nodes")
            p._stanza_start = parser.CurrentByteIndex
            stack.append(new_element(local, ns, attrs, []))
        else:
            # The stream header (RFC 6120 §4.7).  Its namespace declarations were
            # collected by `declare`, which is not needed any more.  The piece being
            # parsed ends with the header's '>' (see _feed_prolog), so _fed is its end.
            parser.StartNamespaceDeclHandler = None
            p._state = _OPEN
            if p._replaying:
                return  # a hibernated parser woke up: the peer's header was seen long ago
            if p._fed > max_bytes:
                raise _refuse(Cond.POLICY_VIOLATION, f"stream header over {max_bytes} bytes")
            p._reopen = _reopening_header(local, ns, default_ns[0], prefixes)
            p._boundary = True
            emit(StreamOpened(local, ns, attrs, default_ns[0], prefixes))

    def end(qname: str) -> None:
        if stack:
            el = stack.pop()
            if run:
                el.children.append(run[0] if len(run) == 1 else "".join(run))
                run.clear()
            if stack:
                return
            end_at = parser.CurrentByteIndex
            if end_at - p._stanza_start > max_bytes:
                raise _refuse(Cond.POLICY_VIOLATION, f"stanza over {max_bytes} bytes")
            p._last_end = end_at
            p._stanza_ended = True
            # A frozen dataclass's __init__ goes through object.__setattr__; setting the
            # slot directly does the same in half the time, once per stanza.
            event = _new_stanza(Stanza)
            _set_stanza_element(event, el)
            emit(event)
        else:
            if p._stray_text:
                raise _refuse(Cond.BAD_FORMAT, "text is not allowed between stanzas")
            p._state = _CLOSED
            p._last_end = parser.CurrentByteIndex
            emit(StreamClosed())

    def text(data: str) -> None:
        if stack:
            run.append(data)
            if len(run) > 256:
                run[:] = ["".join(run)]
        elif data.strip(_XML_WHITESPACE):
            # Whitespace between stanzas is a keepalive (RFC 6120 §4.6.1); text is not.
            # Refused at the next tag, not here: pyexpat hands text over only when
            # something follows it, so raising here would make an error later in the
            # same input win or lose depending on how the bytes were split.
            p._stray_text = True

    def declare(prefix: str | None, uri: str | None) -> None:
        # Only the stream header's declarations come here (see `start`).
        declared[0] += 1
        if declared[0] > MAX_HEADER_DECLARATIONS:
            raise _refuse(
                Cond.POLICY_VIOLATION,
                f"over {MAX_HEADER_DECLARATIONS} namespace declarations on the stream header",
            )
        # `check_name` only when a length could be over its limit (names.SHORT_*).
        if uri:
            if len(uri) > SHORT_NAMESPACE or (prefix is not None and len(prefix) > short_name):
                check_name(uri, prefix or "", "declared")
        elif prefix and len(prefix) > short_name:
            check_name("", prefix, "declared")
        if prefix is None:
            default_ns[0] = uri or None
        else:
            prefixes[prefix] = uri or ""

    parser.buffer_text = True
    parser.buffer_size = 65536
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartNamespaceDeclHandler = declare
    parser.XmlDeclHandler = _xml_decl
    parser.StartDoctypeDeclHandler = _REFUSE_DTD
    parser.EntityDeclHandler = _REFUSE_ENTITY_DECL
    parser.CommentHandler = _REFUSE_COMMENT
    parser.ProcessingInstructionHandler = _REFUSE_PI
