"""Where a stanza to the MUC service goes: the service itself (disco, the room
list), a room (join and leave, groupchat, configuration and affiliations) or an
occupant (private messages and IQs); the work is in `occupancy`, `chat` and
`admin`, which this module alone imports beside the module wiring."""

from __future__ import annotations

from chatgate.jid import JID
from chatgate.modules.muc import admin, chat, occupancy
from chatgate.modules.muc.service import MucService, Pending
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession


def handle(svc: MucService, session: C2SSession, stanza: Element, to: JID) -> Pending:
    """A stanza from a local client to the service or one of its rooms."""
    try:
        name = stanza.name
        if not to.local:
            if name == "iq":
                return admin.service_iq(svc, session, stanza, to)
            if name == "message":
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return None  # presence to the service itself: nothing to do
        room_jid = f"{to.local}@{to.domain}"
        if name == "presence":
            return occupancy.presence(svc, session, stanza, room_jid, to.resource)
        if name == "message":
            if to.resource:
                return chat.private_message(svc, session, stanza, room_jid, to.resource)
            return chat.room_message(svc, session, stanza, room_jid)
        if name == "iq":
            if to.resource:
                return chat.occupant_iq(svc, session, stanza, room_jid, to.resource)
            return admin.room_iq(svc, session, stanza, room_jid)
    except StanzaError as exc:
        svc.error(session, stanza, exc)
    return None
