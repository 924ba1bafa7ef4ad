"""Names a peer may use in XML: length limits, their checks, and the caches of checked names.

Owns: how long a namespace, element, attribute or prefix name may be; turning
expat's qualified names ("uri<SEP>local") into checked (namespace, local name)
pairs and Clark names ("{uri}local"); the two process-wide caches of names
already checked.  Used by `parser.py`'s handlers, on the hot path.
Must not: do I/O, read the clock, log, or know what a stanza means.

Limits (RFC 6120 §4.9.3.14 <policy-violation/>, and §13.12 on resource
exhaustion).  A namespace name over `MAX_NAMESPACE_BYTES` (1,024) or an element,
attribute or prefix name over `MAX_NAME_BYTES` (256), in UTF-8 bytes, on
anything that reaches an element or attribute; more than
`MAX_HEADER_DECLARATIONS` (16) namespace declarations on the stream header.
Registered XMPP namespaces are under 60 bytes and names under 40, so the
limits are generous; they keep the shared caches' entries small and the header
kept for hibernation short.  A long name is well-formed XML, and §11.1 does not
restrict names, so the condition is not <not-well-formed/> (§4.9.3.13) or
<restricted-xml/> (§4.9.3.18) but the local policy one, <policy-violation/>.

The caches (issue 9 item 6).  `NAMES` maps expat's qualified element names to
(namespace, local name): an `LruCache` of at most 4,096 entries and 2 MiB (a hot
name costs ~400 bytes; 2 MiB is ~5,000 typical names).  A peer inventing names
only causes misses; names over the limits above are refused before they are
cached.  `ATTR_NAMES` does the same for namespaced attribute names (xml:lang,
mostly): 1,024 entries, 256 KiB.  The parser's handlers read `NAMES.mapping`
directly (a dict look-up, no recency refresh: see `chatgate.lru`).

SEP, the separator expat is told to put between a namespace and a local name,
is U+0001: XML 1.0 §2.2 forbids that character anywhere in a document, so the
split is unambiguous whatever a peer puts in a namespace URI.
"""

from __future__ import annotations

from typing import Final

from chatgate.lru import LruCache, weigh_strings
from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.vocabulary.errors import StreamErrorCondition as Cond

__all__ = [
    "ATTR_NAMES",
    "MAX_HEADER_DECLARATIONS",
    "MAX_NAMESPACE_BYTES",
    "MAX_NAME_BYTES",
    "NAMES",
    "PLAIN_ATTRS",
    "SEP",
    "SHORT_NAME",
    "SHORT_NAMESPACE",
    "check_attrs",
    "check_name",
    "split_name",
]

#: Between namespace and local name in expat's qualified names (see above).
SEP: Final = "\x01"

#: Longest namespace name accepted, in UTF-8 bytes (see the module docstring).
MAX_NAMESPACE_BYTES: Final = 1024
#: Longest element, attribute or prefix name accepted, in UTF-8 bytes.
MAX_NAME_BYTES: Final = 256
#: Namespace declarations accepted on the stream header (the default and `stream:`
#: are two; kept for the connection's life, to replay after hibernation).
MAX_HEADER_DECLARATIONS: Final = 16

#: Qualified name from expat -> (namespace, local name).  Shared by every parser:
#: stanza names repeat across connections.
NAMES: LruCache[str, tuple[str, str]] = LruCache(4096, 2 << 20, weigh_strings)

#: Namespaced attribute name from expat ("uri<SEP>local") -> checked Clark name
#: ("{uri}local").  Nearly always xml:lang, on many stanzas; bounded like `NAMES`.
ATTR_NAMES: LruCache[str, str] = LruCache(1024, 256 << 10, weigh_strings)
_attr_name = ATTR_NAMES.mapping.get

#: Attribute names up to this many characters cannot exceed MAX_NAME_BYTES; longer
#: ones (and namespaced ones) take the slow path, `check_attrs`.
SHORT_NAME: Final = MAX_NAME_BYTES // 4


#: Common unnamespaced attribute names: each is within `SHORT_NAME` and has no `SEP`,
#: so an element whose attribute names are all here needs no check (one set test in
#: the parser instead of two tests per attribute).
PLAIN_ATTRS: Final = frozenset(
    (
        "id", "type", "to", "from", "version", "mechanism", "jid", "node", "name", "var",
        "code", "ver", "hash", "category", "subscription", "ask", "by", "stamp", "seconds",
    )
)  # fmt: skip
assert all(SEP not in name and len(name) <= SHORT_NAME for name in PLAIN_ATTRS)


def _over(text: str, limit: int) -> bool:
    """`text` is longer than `limit` bytes in UTF-8 (exact, and cheap when short)."""
    n = len(text)
    if n > limit:
        return True
    if n * 4 <= limit or text.isascii():
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


#: Namespaces up to this many characters (and names up to `SHORT_NAME`) cannot exceed
#: their byte limits (UTF-8 takes at most 4 bytes a character): `check_name` answers
#: them without encoding or calling anything, and a hot caller may test the lengths
#: itself before calling it.  Every registered XMPP name is this short.
SHORT_NAMESPACE: Final = MAX_NAMESPACE_BYTES // 4


def check_name(ns: str, local: str, what: str) -> None:
    """Refuse (POLICY_VIOLATION) a namespace or name over its limit; `what` names it
    in the error text ("element", "attribute", "declared")."""
    if len(ns) <= SHORT_NAMESPACE and len(local) <= SHORT_NAME:
        return  # the common case, on every stream header and new name: no call
    if _over(ns, MAX_NAMESPACE_BYTES):
        raise PeerProtocolError(
            Cond.POLICY_VIOLATION, f"{what} namespace over {MAX_NAMESPACE_BYTES} bytes"
        )
    if _over(local, MAX_NAME_BYTES):
        raise PeerProtocolError(Cond.POLICY_VIOLATION, f"{what} name over {MAX_NAME_BYTES} bytes")


def split_name(qname: str) -> tuple[str, str]:
    """An element name `NAMES` does not know: check its lengths, then cache it."""
    ns, _, local = qname.rpartition(SEP)
    check_name(ns, local, "element")
    pair = (ns, local)
    NAMES.put(qname, pair)
    return pair


def _clark(key: str) -> str:
    """A namespaced attribute name the cache does not know: check it, then cache it."""
    ns, _, local = key.rpartition(SEP)
    check_name(ns, local, "attribute")
    clark = f"{{{ns}}}{local}"
    ATTR_NAMES.put(key, clark)
    return clark


def check_attrs(attrs: dict[str, str]) -> dict[str, str]:
    """Check attribute name lengths; rekey namespaced attributes "uri<SEP>local" as
    "{uri}local".  Rare: xml:lang, or names longer than `SHORT_NAME` characters."""
    out = {}
    for key, value in attrs.items():
        if SEP in key:
            key = _attr_name(key) or _clark(key)
        elif len(key) > SHORT_NAME and _over(key, MAX_NAME_BYTES):
            raise PeerProtocolError(
                Cond.POLICY_VIOLATION, f"attribute name over {MAX_NAME_BYTES} bytes"
            )
        out[key] = value
    return out
