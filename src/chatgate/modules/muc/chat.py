"""Messages in rooms (XEP-0045 §7.4-§7.9): groupchat and subject changes, private
messages, mediated invitations and declines, IQs between occupants and self-ping
(XEP-0410), and moderators retracting messages (XEP-0425).

A groupchat message goes out from room/nick with the room's own XEP-0359
stanza-id and the sender's XEP-0421 occupant-id; whatever a client put there
under those namespaces is removed first (nobody can forge them).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from chatgate.jid import JID, InvalidJID
from chatgate.modules.dataforms import find_form
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.occupancy import history_entry, nick_key
from chatgate.modules.muc.room import MEMBER, MODERATOR, NONE, PARTICIPANT, ROLE_RANK, VISITOR, Room
from chatgate.modules.muc.voice import voice_form
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.modules.muc.service import MucService, Pending

E = StanzaErrorCondition
#: invitations one message may carry (§7.8.2 allows several)
MAX_INVITES = 10


def room_or_error(svc: MucService, room_jid: str, session: C2SSession) -> Room:
    """The room, or item-not-found; a locked room exists only for those in it (its
    owner, until it is configured: §10.1.1)."""
    room = svc.registry.get(room_jid)
    if room is None or (room.locked and room.occupant_of(session.full) is None):
        raise StanzaError(E.ITEM_NOT_FOUND, "no such room")
    return room


def room_message(svc: MucService, session: C2SSession, stanza: Element, room_jid: str) -> Pending:
    mtype = stanza.get("type", "normal")
    if mtype == "error":
        return None
    room = svc.registry.get(room_jid)
    if room is None:
        raise StanzaError(E.ITEM_NOT_FOUND, "no such room")
    x = stanza.find("x", v.MUC_USER)
    if mtype != "groupchat":
        if x is not None and x.find("decline") is not None:
            return decline(svc, session, room, x)
        if x is not None and x.find("invite") is not None:
            return invite(svc, session, room, x)
        form = find_form(stanza)
        if form is not None:
            return voice_form(svc, session, room, form)
        raise StanzaError(E.BAD_REQUEST, "messages to a room are of type groupchat")
    occupant = room.occupant_of(session.full)
    if occupant is None:
        raise StanzaError(E.NOT_ACCEPTABLE, "only occupants may speak in the room")  # §7.4
    if occupant.role == VISITOR:
        raise StanzaError(E.FORBIDDEN, "visitors have no voice in this moderated room")  # §7.4
    subject = stanza.find("subject")
    if subject is not None and stanza.find("body") is None:
        # §8.1: a subject change
        if occupant.role != MODERATOR and not room.config.change_subject:
            raise StanzaError(E.FORBIDDEN, "only moderators may change the subject")
        if len(subject.text) > svc.options.max_subject_length:
            raise StanzaError(E.NOT_ACCEPTABLE, "the subject is too long")
        room.subject = subject.text
        room.subject_nick = occupant.nick
    out = Element(
        "message", ns.CLIENT, {"from": f"{room.jid}/{occupant.nick}", "type": "groupchat"}
    )
    if "id" in stanza.attrs:
        out.attrs["id"] = stanza.attrs["id"]
    for child in stanza.children:
        if isinstance(child, Element):
            if child.ns == v.STANZA_ID and child.get("by") == room.jid:
                continue
            if child.ns in (v.OCCUPANT_ID, v.MUC_USER):
                continue
        out.append(child)
    out.sub("occupant-id", v.OCCUPANT_ID, {"id": room.occupant_id(occupant.bare)})
    has_body = out.find("body") is not None
    archive = svc.archive if room.config.archive and has_body else None
    stanza_id = archive.new_id() if archive is not None else os.urandom(12).hex()
    out.sub("stanza-id", v.STANZA_ID, {"id": stanza_id, "by": room.jid})
    if has_body:
        size = len(serialize(out).encode())
        room.history.add(history_entry(svc, out.copy(), occupant.bare, stanza_id, size))
    if archive is not None:
        archive.append(room.jid, out.copy(), stanza_id, occupant.nick, occupant.bare)
    svc.to_everyone(room, out)
    return svc.persist(room) if subject is not None and room.config.persistent else None


def private_message(
    svc: MucService, session: C2SSession, stanza: Element, room_jid: str, nick: str
) -> Pending:
    """§7.5: a message to room/nick goes to that occupant's sessions, from room/sender."""
    mtype = stanza.get("type", "normal")
    if mtype == "error":
        return None
    room = room_or_error(svc, room_jid, session)
    sender = room.occupant_of(session.full)
    if sender is None:
        raise StanzaError(E.NOT_ACCEPTABLE, "only occupants may send private messages")
    if mtype == "groupchat":
        raise StanzaError(E.BAD_REQUEST, "a private message is not groupchat")  # §7.5
    allowed = room.config.allow_pm
    if (
        allowed == "none"
        or (allowed == "moderators" and sender.role != MODERATOR)
        or (allowed == "participants" and ROLE_RANK[sender.role] < ROLE_RANK[PARTICIPANT])
    ):
        raise StanzaError(E.FORBIDDEN, "private messages are not allowed here")
    target = room.occupants.get(nick_key(nick, svc.options.max_nick_length))
    if target is None:
        raise StanzaError(E.ITEM_NOT_FOUND, "no such occupant")  # §7.5
    out = Element(
        "message", ns.CLIENT, {"from": f"{room.jid}/{sender.nick}", "type": mtype or "normal"}
    )
    if "id" in stanza.attrs:
        out.attrs["id"] = stanza.attrs["id"]
    for child in stanza.children:
        if not (isinstance(child, Element) and child.ns in (v.MUC_USER, v.OCCUPANT_ID)):
            out.append(child)
    out.sub("x", v.MUC_USER)
    out.sub("occupant-id", v.OCCUPANT_ID, {"id": room.occupant_id(sender.bare)})
    for full in list(target.sessions):
        svc.deliver(full, out)
    return None


def occupant_iq(
    svc: MucService, session: C2SSession, stanza: Element, room_jid: str, nick: str
) -> Pending:
    """An IQ to room/nick: a self-ping (XEP-0410) is answered here; others go to the
    occupant's newest session from room/sender (§7.2.4 keeps real JIDs hidden), and
    its answer back to the asker."""
    itype = stanza.get("type")
    room = room_or_error(svc, room_jid, session)
    sender = room.occupant_of(session.full)
    if sender is None:
        if itype in ("result", "error"):
            return None
        raise StanzaError(E.NOT_ACCEPTABLE, "you are not in this room")  # XEP-0410 §3
    key = nick_key(nick, svc.options.max_nick_length)
    target = room.occupants.get(key)
    if target is None:
        if itype in ("result", "error"):
            return None
        raise StanzaError(E.ITEM_NOT_FOUND, "no such occupant")
    if target is sender and itype == "get" and stanza.find("ping", "urn:xmpp:ping") is not None:
        reply = iq_result(stanza)  # XEP-0410: the service answers for the occupant
        reply.attrs["to"] = session.full
        session.send(reply)
        return None
    out = Element("iq", ns.CLIENT, dict(stanza.attrs))
    out.attrs["from"] = f"{room.jid}/{sender.nick}"
    out.children = list(stanza.children)
    svc.deliver(next(reversed(target.sessions)), out)
    return None


def invite(svc: MucService, session: C2SSession, room: Room, x: Element) -> Pending:
    """§7.8.2: the room invites on behalf of an occupant; in a members-only room the
    invitee becomes a member (§9.3) when the inviter may grant that."""
    inviter = room.occupant_of(session.full)
    if inviter is None:
        raise StanzaError(E.NOT_ACCEPTABLE, "only occupants may invite")
    affiliation = room.affiliation(inviter.bare)
    privileged = affiliation in ("owner", "admin")
    if room.config.members_only and not (privileged or room.config.allow_invites):
        raise StanzaError(E.FORBIDDEN, "only admins may invite to this room")
    invites = x.find_all("invite")
    if len(invites) > MAX_INVITES:
        raise StanzaError(E.POLICY_VIOLATION, f"at most {MAX_INVITES} invitations at once")
    targets = []
    for el in invites:
        try:
            target = JID.parse(el.get("to") or "")
        except InvalidJID:
            raise StanzaError(E.JID_MALFORMED, "an invitation needs a valid 'to'") from None
        if not target.local or target.domain not in svc.router.domains:
            raise StanzaError(E.REMOTE_SERVER_NOT_FOUND, f"cannot reach {target.domain}")
        targets.append((target.bare, el.find("reason")))
    changed = False
    pendings = []
    for target, reason in targets:
        bare = str(target)
        if room.config.members_only and room.affiliation(bare) == NONE:
            if len(room.affiliations) >= svc.options.max_affiliations:
                raise StanzaError(E.RESOURCE_CONSTRAINT, "the room has too many affiliations")
            room.set_affiliation(bare, MEMBER)
            changed = True
        msg = Element("message", ns.CLIENT, {"from": room.jid, "to": bare})
        ux = msg.sub("x", v.MUC_USER)
        inv = ux.sub("invite", attrs={"from": session.bare})
        if reason is not None:
            inv.sub("reason", text=reason.text)
        if room.config.password:
            ux.sub("password", text=room.config.password)
        msg.sub(
            "body",
            text=f"{session.bare} invites you to the room {room.jid}"
            + (f": {reason.text}" if reason is not None and reason.text else ""),
        )
        pending = svc.router.deliver_message_to_bare(msg, target)
        if pending is not None:
            pendings.append(pending)
    if changed and room.config.persistent:
        persisted = svc.persist(room)
        if persisted is not None:
            pendings.append(persisted)
    if not pendings:
        return None

    async def wait() -> None:
        for pending in pendings:
            await pending

    return wait()


def decline(svc: MucService, session: C2SSession, room: Room, x: Element) -> Pending:
    """§7.8.2: an invitee declines; the room tells the inviter."""
    el = x.find("decline")
    assert el is not None
    try:
        inviter = JID.parse(el.get("to") or "")
    except InvalidJID:
        raise StanzaError(E.JID_MALFORMED, "a decline needs a valid 'to'") from None
    if not inviter.local or inviter.domain not in svc.router.domains:
        raise StanzaError(E.REMOTE_SERVER_NOT_FOUND, f"cannot reach {inviter.domain}")
    msg = Element("message", ns.CLIENT, {"from": room.jid, "to": str(inviter.bare)})
    out = msg.sub("x", v.MUC_USER).sub("decline", attrs={"from": session.bare})
    reason = el.find("reason")
    if reason is not None:
        out.sub("reason", text=reason.text)
    return svc.router.deliver_message_to_bare(msg, inviter.bare)


def moderate(
    svc: MucService, session: C2SSession, iq: Element, room: Room, request: Element
) -> Pending:
    """XEP-0425 0.3: `<moderate id=STANZA-ID><retract/><reason/></moderate>`."""
    stanza_id = request.get("id") or ""
    reason = _checked(room, session, request, v.RETRACT, stanza_id, "moderate")
    return _moderate(svc, session, iq, room, stanza_id, reason)


def moderate_legacy(
    svc: MucService, session: C2SSession, iq: Element, room: Room, apply_to: Element
) -> Pending:
    """XEP-0425 0.2, which current Prosody still accepts and clients in the field
    still send: `<apply-to xmlns='urn:xmpp:fasten:0' id=STANZA-ID><moderate
    xmlns='urn:xmpp:message-moderate:0'><retract xmlns='urn:xmpp:message-retract:0'/>
    <reason/></moderate></apply-to>`. Any other fastening is not ours."""
    request = apply_to.find("moderate", v.MODERATE_0)
    if request is None:
        raise StanzaError(E.SERVICE_UNAVAILABLE, "only moderation is applied to messages here")
    stanza_id = apply_to.get("id") or ""
    reason = _checked(room, session, request, v.RETRACT_0, stanza_id, "apply-to")
    return _moderate(svc, session, iq, room, stanza_id, reason)


def _checked(
    room: Room,
    session: C2SSession,
    request: Element,
    retract_ns: str,
    stanza_id: str,
    carrier: str,
) -> str:
    """What both forms require, in order: a moderator, a `<retract/>` (in the form's
    namespace), a stanza-id (on `<carrier/>`); the reason's text ("" for none)."""
    moderator = room.occupant_of(session.full)
    if moderator is None or moderator.role != MODERATOR:
        raise StanzaError(E.FORBIDDEN, "only moderators may retract messages")
    if request.find("retract", retract_ns) is None:
        raise StanzaError(E.BAD_REQUEST, "only retraction is supported")
    if not stanza_id:
        raise StanzaError(E.BAD_REQUEST, f"<{carrier}/> needs the message's stanza-id")
    reason = request.find("reason")
    return reason.text if reason is not None else ""


def _moderate(
    svc: MucService,
    session: C2SSession,
    iq: Element,
    room: Room,
    stanza_id: str,
    reason_text: str,
) -> Pending:
    """A moderator retracts a groupchat message by its stanza-id, whichever form the
    request came in: everyone gets the retraction (both forms), the history forgets
    the message, the archive keeps a tombstone (both forms) in its place."""
    moderator = room.occupant_of(session.full)
    assert moderator is not None  # _checked
    by = f"{room.jid}/{moderator.nick}"
    occupant_id = room.occupant_id(moderator.bare)
    entry = room.history.remove(stanza_id)
    if svc.archive is None:
        if entry is None:
            raise StanzaError(E.ITEM_NOT_FOUND, "no such message")
        _retracted(svc, session, iq, room, stanza_id, by, occupant_id, reason_text)
        return None
    archive = svc.archive
    # XEP-0425 §5: the archive keeps a tombstone, from whoever sent the message
    tombstone = Element("message", ns.CLIENT, {"type": "groupchat", "id": stanza_id})
    tombstone.attrs["from"] = (
        entry.stanza.get("from") or room.jid if entry is not None else room.jid
    )
    stamp = history_entry(svc, tombstone, "", stanza_id, 0).stamp
    retracted = tombstone.sub("retracted", v.RETRACT, {"stamp": stamp})
    _moderated(retracted, v.MODERATE, by).sub("occupant-id", v.OCCUPANT_ID, {"id": occupant_id})
    if reason_text:
        retracted.sub("reason", text=reason_text)
    # 0.2 tombstone, what clients reading the archive with the legacy form look for
    legacy = _moderated(tombstone, v.MODERATE_0, by)
    legacy.sub("retracted", v.RETRACT_0, {"stamp": stamp})
    if reason_text:
        legacy.sub("reason", text=reason_text)

    async def in_archive() -> None:
        found = await archive.retract(room.jid, stanza_id, tombstone)
        if not found and entry is None:
            raise StanzaError(E.ITEM_NOT_FOUND, "no such message")
        _retracted(svc, session, iq, room, stanza_id, by, occupant_id, reason_text)

    return svc.guarded(session, iq, in_archive())


def _moderated(parent: Element, namespace: str, by: str) -> Element:
    return parent.sub("moderated", namespace, {"by": by})


def announcement(room_jid: str, stanza_id: str, by: str, occupant_id: str, reason: str) -> Element:
    """The retraction everyone in the room gets, in both forms at once (as current
    Prosody sends it): XEP-0425 0.3's `<retract xmlns='urn:xmpp:message-retract:1'>`
    and 0.2's `<apply-to xmlns='urn:xmpp:fasten:0'>` (XEP-0422), which slixmpp's
    itest and the Conversations/Gajim/converse.js versions still deployed read."""
    out = Element(
        "message", ns.CLIENT, {"from": room_jid, "type": "groupchat", "id": os.urandom(8).hex()}
    )
    retract = out.sub("retract", v.RETRACT, {"id": stanza_id})
    _moderated(retract, v.MODERATE, by).sub("occupant-id", v.OCCUPANT_ID, {"id": occupant_id})
    if reason:
        retract.sub("reason", text=reason)
    legacy = _moderated(out.sub("apply-to", v.FASTEN, {"id": stanza_id}), v.MODERATE_0, by)
    legacy.sub("retract", v.RETRACT_0)
    if reason:
        legacy.sub("reason", text=reason)
    return out


def _retracted(
    svc: MucService,
    session: C2SSession,
    iq: Element,
    room: Room,
    stanza_id: str,
    by: str,
    occupant_id: str,
    reason: str,
) -> None:
    svc.to_everyone(room, announcement(room.jid, stanza_id, by, occupant_id, reason))
    reply = iq_result(iq)
    reply.attrs["to"] = session.full
    session.send(reply)
