"""What goes into an archive, and whose preferences allow it (pure).

Worth archiving (XEP-0313 §4 "Business rules", XEP-0334 hints): a message of
type chat or normal with a <body/>, or one carrying a payload that clients
keep history of without a body (end-to-end encrypted messages, XEP-0424
retractions, XEP-0444 reactions), or any message with a <store/> hint.  Never:
<no-store/> or <no-permanent-store/> hints, type error, groupchat (rooms
archive their own), headline without <store/>.  Chat states and receipts
alone are not kept (Prosody and ejabberd leave them out too).

Preferences (XEP-0313 §7): a JID in `never` is never archived, one in `always`
always is; otherwise the default decides: 'always', 'never', or 'roster'
(archived when the contact is in the owner's roster).  JIDs in the lists are
bare JIDs or domains (a domain matches every JID on it).

XEP-0359 §5: a stanza-id whose 'by' is the archive's JID may only come from
the archiving entity, so any such element a client put in is removed.
"""

from __future__ import annotations

from collections.abc import Callable

from chatgate.jid import JID, InvalidJID
from chatgate.storage.repositories.archive import ArchivePrefs
from chatgate.vocabulary.ns import HINTS, SID
from chatgate.xml.element import Element

CLIENT = "jabber:client"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"

MODES = ("always", "never", "roster")

#: payloads archived without a body: (name, namespace)
_KEPT_PAYLOADS = frozenset(
    {
        ("encrypted", "eu.siacs.conversations.axolotl"),  # XEP-0384 (OMEMO 0.3)
        ("encrypted", "urn:xmpp:omemo:2"),  # XEP-0384 (OMEMO 2)
        ("openpgp", "urn:xmpp:openpgp:0"),  # XEP-0373
        ("retract", "urn:xmpp:message-retract:1"),  # XEP-0424
        ("reactions", "urn:xmpp:reactions:0"),  # XEP-0444
    }
)


def worth_archiving(stanza: Element) -> bool:
    """Whether a message between accounts goes into their archives (module docstring)."""
    mtype = stanza.attrs.get("type", "normal")
    if mtype in ("error", "groupchat"):
        return False
    store = False
    content = False
    for child in stanza.children:
        if type(child) is str:
            continue
        name, ns = child.name, child.ns  # type: ignore[union-attr]
        if ns == HINTS:
            if name in ("no-store", "no-permanent-store"):
                return False
            if name == "store":
                store = True
        elif (name == "body" and ns == CLIENT) or (name, ns) in _KEPT_PAYLOADS:
            content = True
    if store:
        return True
    return content and mtype in ("chat", "normal")


def strip_stanza_ids(stanza: Element, by: str) -> None:
    """Remove every XEP-0359 <stanza-id/> whose 'by' names `by` (a bare JID)."""
    for child in stanza.children:
        if type(child) is not str and child.name == "stanza-id" and child.ns == SID:  # type: ignore[union-attr]
            break
    else:
        return  # the common case: none at all
    wanted = _normal(by)
    stanza.children = [
        c
        for c in stanza.children
        if type(c) is str
        or not (c.name == "stanza-id" and c.ns == SID and _normal(c.attrs.get("by", "")) == wanted)  # type: ignore[union-attr]
    ]


def _normal(jid: str) -> str:
    try:
        return str(JID.parse(jid))
    except InvalidJID:
        return jid


def verdict(prefs: ArchivePrefs, contact: str) -> bool | None:
    """Whether `prefs` archive a message with the bare JID `contact`; None when the
    owner's roster decides (default 'roster' and the JID in neither list)."""
    domain = contact.partition("@")[2] or contact
    if contact in prefs.never or domain in prefs.never:
        return False
    if contact in prefs.always or domain in prefs.always:
        return True
    if prefs.default == "roster":
        return None
    return prefs.default == "always"


def decide(prefs: ArchivePrefs, contact: str, in_roster: Callable[[str], bool]) -> bool:
    """`verdict`, with `in_roster` asked when the roster decides."""
    decided = verdict(prefs, contact)
    return in_roster(contact) if decided is None else decided
