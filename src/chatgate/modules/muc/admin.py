"""IQs to the service and to rooms: disco (XEP-0030, §6), owner configuration and
destruction (muc#owner, §10), affiliations and roles (muc#admin, §8-§9), the
room archive (XEP-0313) and message moderation (XEP-0425).

An admin request with several items is checked whole before any is applied
(§9-§10: the list changes together or not at all).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatgate.jid import JID, InvalidJID
from chatgate.modules.dataforms import find_form, read_submission
from chatgate.modules.muc import forms, roomlist
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.chat import moderate, moderate_legacy, room_or_error
from chatgate.modules.muc.occupancy import nick_key, remove_occupant
from chatgate.modules.muc.register import ROOMUSER_NODE, register_iq, roomuser_item
from chatgate.modules.muc.room import (
    ADMIN,
    AFFILIATION_RANK,
    AFFILIATIONS,
    MEMBER,
    MODERATOR,
    NONE,
    OUTCAST,
    OWNER,
    PARTICIPANT,
    VISITOR,
    Occupant,
    Room,
)
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result, payload_of

if TYPE_CHECKING:
    from chatgate.modules.muc.service import MucService, Pending

E = StanzaErrorCondition


def public_rooms(svc: MucService, service: str) -> Iterator[tuple[str, str]]:
    """The public, unlocked rooms of `service` this node holds: (JID, name)."""
    for room in svc.registry.rooms(service):
        if room.config.public and not room.locked:
            yield room.jid, room.config.name


def _answer(session: C2SSession, iq: Element, payload: Element | None = None) -> None:
    reply = iq_result(iq, payload)
    reply.attrs["to"] = session.full
    session.send(reply)


def _payload(iq: Element) -> Element:
    itype = iq.get("type")
    if itype not in ("get", "set") or not iq.get("id"):
        raise StanzaError(E.BAD_REQUEST, "iq needs id and type get or set")
    payload = payload_of(iq)
    if payload is None:
        raise StanzaError(E.BAD_REQUEST, "an iq needs a payload")
    return payload


# ---------------------------------------------------------------- the service itself


def service_iq(svc: MucService, session: C2SSession, iq: Element, to: JID) -> Pending:
    if iq.get("type") in ("result", "error"):
        return None
    payload = _payload(iq)
    key = (payload.ns, payload.name, iq.get("type"))
    if key == (ns.DISCO_INFO, "query", "get"):
        if payload.get("node"):
            raise StanzaError(E.ITEM_NOT_FOUND, "no such node")
        query = Element("query", ns.DISCO_INFO)
        query.sub(
            "identity", attrs={"category": "conference", "type": "text", "name": svc.options.name}
        )
        for var in sorted(
            {v.MUC, ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, v.OCCUPANT_ID, v.STANZA_ID}
        ):
            query.sub("feature", attrs={"var": var})
        _answer(session, iq, query)
        return None
    if key == (ns.DISCO_ITEMS, "query", "get"):
        if payload.get("node"):
            raise StanzaError(E.ITEM_NOT_FOUND, "no such node")
        request = roomlist.read_request(payload, svc.options.room_list_max)
        mine = roomlist.window(public_rooms(svc, to.domain), request)
        _answer(session, iq, roomlist.answer(roomlist.merge([mine], request), request))
        return None
    if key == (ns.PING, "ping", "get"):
        _answer(session, iq)
        return None
    raise StanzaError(E.SERVICE_UNAVAILABLE)


# ---------------------------------------------------------------- rooms


def room_iq(svc: MucService, session: C2SSession, iq: Element, room_jid: str) -> Pending:
    if iq.get("type") in ("result", "error"):
        return None
    payload = _payload(iq)
    itype = iq.get("type")
    room = (
        room_or_error(svc, room_jid, session)
        if payload.ns != v.MUC_OWNER
        else svc.registry.get(room_jid)
    )
    if room is None:
        raise StanzaError(E.ITEM_NOT_FOUND, "no such room")
    if payload.ns == ns.DISCO_INFO and itype == "get":
        _disco_info(svc, session, iq, room, payload)
        return None
    if payload.ns == ns.DISCO_ITEMS and itype == "get":
        query = Element("query", ns.DISCO_ITEMS)
        if room.occupant_of(session.full) is not None:  # §6.5: occupants only
            for occupant in room.occupants.values():
                query.sub("item", attrs={"jid": f"{room.jid}/{occupant.nick}"})
        _answer(session, iq, query)
        return None
    if payload.ns == ns.PING and itype == "get":
        _answer(session, iq)
        return None
    if payload.ns == v.MUC_OWNER:
        return _owner(svc, session, iq, room, payload)
    if payload.ns == v.MUC_ADMIN:
        if itype == "get":
            _admin_get(svc, session, iq, room, payload)
            return None
        return _admin_set(svc, session, iq, room, payload)
    if payload.ns == ns.REGISTER and payload.name == "query":
        return register_iq(svc, session, iq, room, payload)
    if payload.ns == v.MODERATE and payload.name == "moderate" and itype == "set":
        return moderate(svc, session, iq, room, payload)
    if payload.ns == v.FASTEN and payload.name == "apply-to" and itype == "set":
        return moderate_legacy(svc, session, iq, room, payload)
    if payload.ns == v.MAM and svc.archive is not None and room.config.archive:
        if room.config.members_only and room.affiliation(session.bare) in (NONE, OUTCAST):
            raise StanzaError(E.FORBIDDEN, "the archive of a members-only room is for members")
        if room.affiliation(session.bare) == OUTCAST:
            raise StanzaError(E.FORBIDDEN, "you are banned from this room")
        if itype != "set" or payload.name != "query":
            raise StanzaError(E.SERVICE_UNAVAILABLE, "room archives answer queries only")
        return svc.guarded(session, iq, svc.archive.query(session, iq, room.jid))
    raise StanzaError(E.SERVICE_UNAVAILABLE)


def _disco_info(
    svc: MucService, session: C2SSession, iq: Element, room: Room, payload: Element
) -> None:
    if payload.get("node") == ROOMUSER_NODE:
        roomuser_item(session, iq, room)  # §7.12
        return
    if payload.get("node"):
        raise StanzaError(E.ITEM_NOT_FOUND, "no such node")
    query = Element("query", ns.DISCO_INFO)
    query.sub(
        "identity",
        attrs={
            "category": "conference",
            "type": "text",
            "name": room.config.name or room.jid.partition("@")[0],
        },
    )
    for var in sorted(forms.features(room, archive=svc.archive is not None)):
        query.sub("feature", attrs={"var": var})
    query.append(forms.roominfo(room))
    _answer(session, iq, query)


def _owner(
    svc: MucService, session: C2SSession, iq: Element, room: Room, query: Element
) -> Pending:
    """§10: only owners configure or destroy a room."""
    if room.affiliation(session.bare) != OWNER:
        raise StanzaError(E.FORBIDDEN, "only owners may configure the room")
    if iq.get("type") == "get":
        reply = Element("query", v.MUC_OWNER)
        reply.append(forms.config_form(room, svc.options.max_occupants))
        _answer(session, iq, reply)
        return None
    destroy = query.find("destroy")
    if destroy is not None:
        return _destroy(svc, session, iq, room, destroy)
    form = find_form(query)
    if form is None:
        raise StanzaError(E.BAD_REQUEST, "a form or <destroy/> is expected")
    if form.get("type") == "cancel":
        _answer(session, iq)
        if room.locked:  # §10.1.3: cancelling the first configuration destroys the room
            return _destroy(svc, session, None, room, None)
        return None
    try:
        submission = read_submission(form)
    except ValueError as exc:
        raise StanzaError(E.BAD_REQUEST, str(exc)) from None
    o = svc.options
    old = room.config
    config = forms.apply_submission(
        old,
        submission,
        max_occupants=o.max_occupants,
        max_history=o.history_messages,
        max_text=o.max_config_text,
    )
    was_locked = room.locked
    room.config = config
    room.locked = False
    _answer(session, iq)
    if not was_locked and config != old:
        codes = ["104"]
        if config.non_anonymous != old.non_anonymous:
            codes.append("172" if config.non_anonymous else "173")
        msg = Element("message", ns.CLIENT, {"from": room.jid, "type": "groupchat"})
        x = msg.sub("x", v.MUC_USER)
        for code in codes:
            x.sub("status", attrs={"code": code})
        svc.to_everyone(room, msg)
    if config.moderated != old.moderated:
        _recompute_roles(svc, room)
    if config.members_only and not old.members_only:
        for occupant in list(room.occupants.values()):
            if room.affiliation(occupant.bare) == NONE:
                remove_occupant(svc, room, occupant, v.MEMBERS_ONLY_NOW)  # §9.5
    pending = svc.persist(room) if config.persistent or old.persistent else None
    svc.drop_if_empty(
        room
    )  # made temporary with nobody in it (an owner may configure from outside)
    return pending


def _destroy(
    svc: MucService, session: C2SSession, iq: Element | None, room: Room, destroy: Element | None
) -> Pending:
    """§10.9: every occupant leaves with the <destroy/> (alternate venue, reason)."""
    for occupant in list(room.occupants.values()):
        el = Element(
            "presence", ns.CLIENT, {"from": f"{room.jid}/{occupant.nick}", "type": "unavailable"}
        )
        x = el.sub("x", v.MUC_USER)
        x.sub("item", attrs={"affiliation": NONE, "role": NONE})
        out = x.sub("destroy")
        if destroy is not None:
            venue = destroy.get("jid")
            if venue:
                out.attrs["jid"] = venue
            reason = destroy.find("reason")
            if reason is not None:
                out.sub("reason", text=reason.text)
        for full in occupant.sessions:
            svc.router.presence_to((full,), _serialize(el))
    if iq is not None:
        _answer(session, iq)
    return svc.destroy(room)


def _admin_get(
    svc: MucService, session: C2SSession, iq: Element, room: Room, query: Element
) -> None:
    """§9.5, §8.5: the list of an affiliation (admins and owners; members' list to
    members of a members-only room too) or of a role (moderators)."""
    item = query.find("item")
    if item is None:
        raise StanzaError(E.BAD_REQUEST, "an <item/> with an affiliation or role is expected")
    mine = room.affiliation(session.bare)
    occupant = room.occupant_of(session.full)
    reply = Element("query", v.MUC_ADMIN)
    affiliation, role = item.get("affiliation"), item.get("role")
    if affiliation is not None:
        if affiliation not in AFFILIATIONS or affiliation == NONE:
            raise StanzaError(E.BAD_REQUEST, "no such affiliation list")
        member_view = affiliation == MEMBER and room.config.members_only and mine == MEMBER
        if AFFILIATION_RANK[mine] < AFFILIATION_RANK[ADMIN] and not member_view:
            raise StanzaError(E.FORBIDDEN, "only admins and owners see affiliation lists")
        for bare, held in sorted(room.affiliations.items()):
            if held == affiliation:
                attrs = {"affiliation": held, "jid": bare}
                nicks = [o.nick for o in room.occupants_of(bare)]
                registered = room.nicks.get(bare)
                if registered is not None:  # §9.5: the reserved nick
                    attrs["nick"] = registered
                elif nicks:
                    attrs["nick"] = nicks[0]
                reply.sub("item", attrs=attrs)
    elif role is not None:
        if role not in (MODERATOR, PARTICIPANT, VISITOR):
            raise StanzaError(E.BAD_REQUEST, "no such role list")
        if occupant is None or occupant.role != MODERATOR:
            raise StanzaError(E.FORBIDDEN, "only moderators see role lists")
        for other in room.occupants.values():
            if other.role == role:
                reply.sub(
                    "item",
                    attrs={
                        "role": role,
                        "nick": other.nick,
                        "affiliation": room.affiliation(other.bare),
                        "jid": next(reversed(other.sessions)),
                    },
                )
    else:
        raise StanzaError(E.BAD_REQUEST, "an <item/> with an affiliation or role is expected")
    _answer(session, iq, reply)


def _admin_set(
    svc: MucService, session: C2SSession, iq: Element, room: Room, query: Element
) -> Pending:
    items = query.find_all("item")
    if not items:
        raise StanzaError(E.BAD_REQUEST, "at least one <item/> is expected")
    if len(items) > svc.options.max_affiliations:
        raise StanzaError(E.POLICY_VIOLATION, "too many items")
    actor = room.occupant_of(session.full)
    mine = room.affiliation(session.bare)
    role_changes: list[tuple[Occupant, str, str | None]] = []
    affiliation_changes: dict[str, tuple[str, str | None]] = {}
    #: nicks reserved by this request: bare JID -> (nick, key), and key -> bare JID
    nicks: dict[str, tuple[str, str]] = {}
    reservations: dict[str, str] = {}
    for item in items:
        reason_el = item.find("reason")
        reason = reason_el.text if reason_el is not None else None
        if item.get("affiliation") is not None:
            bare = _bare(svc, item, room)
            affiliation = item.get("affiliation") or ""
            _check_affiliation(room, mine, bare, affiliation)
            affiliation_changes[bare] = (affiliation, reason)
            if item.get("jid") and item.get("nick") and affiliation in (MEMBER, ADMIN, OWNER):
                # an admin reserves a nick for the user (§9.3's item may carry one)
                wanted = item.get("nick") or ""
                key = nick_key(wanted, svc.options.max_nick_length)
                if room.reserved.get(key, bare) != bare or reservations.get(key, bare) != bare:
                    raise StanzaError(E.CONFLICT, f"{wanted} is registered by someone else")
                reservations[key] = bare
                nicks[bare] = (wanted, key)
        elif item.get("role") is not None:
            nick = item.get("nick")
            if not nick:
                raise StanzaError(E.BAD_REQUEST, "a role change names the occupant by nick")
            target = room.occupants.get(nick_key(nick, svc.options.max_nick_length))
            if target is None:
                raise StanzaError(E.ITEM_NOT_FOUND, f"no occupant {nick}")  # §8.2? not-acceptable
            role = item.get("role") or ""
            _check_role(room, actor, mine, target, role)
            role_changes.append((target, role, reason))
        else:
            raise StanzaError(E.BAD_REQUEST, "an item needs an affiliation or a role")
    owners = set(room.owners())
    for bare, (affiliation, _reason) in affiliation_changes.items():
        if affiliation == OWNER:
            owners.add(bare)
        else:
            owners.discard(bare)
    if not owners:
        raise StanzaError(E.CONFLICT, "a room keeps at least one owner")  # §10.6
    added = sum(1 for b in affiliation_changes if b not in room.affiliations)
    if len(room.affiliations) + added > svc.options.max_affiliations:
        raise StanzaError(E.RESOURCE_CONSTRAINT, "the room has too many affiliations")
    _answer(session, iq)
    actor_nick = actor.nick if actor is not None else None
    for bare, (affiliation, reason) in affiliation_changes.items():
        room.set_affiliation(bare, affiliation)
        if bare in nicks:
            room.reserve(bare, *nicks[bare])
        for occupant in room.occupants_of(bare):
            if affiliation == OUTCAST:
                remove_occupant(
                    svc, room, occupant, v.BANNED, actor=actor_nick, reason=reason
                )  # §9.1
            elif affiliation == NONE and room.config.members_only:
                remove_occupant(
                    svc, room, occupant, v.AFFILIATION_CHANGED, actor=actor_nick, reason=reason
                )
            else:
                occupant.role = room.default_role(affiliation)
                svc.broadcast_presence(room, occupant, self_codes=(v.SELF,), reason=reason)
    for occupant, role, reason in role_changes:
        if room.occupants.get(nick_key(occupant.nick, svc.options.max_nick_length)) is not occupant:
            continue  # gone with an affiliation change of the same request
        if role == NONE:
            remove_occupant(svc, room, occupant, v.KICKED, actor=actor_nick, reason=reason)  # §8.2
        else:
            occupant.role = role
            svc.broadcast_presence(room, occupant, self_codes=(v.SELF,), reason=reason)
    if affiliation_changes and room.config.persistent:
        return svc.persist(room)
    return None


def _bare(svc: MucService, item: Element, room: Room) -> str:
    """The bare JID an affiliation item names: its 'jid', or the occupant its
    'nick' names (§9.1 lets an admin ban an occupant by nick)."""
    text = item.get("jid")
    nick = item.get("nick")
    if not text and nick:
        occupant = room.occupants.get(nick_key(nick, svc.options.max_nick_length))
        if occupant is None:
            raise StanzaError(E.ITEM_NOT_FOUND, f"no occupant {nick}")
        return occupant.bare
    if not text:
        raise StanzaError(E.BAD_REQUEST, "an affiliation change names a JID")
    try:
        return str(JID.parse(text).bare)
    except InvalidJID:
        raise StanzaError(E.JID_MALFORMED, "not a JID") from None


def _check_affiliation(room: Room, mine: str, bare: str, affiliation: str) -> None:
    """§9-§10: admins manage members and outcasts among those below them; owners
    manage everyone."""
    if affiliation not in AFFILIATIONS:
        raise StanzaError(E.BAD_REQUEST, f"no affiliation {affiliation!r}")
    if mine == OWNER:
        return
    if mine != ADMIN:
        raise StanzaError(E.FORBIDDEN, "only admins and owners change affiliations")
    if affiliation in (OWNER, ADMIN):
        raise StanzaError(E.FORBIDDEN, "only owners grant admin or owner")
    if AFFILIATION_RANK[room.affiliation(bare)] >= AFFILIATION_RANK[ADMIN]:
        raise StanzaError(E.NOT_ALLOWED, "admins cannot change an admin's or owner's affiliation")


def _check_role(room: Room, actor: Occupant | None, mine: str, target: Occupant, role: str) -> None:
    """§8: moderators kick and grant or revoke voice; admins and owners grant
    moderator; nobody acts on an admin or owner this way."""
    if role not in (MODERATOR, PARTICIPANT, VISITOR, NONE):
        raise StanzaError(E.BAD_REQUEST, f"no role {role!r}")
    if actor is None or actor.role != MODERATOR:
        raise StanzaError(E.FORBIDDEN, "only moderators change roles")
    theirs = room.affiliation(target.bare)
    if AFFILIATION_RANK[theirs] >= AFFILIATION_RANK[ADMIN] and role != MODERATOR:
        raise StanzaError(E.NOT_ALLOWED, "admins and owners cannot be kicked or silenced")  # §8.2
    if (role == MODERATOR or target.role == MODERATOR) and mine not in (OWNER, ADMIN):
        raise StanzaError(E.FORBIDDEN, "only admins and owners grant or revoke moderator")


def _recompute_roles(svc: MucService, room: Room) -> None:
    """A room becoming (un)moderated gives occupants the role their affiliation now gives."""
    for occupant in list(room.occupants.values()):
        role = room.default_role(room.affiliation(occupant.bare))
        if occupant.role != MODERATOR and role != occupant.role:
            occupant.role = role
            svc.broadcast_presence(room, occupant, self_codes=(v.SELF,))


def _serialize(el: Element) -> str:
    from chatgate.xml.serialize import serialize

    return serialize(el)
