"""Presence to rooms (XEP-0045 §7.2-§7.6, §10.1): entering, leaving, changing nick
or status, and the service's side of a session's end.

Entering checks, in the order of §7.2: a valid nick, a room that exists (or may be
created), not locked, not banned, a member of a members-only room, the right
password, a free nick, room for one more.  Then the joiner gets every occupant's
presence, its own (110, and 201 for a new room), the history it asked for and
the subject (§7.2.3, §7.2.15, §7.2.16).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from precis_i18n import get_profile

from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.room import MODERATOR, OUTCAST, HistoryEntry, Occupant, Room
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.modules.muc.service import MucService, Pending

_NICKNAME = get_profile("NicknameCaseMapped")
E = StanzaErrorCondition


def nick_key(nick: str, max_length: int) -> str:
    """The form nicks are compared in (RFC 8266 Nickname, case-mapped); raises
    StanzaError(jid-malformed) for an empty, too long or unusable nick."""
    if not nick:
        raise StanzaError(E.JID_MALFORMED, "a room nickname is required")
    if len(nick) > max_length:
        raise StanzaError(E.JID_MALFORMED, f"nicknames are at most {max_length} characters")
    try:
        key = _NICKNAME.enforce(nick)
    except UnicodeError as exc:
        raise StanzaError(E.JID_MALFORMED, f"not a usable nickname: {exc}") from None
    if not key:
        raise StanzaError(E.JID_MALFORMED, "a room nickname is required")
    return str(key)


def presence(
    svc: MucService, session: C2SSession, stanza: Element, room_jid: str, nick: str
) -> Pending:
    ptype = stanza.get("type")
    room = svc.registry.get(room_jid)
    if ptype in ("unavailable", "error"):
        # §7.14 (and an error bounced by the client, XEP-0410 §3: it is gone)
        if room is not None and room.occupant_of(session.full) is not None:
            leave(svc, room, session.full, leaving=stanza)
        return None
    if ptype is not None:
        return None  # subscriptions and probes mean nothing to a room
    if not nick:
        raise StanzaError(E.JID_MALFORMED, "a room nickname is required (room@service/nick)")
    # the room keeps each session's presence for as long as it stays: bounded
    limit = svc.options.max_presence_bytes
    if len(_serialize(stanza).encode()) > limit:
        raise StanzaError(E.POLICY_VIOLATION, f"presence to a room is at most {limit} bytes")
    occupant = room.occupant_of(session.full) if room is not None else None
    if room is None or occupant is None:
        return join(svc, session, stanza, room_jid, nick)
    key = nick_key(nick, svc.options.max_nick_length)
    if room.by_full[session.full] != key or occupant.nick != nick:
        return change_nick(svc, room, occupant, session, stanza, nick, key)
    occupant.sessions[session.full] = stanza
    x = stanza.find("x", v.MUC)
    if x is not None:
        # A join from a session already in the room (a client that lost track,
        # XEP-0410 §4): it gets the room's state again; the others a new status.
        svc.broadcast_presence(room, occupant, only_self=())
        _welcome(svc, room, occupant, session, x, created=False, announce=False)
        return None
    # §7.7: a new status, to everyone
    svc.broadcast_presence(room, occupant, self_codes=(v.SELF,))
    return None


def join(
    svc: MucService, session: C2SSession, stanza: Element, room_jid: str, nick: str
) -> Pending:
    o = svc.options
    key = nick_key(nick, o.max_nick_length)
    if len(svc.registry.rooms_of(session.full)) >= o.max_rooms_per_session:
        raise StanzaError(E.RESOURCE_CONSTRAINT, f"in {o.max_rooms_per_session} rooms already")
    x = stanza.find("x", v.MUC)
    room = svc.registry.get(room_jid)
    created = room is None
    if room is None:
        if svc.registry.count(room_jid.partition("@")[2]) >= o.max_rooms:
            raise StanzaError(E.RESOURCE_CONSTRAINT, "this service holds as many rooms as it may")
        room = svc.new_room(room_jid, session.bare)
    affiliation = room.affiliation(session.bare)
    if room.locked and affiliation != "owner":
        # §10.1.1: nobody else enters before the owner configures the room
        raise StanzaError(E.ITEM_NOT_FOUND, "the room is locked until its owner configures it")
    if affiliation == OUTCAST:
        raise StanzaError(E.FORBIDDEN, "you are banned from this room")  # §7.2.7
    if room.config.members_only and affiliation == "none":
        raise StanzaError(E.REGISTRATION_REQUIRED, "members only")  # §7.2.6
    existing = room.occupants.get(key)
    if existing is not None and existing.bare != session.bare:
        raise StanzaError(E.CONFLICT, "that nickname is in use")  # §7.2.9
    if room.reserved.get(key, session.bare) != session.bare:
        raise StanzaError(E.CONFLICT, "that nickname is registered by someone else")  # §7.10
    if room.config.password and affiliation not in ("owner", "admin"):
        given = x.find("password") if x is not None else None
        if given is None or given.text != room.config.password:
            raise StanzaError(E.NOT_AUTHORIZED, "a password is required")  # §7.2.5
    if existing is None:
        if len(room.occupants) >= svc.max_occupants(room) and affiliation not in ("owner", "admin"):
            raise StanzaError(E.SERVICE_UNAVAILABLE, "the room is full")  # §7.2.10
        occupant = Occupant(nick, session.bare, room.default_role(affiliation))
    else:
        occupant = existing
        if len(occupant.sessions) >= o.max_sessions_per_occupant:
            raise StanzaError(E.RESOURCE_CONSTRAINT, "too many sessions under this nickname")
    if created:
        svc.registry.add(room)
        svc.forget_leftovers(room_jid)
    room.add_session(key, occupant, session.full, stanza)
    svc.registry.joined(session.full, room.jid)
    _welcome(svc, room, occupant, session, x, created=created, announce=existing is None)
    if created and room.config.persistent and not room.locked:
        return svc.persist(room)
    return None


def _welcome(
    svc: MucService,
    room: Room,
    occupant: Occupant,
    session: C2SSession,
    x: Element | None,
    *,
    created: bool,
    announce: bool,
) -> None:
    """§7.2.3: the occupants already there, then the joiner's own presence (to
    everyone when `announce`), then history and subject, to the joining session."""
    joiner = session.full
    for other in list(room.occupants.values()):
        if other is not occupant:
            el = svc.occupant_presence(room, other, with_jid=room.sees_jids(occupant))
            svc.router.presence_to((joiner,), _serialize(el))
    codes = [v.SELF]
    if room.config.non_anonymous:
        codes.append(v.NON_ANONYMOUS)
    if room.config.archive and svc.archive is not None:
        codes.append(v.LOGGED)
    if created:
        codes.append(v.CREATED)
    if announce:
        svc.broadcast_presence(room, occupant, self_codes=tuple(codes), only_self=(joiner,))
    else:
        el = svc.occupant_presence(room, occupant, with_jid=True, codes=codes)
        svc.router.presence_to((joiner,), _serialize(el))
    if not created:
        _send_history(svc, room, session, x)
    _send_subject(svc, room, joiner)


def _send_history(svc: MucService, room: Room, session: C2SSession, x: Element | None) -> None:
    """§7.2.15: what the joiner asked for (maxchars, maxstanzas, seconds, since),
    never more than the room's history length."""
    limit = room.config.history_length
    max_stanzas: int | None = limit
    max_chars: int | None = None
    since: float | None = None
    history = x.find("history") if x is not None else None
    if history is not None:
        max_stanzas = min(limit, _number(history.get("maxstanzas"), limit))
        if history.get("maxchars") is not None:
            max_chars = _number(history.get("maxchars"), 0)
        if history.get("seconds") is not None:
            since = svc.now() - _number(history.get("seconds"), 0)
        stamp = history.get("since")
        if stamp:
            try:
                when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=datetime.UTC)
                since = max(since or 0.0, when.timestamp())
            except ValueError:
                pass  # not a date: no limit by date (the join itself went through)
    for entry in room.history.select(max_stanzas=max_stanzas, max_chars=max_chars, since=since):
        msg = entry.stanza.copy()
        msg.sub("delay", ns.DELAY, {"from": room.jid, "stamp": entry.stamp})
        svc.deliver(session.full, msg)


def _number(text: str | None, default: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return max(value, 0)


def _send_subject(svc: MucService, room: Room, full: str) -> None:
    """§7.2.16: the subject, always last (empty when none is set)."""
    sender = f"{room.jid}/{room.subject_nick}" if room.subject_nick else room.jid
    msg = Element("message", ns.CLIENT, {"from": sender, "type": "groupchat", "id": "subject"})
    msg.sub("subject", text=room.subject)
    svc.deliver(full, msg)


def history_entry(
    svc: MucService, stanza: Element, sender: str, stanza_id: str, size: int
) -> HistoryEntry:
    when = svc.now()
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return HistoryEntry(stanza, stamp[:-4] + "Z", when, size, sender, stanza_id)


def change_nick(
    svc: MucService,
    room: Room,
    occupant: Occupant,
    session: C2SSession,
    stanza: Element,
    nick: str,
    key: str,
) -> Pending:
    """§7.6: unavailable with 303 and the new nick, then available under it."""
    old_key = room.by_full[session.full]
    taken = room.occupants.get(key)
    if taken is not None and taken is not occupant:
        raise StanzaError(E.CONFLICT, "that nickname is in use")
    if room.reserved.get(key, occupant.bare) != occupant.bare:
        raise StanzaError(E.CONFLICT, "that nickname is registered by someone else")  # §7.10
    svc.broadcast_presence(
        room,
        occupant,
        codes=(v.NICK_CHANGED,),
        self_codes=(v.SELF,),
        unavailable=True,
        new_nick=nick,
        role=occupant.role,
    )
    room.rename(old_key, key, nick)
    occupant.sessions[session.full] = stanza
    svc.broadcast_presence(room, occupant, self_codes=(v.SELF,))
    return None


def leave(
    svc: MucService,
    room: Room,
    full: str,
    *,
    codes: tuple[str, ...] = (),
    actor: str | None = None,
    reason: str | None = None,
    leaving: Element | None = None,
) -> None:
    """One session leaves (§7.14), with the status of its `leaving` presence; its
    nick goes when it was the last session under it."""
    occupant = room.occupant_of(full)
    if occupant is None:
        return
    room.remove_session(full)
    svc.registry.left(full, room.jid)
    if occupant.sessions:
        el = svc.occupant_presence(
            room,
            occupant,
            with_jid=True,
            codes=(v.SELF, *codes),
            unavailable=True,
            status_from=leaving,
        )
        svc.router.presence_to((full,), _serialize(el))
    else:
        # the occupant is gone: everyone hears it, the session itself with 110
        occupant.sessions[full] = Element("presence", ns.CLIENT)
        svc.broadcast_presence(
            room,
            occupant,
            codes=codes,
            self_codes=(v.SELF,),
            unavailable=True,
            actor=actor,
            reason=reason,
            status_from=leaving,
        )
        occupant.sessions.clear()
    svc.drop_if_empty(room)


def remove_occupant(
    svc: MucService,
    room: Room,
    occupant: Occupant,
    code: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    affiliation: str | None = None,
) -> None:
    """A kick, ban or membership loss (§8.2, §9.1, §9.5): every session of the
    occupant leaves with `code`; everyone hears it."""
    key = room.by_full[next(iter(occupant.sessions))]
    fulls = list(occupant.sessions)
    room.remove_occupant(key)
    for full in fulls:
        svc.registry.left(full, room.jid)
    svc.broadcast_presence(
        room,
        occupant,
        codes=(code,),
        self_codes=(v.SELF,),
        unavailable=True,
        actor=actor,
        reason=reason,
        affiliation=affiliation,
    )
    svc.drop_if_empty(room)


def session_closed(svc: MucService, full: str) -> None:
    """The session ended: it leaves every room it was in."""
    for room_jid in svc.registry.rooms_of(full):
        room = svc.registry.get(room_jid)
        if room is not None:
            leave(svc, room, full)


def moderators(room: Room) -> list[Occupant]:
    return [o for o in room.occupants.values() if o.role == MODERATOR]


def _serialize(el: Element) -> str:
    from chatgate.xml.serialize import serialize

    return serialize(el)
