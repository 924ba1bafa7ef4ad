"""Voice requests in moderated rooms (XEP-0045 §7.13, §8.6): a visitor asks, the
room hands the moderators an approval form, a moderator's submitted form grants it.

A visitor may ask once a minute (`REQUEST_INTERVAL`): the moderators' clients
show each request, so an unbounded stream of them would be a flood.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatgate.modules.dataforms import FormField, build_form, read_submission
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.occupancy import nick_key
from chatgate.modules.muc.room import MODERATOR, PARTICIPANT, VISITOR, Room
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.modules.muc.service import MucService, Pending

E = StanzaErrorCondition
#: seconds between two voice requests of one occupant
REQUEST_INTERVAL = 60.0


def voice_form(svc: MucService, session: C2SSession, room: Room, form: Element) -> Pending:
    try:
        submission = read_submission(form)
    except ValueError as exc:
        raise StanzaError(E.BAD_REQUEST, str(exc)) from None
    if submission.form_type != v.MUC_REQUEST:
        raise StanzaError(E.BAD_REQUEST, "only muc#request forms are understood here")
    occupant = room.occupant_of(session.full)
    if occupant is None:
        raise StanzaError(E.NOT_ACCEPTABLE, "you are not in this room")
    allow = submission.first("muc#request_allow")
    if allow is not None:
        # §8.6: a moderator answers a request
        if occupant.role != MODERATOR:
            raise StanzaError(E.FORBIDDEN, "only moderators grant voice")
        target = room.occupants.get(
            nick_key(submission.first("muc#roomnick") or "", svc.options.max_nick_length)
        )
        if target is None:
            raise StanzaError(E.ITEM_NOT_FOUND, "no such occupant")
        if allow.strip().lower() in ("1", "true") and target.role == VISITOR:
            target.role = PARTICIPANT
            svc.broadcast_presence(room, target, self_codes=(v.SELF,))
        return None
    if occupant.role != VISITOR:
        return None  # already has voice: nothing to ask for
    now = svc.now()
    if now - occupant.voice_requested < REQUEST_INTERVAL:
        raise StanzaError(E.RESOURCE_CONSTRAINT, "one voice request a minute")
    occupant.voice_requested = now
    # §7.13: every moderator gets the approval form
    fields = [
        FormField("muc#role", "list-single", "Requested role", values=(PARTICIPANT,)),
        FormField("muc#jid", "jid-single", "User ID", values=(occupant.bare,)),
        FormField("muc#roomnick", "text-single", "Room Nickname", values=(occupant.nick,)),
        FormField("muc#request_allow", "boolean", "Grant voice to this person?", values=("false",)),
    ]
    for moderator in room.occupants.values():
        if moderator.role != MODERATOR:
            continue
        msg = Element("message", ns.CLIENT, {"from": room.jid})
        msg.append(
            build_form(
                v.MUC_REQUEST,
                fields,
                title="Voice request",
                instructions=f"{occupant.nick} asks to speak in {room.jid}.",
            )
        )
        for full in list(moderator.sessions):
            svc.deliver(full, msg)
    return None
