"""The room configuration form (XEP-0045 §10.2, muc#roomconfig) and the room
information form in disco#info (§15.5.4, muc#roominfo).  Pure functions.

A submitted form is read field by field; any value that is not what the field
allows makes the whole submission `not-acceptable` (nothing is half-applied).
"""

from __future__ import annotations

from dataclasses import replace

from chatgate.modules.dataforms import FormField, Submission, build_form
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.room import ALLOW_PM, WHOIS, Room, RoomConfig
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element

_TRUE = ("1", "true")
_FALSE = ("0", "false")


def _flag(value: bool) -> tuple[str, ...]:
    return ("1" if value else "0",)


def config_form(room: Room, max_occupants: int) -> Element:
    """§10.2: the form an owner fills in, with the room's current values."""
    c = room.config
    fields = [
        FormField("muc#roomconfig_roomname", label="Name", values=(c.name,)),
        FormField("muc#roomconfig_roomdesc", label="Description", values=(c.description,)),
        FormField("muc#roomconfig_lang", label="Language", values=(c.language,)),
        FormField(
            "muc#roomconfig_persistentroom", "boolean", "Persistent", values=_flag(c.persistent)
        ),
        FormField(
            "muc#roomconfig_publicroom", "boolean", "Listed publicly", values=_flag(c.public)
        ),
        FormField(
            "muc#roomconfig_membersonly", "boolean", "Members only", values=_flag(c.members_only)
        ),
        FormField(
            "muc#roomconfig_moderatedroom", "boolean", "Moderated", values=_flag(c.moderated)
        ),
        FormField(
            "muc#roomconfig_passwordprotectedroom",
            "boolean",
            "Password protected",
            values=_flag(bool(c.password)),
        ),
        FormField("muc#roomconfig_roomsecret", "text-private", "Password", values=(c.password,)),
        FormField(
            "muc#roomconfig_maxusers",
            "list-single",  # XEP-0045 §15.5.3
            f"Maximum occupants (at most {max_occupants})",
            values=(str(c.max_occupants) if c.max_occupants else "none",),
            options=_maxusers_options(c.max_occupants, max_occupants),
        ),
        FormField(
            "muc#roomconfig_whois", "list-single", "Who may see real JIDs", values=(c.whois,)
        ),
        FormField(
            "muc#roomconfig_changesubject",
            "boolean",
            "Occupants may change the subject",
            values=_flag(c.change_subject),
        ),
        FormField(
            "muc#roomconfig_allowinvites",
            "boolean",
            "Occupants may invite",
            values=_flag(c.allow_invites),
        ),
        FormField(
            "muc#roomconfig_allowpm",
            "list-single",
            "Who may send private messages",
            values=(c.allow_pm,),
        ),
        FormField(
            "muc#roomconfig_enablelogging", "boolean", "Archive messages", values=_flag(c.archive)
        ),
        FormField(
            "muc#maxhistoryfetch",
            "text-single",
            "History messages for joiners",
            values=(str(c.history_length),),
        ),
    ]
    form = build_form(v.ROOMCONFIG, fields, title=f"Configuration of {room.jid}")
    # list-single fields need their options (XEP-0004 §3.3)
    for el in form.find_all("field"):
        choices = {"muc#roomconfig_whois": WHOIS, "muc#roomconfig_allowpm": ALLOW_PM}.get(
            el.get("var") or ""
        )
        for choice in choices or ():
            el.sub("option", attrs={"label": choice}).sub("value", text=choice)
    return form


def _maxusers_options(current: int, limit: int) -> tuple[str, ...]:
    """The usual sizes up to the service's limit, the room's own, and 'none' (the
    service's limit, XEP-0045 example 164)."""
    sizes = {n for n in (5, 10, 20, 30, 50, 100, 200, 500, 1000) if n <= limit}
    if current:
        sizes.add(current)
    return (*(str(n) for n in sorted(sizes)), "none")


def _bool(values: list[str], var: str) -> bool:
    value = values[0].strip().lower() if values else ""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, f"{var} must be a boolean")


def _text(values: list[str], var: str, limit: int) -> str:
    value = values[0] if values else ""
    if len(values) > 1 or len(value) > limit:
        raise StanzaError(
            StanzaErrorCondition.NOT_ACCEPTABLE, f"{var}: one value of at most {limit} characters"
        )
    return value


def _int(values: list[str], var: str, low: int, high: int) -> int:
    try:
        value = int(values[0]) if values else -1
    except ValueError:
        value = -1
    if not low <= value <= high:
        raise StanzaError(
            StanzaErrorCondition.NOT_ACCEPTABLE, f"{var} must be a number from {low} to {high}"
        )
    return value


def _choice(values: list[str], var: str, choices: tuple[str, ...]) -> str:
    value = values[0] if values else ""
    if value not in choices:
        raise StanzaError(
            StanzaErrorCondition.NOT_ACCEPTABLE, f"{var} must be one of {', '.join(choices)}"
        )
    return value


def apply_submission(
    current: RoomConfig,
    form: Submission,
    *,
    max_occupants: int,
    max_history: int,
    max_text: int,
) -> RoomConfig:
    """The configuration a submitted form asks for: fields left out keep their value
    (§10.2 lets a client send only what it changes); unknown fields are ignored.
    Raises StanzaError(not-acceptable) for a value the field does not allow, and
    bad-request for another FORM_TYPE."""
    if form.form_type not in (None, v.ROOMCONFIG):
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "not a muc#roomconfig form")
    values = form.values
    changes: dict[str, object] = {}
    booleans = {
        "muc#roomconfig_persistentroom": "persistent",
        "muc#roomconfig_publicroom": "public",
        "muc#roomconfig_membersonly": "members_only",
        "muc#roomconfig_moderatedroom": "moderated",
        "muc#roomconfig_changesubject": "change_subject",
        "muc#roomconfig_allowinvites": "allow_invites",
        "muc#roomconfig_enablelogging": "archive",
    }
    for var, attr in booleans.items():
        if var in values:
            changes[attr] = _bool(values[var], var)
    texts = {
        "muc#roomconfig_roomname": "name",
        "muc#roomconfig_roomdesc": "description",
        "muc#roomconfig_lang": "language",
        "muc#roomconfig_roomsecret": "password",
    }
    for var, attr in texts.items():
        if var in values:
            changes[attr] = _text(values[var], var, max_text)
    if "muc#roomconfig_maxusers" in values:
        var = "muc#roomconfig_maxusers"
        raw = values[var]
        # 'none' (XEP-0045 example 164's option) means the service's limit
        changes["max_occupants"] = 0 if raw == ["none"] else _int(raw, var, 1, max_occupants)
    if "muc#roomconfig_whois" in values:
        changes["whois"] = _choice(values["muc#roomconfig_whois"], "muc#roomconfig_whois", WHOIS)
    if "muc#roomconfig_allowpm" in values:
        changes["allow_pm"] = _choice(
            values["muc#roomconfig_allowpm"], "muc#roomconfig_allowpm", ALLOW_PM
        )
    for var in ("muc#maxhistoryfetch", "muc#roomconfig_historylength"):
        if var in values:
            changes["history_length"] = _int(values[var], var, 0, max_history)
    config = replace(current, **changes)  # type: ignore[arg-type]
    protected = values.get("muc#roomconfig_passwordprotectedroom")
    if protected is not None and not _bool(protected, "muc#roomconfig_passwordprotectedroom"):
        config = replace(config, password="")
    elif protected is not None and not config.password:
        raise StanzaError(
            StanzaErrorCondition.NOT_ACCEPTABLE, "a password-protected room needs a password"
        )
    return config


def features(room: Room, *, archive: bool) -> list[str]:
    """§15.5.4: the room's disco#info features."""
    c = room.config
    found = [
        v.MUC,
        "muc_public" if c.public else "muc_hidden",
        "muc_persistent" if c.persistent else "muc_temporary",
        "muc_membersonly" if c.members_only else "muc_open",
        "muc_moderated" if c.moderated else "muc_unmoderated",
        "muc_passwordprotected" if c.password else "muc_unsecured",
        "muc_nonanonymous" if c.non_anonymous else "muc_semianonymous",
        v.STANZA_ID,
        v.OCCUPANT_ID,
        v.MODERATE,
        v.MODERATE_0,  # the legacy <apply-to/> request is accepted too
        v.SELF_PING,
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:register",  # §7.10 registered nicknames
    ]
    if archive and c.archive:
        found.append(v.MAM)
    return found


def roominfo(room: Room) -> Element:
    """§15.5.4: the muc#roominfo extension of a room's disco#info (XEP-0128)."""
    c = room.config
    fields = [
        FormField("muc#roominfo_description", label="Description", values=(c.description,)),
        FormField("muc#roomconfig_roomname", label="Name", values=(c.name,)),
        FormField("muc#roominfo_occupants", label="Occupants", values=(str(len(room.occupants)),)),
        FormField("muc#roominfo_subject", label="Subject", values=(room.subject,)),
        FormField("muc#roominfo_lang", label="Language", values=(c.language,)),
        FormField(
            "muc#roomconfig_changesubject",
            "boolean",
            "Occupants may change the subject",
            values=_flag(c.change_subject),
        ),
        FormField("muc#maxhistoryfetch", label="History", values=(str(c.history_length),)),
    ]
    return build_form(v.ROOMINFO, fields, form="result")
