"""XMPP addresses (RFC 7622): the `JID` value type, its parser, and part preparation.

This module owns the one place where address text becomes a `JID`: PRECIS
enforcement of the localpart (UsernameCaseMapped, RFC 7622 §3.3) and the
resourcepart (OpaqueString, §3.4), IDNA2008 preparation of the domainpart
(§3.2), and the length limits.  It must not know about sessions, routing or
storage, and it never touches I/O.

Two ways to build a JID, on purpose:

* ``JID(local, domain, resource)`` trusts its input.  It is for the server's own
  use with parts that are already prepared (a bound session, a stored roster
  item, the configured domain) and costs three attribute stores.
* ``JID.parse(text)`` prepares and validates untrusted text (every routed
  stanza's ``to``).  Results are memoised in a cache bounded by entries and bytes
  (65,536 and 16 MiB: the address text is chosen by peers, and 70,000 messages to
  distinct 2 KB addresses once pinned 331 MB), and the common all-ASCII parts skip
  PRECIS/IDNA when the outcome is provably identical (``tests/unit/test_jid.py``
  checks the fast paths against the full ones).

Cost before preparation.  PRECIS is pure Python (~4 us a character), so text that
cannot prepare to 1023 bytes or less (RFC 7622 §3.2-§3.4, counted after
preparation) is refused by cheap checks first: more than 4 x 1023 bytes of UTF-8
(no mapping of these profiles shrinks text by more than 3.5:1: a fullwidth Latin
letter with two combining marks composes into one 2-byte letter, U+FF35 U+0308
U+0304 -> U+01D6; every code point and canonical composition was checked), or more
than 1023 characters in U+0000..U+00FF for the localpart and resourcepart (each
yields at least one byte: none is a combining mark or the second half of a
canonical composition, and neither profile deletes characters).  The worst text
that reaches PRECIS is then ~4 KB, a few milliseconds; the valid maximum costs
about a quarter of that.

The `idna` package (IDNA2008 + UTS #46 mapping) is used for the domainpart; it
is already installed as a dependency of aiohttp (through yarl).  The stdlib
``"idna"`` codec is IDNA2003 and would give different answers for some names,
so it is not used as a fallback: every node of a cluster must compare
addresses the same way.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from typing import Final

import idna
from precis_i18n import get_profile

from chatgate.lru import CacheStats, LruCache

__all__ = [
    "JID",
    "InvalidJID",
    "is_own_bare_jid",
    "prepare_domain",
    "prepare_resource",
    "prepare_username",
]

#: RFC 7622 §3.2, §3.3, §3.4: each part is at most 1023 octets (UTF-8) after preparation.
MAX_PART_BYTES: Final = 1023
#: Cheap guard before PRECIS/IDNA work: raw text over this many UTF-8 bytes cannot
#: prepare to MAX_PART_BYTES or less (see the module docstring: 3.5:1 at worst).
_MAX_RAW_BYTES: Final = 4 * MAX_PART_BYTES

#: RFC 7622 §3.3.1: "the following characters ... are explicitly disallowed in
#: XMPP localparts: " & ' / : < > @" (U+0022, U+0026, U+0027, U+002F, U+003A,
#: U+003C, U+003E, U+0040).
FORBIDDEN_LOCAL_CHARS: Final = frozenset("\"&'/:<>@")

_username_profile = get_profile("UsernameCaseMapped")
_opaque_profile = get_profile("OpaqueString")

# Fast paths.  For these inputs the full preparation is the identity (after
# ASCII lowercasing for the localpart and domainpart):
# - localpart: RFC 8264 §9.11 puts every ASCII7 character U+0021..U+007E in the
#   IdentifierClass as PVALID; width mapping, NFC and the bidi rule do nothing to
#   them, and UsernameCaseMapped's case mapping is ASCII lowercasing.
# - resourcepart: OpaqueString (FreeformClass) additionally allows U+0020 and
#   preserves case.
# - domainpart: LDH labels without "--" need only lowercasing under UTS #46.
_ASCII7 = "".join(chr(c) for c in range(0x21, 0x7F))
_LOCAL_FAST = re.compile(
    "[" + "".join(re.escape(c) for c in _ASCII7 if c not in FORBIDDEN_LOCAL_CHARS) + "]+"
)
_RESOURCE_FAST = re.compile(r"[\x20-\x7e]+")
_LDH_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_FAST = re.compile(rf"(?:{_LDH_LABEL}\.)*{_LDH_LABEL}")
#: DNS names are at most 253 octets in text form (RFC 1035 §2.3.4, as the idna package checks).
_MAX_DNS_NAME: Final = 253


class InvalidJID(ValueError):
    """Text that is not a valid XMPP address (maps to the jid-malformed condition)."""


class JID:
    """An RFC 7622 address: ``[local@]domain[/resource]``; immutable and hashable.

    The constructor trusts its arguments (they must already be prepared);
    use `JID.parse` for anything that came from the network or a user.
    Empty `local` or `resource` means the part is absent.
    """

    __slots__ = ("_text", "domain", "local", "resource")

    local: str
    domain: str
    resource: str
    _text: str | None

    def __init__(self, local: str, domain: str, resource: str = "") -> None:
        # The slot descriptors' setters bypass __setattr__ (which forbids
        # mutation) at half the cost of object.__setattr__.
        _set_local(self, local)
        _set_domain(self, domain)
        _set_resource(self, resource)
        _set_text(self, None)

    @staticmethod
    def parse(text: str) -> JID:
        """Prepare and validate `text` (RFC 7622 §3); raises `InvalidJID` with the reason.

        Results are cached (bounded by entries and bytes), so parsing the same
        address again is a dictionary look-up.
        """
        jid = _cached(text)
        if jid is None:
            jid = _parse(text)
            _CACHE.put(text, jid)
        return jid

    # -- value semantics ---------------------------------------------------

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("JID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("JID is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JID):
            return NotImplemented
        return (
            self.local == other.local
            and self.domain == other.domain
            and self.resource == other.resource
        )

    def __hash__(self) -> int:
        return hash((self.local, self.domain, self.resource))

    def __reduce__(self) -> tuple[type[JID], tuple[str, str, str]]:
        return (JID, (self.local, self.domain, self.resource))

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self.domain
            if self.local:
                text = f"{self.local}@{text}"
            if self.resource:
                text = f"{text}/{self.resource}"
            _set_text(self, text)
        return text

    def __repr__(self) -> str:
        return f"JID({self.local!r}, {self.domain!r}, {self.resource!r})"

    # -- derived addresses ---------------------------------------------------

    @property
    def bare(self) -> JID:
        """This address without its resource (RFC 7622 §1.4 "bare JID")."""
        return JID(self.local, self.domain, "") if self.resource else self

    @property
    def is_bare(self) -> bool:
        return not self.resource

    @property
    def is_domain(self) -> bool:
        """True when there is no localpart (a server or component address)."""
        return not self.local


_set_local = JID.__dict__["local"].__set__
_set_domain = JID.__dict__["domain"].__set__
_set_resource = JID.__dict__["resource"].__set__
_set_text = JID.__dict__["_text"].__set__


# -- part preparation ----------------------------------------------------------


def _check_length(prepared: str, what: str) -> None:
    if len(prepared) > MAX_PART_BYTES // 4 and len(prepared.encode("utf-8")) > MAX_PART_BYTES:
        raise InvalidJID(f"{what} is longer than {MAX_PART_BYTES} bytes")


def _check_raw_length(text: str, what: str, *, latin1_bound: bool) -> None:
    """Refuse, before any preparation, text that cannot prepare to MAX_PART_BYTES.

    `latin1_bound`: each U+0000..U+00FF character yields at least one byte (true of
    the PRECIS profiles, not of IDNA's UTS #46 mapping, which deletes U+00AD).
    """
    n = len(text)
    if n > MAX_PART_BYTES and (
        n > _MAX_RAW_BYTES
        or len(text.encode("utf-8", "surrogatepass")) > _MAX_RAW_BYTES
        or (latin1_bound and len(text.encode("latin-1", "ignore")) > MAX_PART_BYTES)
    ):
        raise InvalidJID(f"{what} is longer than {MAX_PART_BYTES} bytes")


def prepare_username(text: str) -> str:
    """Enforce the localpart rules of RFC 7622 §3.3 on `text`; raises `InvalidJID`.

    Used for JID localparts, SASL usernames (RFC 6120 §6.3.7 via RFC 8265's
    UsernameCaseMapped profile) and the CLI.
    """
    if not text:
        raise InvalidJID("empty localpart")
    if len(text) > _MAX_RAW_BYTES:
        raise InvalidJID(f"localpart is longer than {MAX_PART_BYTES} bytes")
    if _LOCAL_FAST.fullmatch(text):
        prepared = text.lower()
    else:
        _check_raw_length(text, "localpart", latin1_bound=True)
        try:
            prepared = _username_profile.enforce(text)
        except UnicodeError as exc:
            raise InvalidJID(f"invalid localpart: {_reason(exc)}") from None
        # §3.3.1: checked after enforcement, because width mapping turns e.g.
        # U+FF20 FULLWIDTH COMMERCIAL AT into "@".
        bad = FORBIDDEN_LOCAL_CHARS.intersection(prepared)
        if bad:
            raise InvalidJID(f"localpart contains forbidden character {min(bad)!r}")
    _check_length(prepared, "localpart")
    return prepared


def prepare_resource(text: str) -> str:
    """Enforce the resourcepart rules of RFC 7622 §3.4 (OpaqueString); raises `InvalidJID`."""
    if not text:
        raise InvalidJID("empty resourcepart")
    if len(text) > _MAX_RAW_BYTES:
        raise InvalidJID(f"resourcepart is longer than {MAX_PART_BYTES} bytes")
    if _RESOURCE_FAST.fullmatch(text):
        prepared = text
    else:
        _check_raw_length(text, "resourcepart", latin1_bound=True)
        try:
            prepared = _opaque_profile.enforce(text)
        except UnicodeError as exc:
            raise InvalidJID(f"invalid resourcepart: {_reason(exc)}") from None
    _check_length(prepared, "resourcepart")
    return prepared


def prepare_domain(text: str) -> str:
    """Prepare a domainpart (RFC 7622 §3.2); raises `InvalidJID`.

    The result is lowercase with U-labels (never A-labels), without a trailing
    dot; IP literals are accepted (IPv6 in brackets, in RFC 5952 form).
    """
    # §3.2: "If the domainpart includes a final character considered to be a label
    # separator (dot) by [RFC1034], this character MUST be stripped".
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidJID("empty domainpart")
    if text.endswith("."):
        raise InvalidJID("empty label in domainpart")
    if len(text) <= _MAX_DNS_NAME and "--" not in text and _DOMAIN_FAST.fullmatch(text):
        # Covers IPv4 literals too: dotted decimal is LDH.
        return text.lower()
    _check_raw_length(text, "domainpart", latin1_bound=False)
    if text.startswith("["):
        # §3.2: "IP-literal" per RFC 3986 §3.2.2; we accept IPv6 addresses.
        if not text.endswith("]"):
            raise InvalidJID("unterminated IP literal in domainpart")
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            raise InvalidJID("invalid IPv6 literal in domainpart") from None
    try:
        # §3.2.1/§3.2.2: width and case mapping and NFC (UTS #46 mapping), IDNA2008
        # validity, and "each A-label MUST be converted to a U-label".
        return idna.decode(idna.encode(text, uts46=True))
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidJID(f"invalid domainpart: {exc}") from None


def _reason(exc: UnicodeError) -> str:
    return getattr(exc, "reason", None) or str(exc)


# -- parsing ---------------------------------------------------------------------


def _parse(text: str) -> JID:
    # RFC 7622 §3.1 (order matters): the resourcepart is everything after the
    # first "/", then the localpart is everything before the first "@" of what
    # remains; "jid = [ localpart "@" ] domainpart [ "/" resourcepart ]" and each
    # present part is at least one octet.
    rest, slash, resource = text.partition("/")
    if slash:
        resource = prepare_resource(resource)
    local, at, domain = rest.partition("@")
    if at:
        local = prepare_username(local)
    else:
        local, domain = "", rest
    jid = JID(local, prepare_domain(domain), resource)
    # Build the text form now, so that the cache can weigh it (and share the key's
    # string when the address was already canonical, as it nearly always is).
    canonical = str(jid)
    if canonical == text:
        _set_text(jid, text)
    return jid


_getsizeof = sys.getsizeof
#: The JID object, plus slack for its three parts' string headers (80 bytes at most
#: each): the parts hold no more characters than the text form, each in no wider a
#: kind, so the text form's size plus this bounds them.
_FIXED_WEIGHT: Final = _getsizeof(JID("", "")) + 3 * 80


def _weigh(text: str, jid: JID) -> int:
    """At least the bytes a cache entry keeps alive: the key, the JID and its parts
    (bounded via the text form), and the text form unless it is the key itself.
    Never changes for an entry: `_text` is set once, before the entry is cached."""
    own = jid._text
    if own is None:  # not from `_parse`; cannot happen, but weigh it safely
        own = str(jid)
    if own is text:
        return 2 * _getsizeof(text) + _FIXED_WEIGHT
    return _getsizeof(text) + 2 * _getsizeof(own) + _FIXED_WEIGHT


#: Raw address text -> JID.  Hits go through the map directly (a dict look-up, no
#: recency refresh): see chatgate.lru.
_CACHE: LruCache[str, JID] = LruCache(65536, 16 << 20, _weigh)
_cached = _CACHE.mapping.get


def parse_cache_info() -> CacheStats:
    """Entries, bytes and insertions of the `JID.parse` cache (for metrics and tests)."""
    return _CACHE.stats()


def is_own_bare_jid(text: str, local: str, domain: str) -> bool:
    """True when `text` is the address ``local@domain`` without a resource.

    This is the rule for a SASL authorization identity (RFC 6120 §6.3.8): a
    client may only ask to act as its own bare JID.  `local` must be prepared;
    `domain` is prepared here (cached) so a configured name compares correctly.
    Invalid `text` is simply not a match.
    """
    try:
        wanted = JID.parse(text)
        own = JID.parse(domain)
    except InvalidJID:
        return False
    return not wanted.resource and wanted.local == local and wanted.domain == own.domain
