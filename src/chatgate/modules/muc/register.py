"""Reserved nicknames: XEP-0045 §7.10 registering with a room (``jabber:iq:register``
with the ``muc#register`` form) and §7.12 discovering one's reserved nickname
(disco#info on the node ``x-roomuser-item``).

A user registers one nick per room; the room reserves it for that user (nobody
else enters, or changes to it: `conflict`), makes an unaffiliated user a member,
and lists the nick with the member in its affiliation lists (§9.5).  The nick is
held while the user is affiliated (it goes with a ban or an affiliation back to
none, `Room.set_affiliation`), and is stored with a persistent room.  A
members-only room registers its members only (admins add members, §9.3).

Reservations count toward nothing new: only affiliated users hold one, so a room
holds at most `max_affiliations` of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from chatgate.modules.dataforms import FormField, build_form, find_form, read_submission
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.occupancy import nick_key
from chatgate.modules.muc.room import MEMBER, NICKS_STORED_AS, NONE, OUTCAST, VISITOR, Room
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.modules.muc.service import MucService, Pending

E = StanzaErrorCondition
#: §15.5.1 the registration form's FORM_TYPE and its nick field
REGISTER_FORM = "http://jabber.org/protocol/muc#register"
ROOMNICK = "muc#register_roomnick"
#: §7.12 the disco#info node naming the user's reserved nick
ROOMUSER_NODE = "x-roomuser-item"


def _answer(session: C2SSession, iq: Element, payload: Element | None = None) -> None:
    reply = iq_result(iq, payload)
    reply.attrs["to"] = session.full
    session.send(reply)


def register_iq(
    svc: MucService, session: C2SSession, iq: Element, room: Room, query: Element
) -> Pending:
    """§7.10: the registration form (or what is registered), a submission, a
    cancel, or ``<remove/>`` (the reservation goes; the affiliation stays)."""
    bare = session.bare
    affiliation = room.affiliation(bare)
    if affiliation == OUTCAST:
        raise StanzaError(E.FORBIDDEN, "you are banned from this room")
    if iq.get("type") == "get":
        reply = Element("query", ns.REGISTER)
        nick = room.nicks.get(bare)
        if nick is not None:  # XEP-0077 §3.1: already registered
            reply.sub("registered")
            reply.sub("username", text=nick)
        else:
            _may_register(room, affiliation)
            reply.sub("instructions", text="Choose the nickname this room keeps for you.")
            reply.append(
                build_form(
                    REGISTER_FORM,
                    [FormField(ROOMNICK, "text-single", label="Nickname", required=True)],
                    title=f"Registration with {room.jid}",
                )
            )
        _answer(session, iq, reply)
        return None
    if query.find("remove") is not None:
        if bare not in room.nicks:
            raise StanzaError(E.ITEM_NOT_FOUND, "no nickname is registered for you here")
        room.unreserve(bare)
        _answer(session, iq)
        return svc.persist(room) if room.config.persistent else None
    form = find_form(query)
    if form is None:
        raise StanzaError(E.BAD_REQUEST, "a muc#register form or <remove/> is expected")
    if form.get("type") == "cancel":
        _answer(session, iq)
        return None
    try:
        submission = read_submission(form)
    except ValueError as exc:
        raise StanzaError(E.BAD_REQUEST, str(exc)) from None
    if submission.form_type != REGISTER_FORM:
        raise StanzaError(E.BAD_REQUEST, f"the form's FORM_TYPE must be {REGISTER_FORM}")
    _may_register(room, affiliation)
    nick = submission.first(ROOMNICK) or ""
    key = nick_key(nick, svc.options.max_nick_length)
    holder = room.reserved.get(key)
    if holder is not None and holder != bare:
        raise StanzaError(E.CONFLICT, "that nickname is registered by someone else")
    present = room.occupants.get(key)
    if present is not None and present.bare != bare:
        raise StanzaError(E.CONFLICT, "that nickname is in use in the room")
    if affiliation == NONE and len(room.affiliations) >= svc.options.max_affiliations:
        raise StanzaError(E.RESOURCE_CONSTRAINT, "the room has too many affiliations")
    _answer(session, iq)
    room.reserve(bare, nick, key)
    if affiliation == NONE:
        room.set_affiliation(bare, MEMBER)
        for occupant in room.occupants_of(bare):
            if occupant.role == VISITOR:
                occupant.role = room.default_role(MEMBER)
            svc.broadcast_presence(room, occupant, self_codes=(v.SELF,))
    return svc.persist(room) if room.config.persistent else None


def _may_register(room: Room, affiliation: str) -> None:
    if room.config.members_only and affiliation == NONE:
        raise StanzaError(
            E.REGISTRATION_REQUIRED, "this room is members-only: an admin adds its members"
        )


def roomuser_item(session: C2SSession, iq: Element, room: Room) -> None:
    """§7.12: the sender's reserved nick as the identity's name; no identity when
    there is none."""
    reply = Element("query", ns.DISCO_INFO, {"node": ROOMUSER_NODE})
    nick = room.nicks.get(session.bare)
    if nick is not None:
        reply.sub("identity", attrs={"category": "conference", "name": nick, "type": "text"})
    _answer(session, iq, reply)


def load_nicks(room: Room, stored: Mapping[str, object], max_nick_length: int) -> None:
    """The registered nicks `Room.stored_config` kept, for a room just loaded: those of
    users still affiliated, whose nick is still usable and not taken twice."""
    nicks = stored.get(NICKS_STORED_AS)
    if not isinstance(nicks, dict):
        return
    for bare, nick in nicks.items():
        if not isinstance(nick, str) or room.affiliation(str(bare)) in (NONE, OUTCAST):
            continue
        try:
            key = nick_key(nick, max_nick_length)
        except StanzaError:
            continue
        if key not in room.reserved:
            room.reserve(str(bare), nick, key)
