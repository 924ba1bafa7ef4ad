"""XEP-0115 entity capabilities as PEP uses them: which ``<node>+notify`` features
each available session has, learned from the ``<c/>`` in its presence.

Theory of operation.  A presence carries ``<c hash node ver/>``; `ver` names a set
of features.  What a `ver` means is learned once by asking one session that
announced it for ``disco#info`` on ``node#ver`` (the module does the asking,
through `Router.ask`), then kept in a `CapsCache` keyed by `ver`.  A `ver` may be
shared by users: it is cached only if the answer hashes back to it (§5.4, with
the hash the presence named), so one client cannot poison what another's `ver`
means; an answer that does not verify, or a legacy ``<c/>`` without `hash`, is
kept for the one session that gave it (`Interest.unverified`).

Pure: no I/O, no clock.  The cache is bounded (`chatgate.lru.LruCache`, entries and
bytes); `Interest` holds one small record per available session here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from chatgate.lru import LruCache
from chatgate.vocabulary import ns
from chatgate.vocabulary.ns import CAPS
from chatgate.xml.element import Element

_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
#: XEP-0115 §5.1 names (IANA "Hash Function Textual Names") -> hashlib names
_HASHES = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}
NOTIFY = "+notify"


@dataclass(frozen=True, slots=True)
class Caps:
    """What one presence's ``<c/>`` says."""

    node: str
    ver: str
    hash: str | None  # None: legacy caps (pre-1.5), not verifiable


def caps_of(presence: Element | None) -> Caps | None:
    """The ``<c/>`` of a presence, if it has a usable one."""
    if presence is None:
        return None
    c = presence.find("c", CAPS)
    if c is None:
        return None
    node, ver = c.get("node"), c.get("ver")
    if not node or not ver or len(node) > 1024 or len(ver) > 256:
        return None
    return Caps(node, ver, c.get("hash"))


#: at most this many +notify features are kept per ver or session (real clients
#: name a dozen or two); what PEP needs of the rest is nothing
MAX_NOTIFY = 500
#: and none longer than a node name plus "+notify"
_MAX_FEATURE = 1023 + len("+notify")


def features_of(query: Element) -> frozenset[str]:
    """The +notify features of a disco#info answer: all PEP keeps, bounded by
    MAX_NOTIFY (a 256 kB answer full of features costs no more than that)."""
    found: list[str] = []
    for f in query.find_all("feature", ns.DISCO_INFO):
        var = f.get("var") or ""
        if var.endswith(NOTIFY) and len(var) <= _MAX_FEATURE:
            found.append(var)
            if len(found) >= MAX_NOTIFY:
                break
    return frozenset(found)


def verification_string(query: Element) -> str | None:
    """XEP-0115 §5.1 S for a disco#info answer, or None when §5.4 says the answer
    must not be trusted (duplicate identities or features, a form whose FORM_TYPE
    is missing, not hidden, or repeated)."""
    identities = []
    for el in query.find_all("identity", ns.DISCO_INFO):
        identities.append(
            (
                el.get("category") or "",
                el.get("type") or "",
                el.get(_LANG) or "",
                el.get("name") or "",
            )
        )
    if len(set(identities)) != len(identities):
        return None
    features = [f.get("var") or "" for f in query.find_all("feature", ns.DISCO_INFO)]
    if len(set(features)) != len(features):
        return None
    forms: dict[str, list[tuple[str, list[str]]]] = {}
    for x in query.find_all("x", ns.DATA_FORMS):
        form_type = None
        fields = []
        for field in x.find_all("field", ns.DATA_FORMS):
            var = field.get("var") or ""
            values = [v.text for v in field.find_all("value", ns.DATA_FORMS)]
            if var == "FORM_TYPE":
                if field.get("type") != "hidden" or len(values) != 1 or form_type is not None:
                    return None
                form_type = values[0]
            else:
                fields.append((var, sorted(values)))
        if form_type is None:
            continue  # §5.4: forms without FORM_TYPE are ignored
        if form_type in forms:
            return None
        forms[form_type] = fields
    parts = [f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in sorted(identities)]
    parts.extend(f"{var}<" for var in sorted(features))
    for form_type in sorted(forms):
        parts.append(f"{form_type}<")
        for var, values in sorted(forms[form_type]):
            parts.append(f"{var}<")
            parts.extend(f"{value}<" for value in values)
    return "".join(parts)


def verifies(caps: Caps, query: Element) -> bool:
    """Whether the disco#info answer `query` hashes to `caps.ver` (§5.4 steps 3-6)."""
    name = _HASHES.get((caps.hash or "").lower())
    if name is None:
        return False
    s = verification_string(query)
    if s is None:
        return False
    digest = hashlib.new(name, s.encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode() == caps.ver


def _weigh(key: str, value: frozenset[str]) -> int:
    return 64 + len(key) + sum(64 + len(v) for v in value)


class CapsCache:
    """Verified `ver` -> features, bounded by entries and bytes.  Per node in a
    cluster: each node asks its own sessions (`cluster/pep.py` says why a shared
    store, which verified entries would allow, is not worth a Redis read)."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._lru: LruCache[str, frozenset[str]] = LruCache(
            max_entries, max_bytes, _weigh, max_entry_bytes=max(1, max_bytes // 16)
        )

    def get(self, ver: str) -> frozenset[str] | None:
        return self._lru.get(ver)

    def put(self, ver: str, features: frozenset[str]) -> None:
        self._lru.put(ver, features)

    def __len__(self) -> int:
        return len(self._lru)


@dataclass(slots=True)
class SessionCaps:
    """What is known of one available session's caps."""

    caps: Caps
    #: features learned from this session alone (an unverifiable answer), or None
    unverified: frozenset[str] | None = None


class Interest:
    """Per available session (full JID) here: its last caps and, when they could not
    be verified, the features it answered itself.  At most `max_sessions` records
    (one per bound session, which the server bounds anyway); a session's record
    goes with the session.  In a cluster each node keeps its own sessions' records
    (the `ask` that fills them reaches only this node's sessions)."""

    def __init__(self, cache: CapsCache, max_sessions: int = 1_000_000) -> None:
        self.cache = cache
        self._sessions: dict[str, SessionCaps] = {}
        self._max = max_sessions

    def note(self, full: str, caps: Caps | None) -> bool:
        """Record the session's caps from its presence; True when its features are
        not known yet (the caller should ask it)."""
        if caps is None:
            self._sessions.pop(full, None)
            return False
        known = self._sessions.get(full)
        if known is not None and known.caps == caps:
            return self.features(full) is None
        if full not in self._sessions and len(self._sessions) >= self._max:
            return False
        self._sessions[full] = SessionCaps(caps)
        return self.cache.get(caps.ver) is None

    def learned(self, full: str, caps: Caps, query: Element) -> frozenset[str]:
        """The session's disco#info answer for `caps`: cached by ver when it
        verifies, else kept for this session only.  Returns the features."""
        features = features_of(query)
        if caps.hash is not None and verifies(caps, query):
            self.cache.put(caps.ver, features)
        else:
            record = self._sessions.get(full)
            if record is not None and record.caps == caps:
                record.unverified = features
        return features

    def features(self, full: str) -> frozenset[str] | None:
        record = self._sessions.get(full)
        if record is None:
            return None
        if record.unverified is not None:
            return record.unverified
        return self.cache.get(record.caps.ver)

    def caps(self, full: str) -> Caps | None:
        record = self._sessions.get(full)
        return record.caps if record is not None else None

    def wants(self, full: str, node: str) -> bool:
        features = self.features(full)
        return features is not None and node + NOTIFY in features

    def forget(self, full: str) -> None:
        self._sessions.pop(full, None)

    def __len__(self) -> int:
        return len(self._sessions)
