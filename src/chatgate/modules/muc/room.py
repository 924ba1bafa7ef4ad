"""One room's state (XEP-0045): configuration, affiliations, occupants, subject, history.

Owns: the rules of §5 (which role an affiliation gives, who may do what) and the
bounded in-memory history.  Must not: deliver, touch storage, or read the clock
(times are passed in).  `service.py` drives it and sends what it decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from chatgate.xml.element import Element

OWNER, ADMIN, MEMBER, OUTCAST, NONE = "owner", "admin", "member", "outcast", "none"
MODERATOR, PARTICIPANT, VISITOR = "moderator", "participant", "visitor"
#: the key of the registered nicks in a stored room's configuration JSON
NICKS_STORED_AS = "registered_nicks"
AFFILIATIONS = (OWNER, ADMIN, MEMBER, OUTCAST, NONE)
ROLES = (MODERATOR, PARTICIPANT, VISITOR, NONE)
#: affiliations ranked (§5.2): a higher rank may act on a lower one
AFFILIATION_RANK = {OUTCAST: -1, NONE: 0, MEMBER: 1, ADMIN: 2, OWNER: 3}
ROLE_RANK = {NONE: 0, VISITOR: 1, PARTICIPANT: 2, MODERATOR: 3}
WHOIS = ("moderators", "anyone")
ALLOW_PM = ("anyone", "participants", "moderators", "none")


@dataclass
class RoomConfig:
    """What an owner configures (§10.2, the muc#roomconfig form); stored as JSON for
    persistent rooms.  `as_dict`/`from_dict` ignore unknown keys, so a stored room
    survives a field being added or dropped."""

    name: str = ""
    description: str = ""
    language: str = ""
    public: bool = True
    persistent: bool = False
    members_only: bool = False
    moderated: bool = False
    password: str = ""
    max_occupants: int = 0  # 0: the service's limit
    whois: str = "moderators"  # semi-anonymous
    change_subject: bool = False
    allow_invites: bool = False
    allow_pm: str = "anyone"
    history_length: int = 20
    archive: bool = True  # muc#roomconfig_enablelogging

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomConfig:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"


@dataclass
class Occupant:
    """A nick in the room: one user (bare JID) with one or more sessions (§7.2.1
    allows a user several connections under one nick)."""

    nick: str
    bare: str
    role: str
    #: full JID -> the presence that session sent (the newest is the occupant's)
    sessions: dict[str, Element] = field(default_factory=dict)
    #: when it last asked for voice (`voice.py`), for the rate limit
    voice_requested: float = float("-inf")

    @property
    def presence(self) -> Element:
        return next(reversed(self.sessions.values()))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A groupchat message as broadcast (from room/nick, its stanza-id), the time it
    was received (RFC 3339 for `<delay/>`, and epoch seconds), its size in bytes and
    its sender's real bare JID (XEP-0425 needs who sent it)."""

    stanza: Element
    stamp: str
    when: float
    size: int
    sender: str
    stanza_id: str


class HistoryBudget:
    """Bytes of history all the rooms of this process hold together, at most: with
    thousands of rooms, each room's own bound alone would still add up to more
    memory than a server should give to history."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class History:
    """The last messages of a room, bounded by count and by serialized bytes (the
    oldest go first), and by the shared `HistoryBudget`: when all rooms together
    hold the budget, a room makes room from its own oldest messages, and keeps
    nothing new if it has none left.  In memory only: a restart forgets it (the
    archive keeps what MAM keeps)."""

    def __init__(self, max_count: int, max_bytes: int, budget: HistoryBudget | None = None) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.budget = budget if budget is not None else HistoryBudget(max_bytes)
        self.entries: deque[HistoryEntry] = deque()
        self.bytes = 0

    def add(self, entry: HistoryEntry) -> None:
        if self.max_count <= 0 or entry.size > self.max_bytes:
            return
        self.entries.append(entry)
        self._count(entry.size)
        while self.entries and (
            len(self.entries) > self.max_count
            or self.bytes > self.max_bytes
            or self.budget.used > self.budget.limit
        ):
            self._count(-self.entries.popleft().size)

    def _count(self, size: int) -> None:
        self.bytes += size
        self.budget.used += size

    def clear(self) -> None:
        """Forget everything (the room is gone), giving its bytes back to the budget."""
        self._count(-self.bytes)
        self.entries.clear()

    def remove(self, stanza_id: str) -> HistoryEntry | None:
        for entry in self.entries:
            if entry.stanza_id == stanza_id:
                self.entries.remove(entry)
                self._count(-entry.size)
                return entry
        return None

    def find(self, stanza_id: str) -> HistoryEntry | None:
        for entry in self.entries:
            if entry.stanza_id == stanza_id:
                return entry
        return None

    def select(
        self,
        *,
        max_stanzas: int | None,
        max_chars: int | None,
        since: float | None,
    ) -> list[HistoryEntry]:
        """§7.2.15: the newest entries within every limit given, oldest first."""
        chosen: list[HistoryEntry] = []
        chars = 0
        for entry in reversed(self.entries):
            if max_stanzas is not None and len(chosen) >= max_stanzas:
                break
            if since is not None and entry.when < since:
                break
            if max_chars is not None:
                chars += entry.size
                if chars > max_chars:
                    break
            chosen.append(entry)
        chosen.reverse()
        return chosen


class Room:
    """A room's state.  `key` is how nicks are compared (`nick_key`), so 'Alice' and
    'alice' cannot both be in a room."""

    def __init__(
        self,
        jid: str,
        config: RoomConfig,
        *,
        history: History,
        secret: bytes | None = None,
        affiliations: dict[str, str] | None = None,
        subject: str = "",
        subject_nick: str = "",
    ) -> None:
        self.jid = jid
        self.config = config
        #: bare JID -> owner/admin/member/outcast (absent: none)
        self.affiliations: dict[str, str] = dict(affiliations or {})
        #: nick key -> occupant
        self.occupants: dict[str, Occupant] = {}
        #: full JID -> nick key
        self.by_full: dict[str, str] = {}
        #: full JID -> when (monotonic) it entered the room: a room handed over tells
        #: an end heard before the session came back from one heard after it
        self.entered: dict[str, float] = {}
        self.subject = subject
        self.subject_nick = subject_nick
        self.history = history
        #: XEP-0421: occupant ids are an HMAC of the real bare JID with this key
        self.secret = secret if secret is not None else os.urandom(16)
        #: §10.1.1: a new room stays locked until its owner configures it
        self.locked = False
        self.destroyed = False
        #: §7.10 registered nicks: bare JID -> nick, and nick key -> bare JID (who
        #: holds the reservation); only affiliated users hold one
        self.nicks: dict[str, str] = {}
        self.reserved: dict[str, str] = {}

    # ------------------------------------------------------------ who is who

    def affiliation(self, bare: str) -> str:
        return self.affiliations.get(bare, NONE)

    def set_affiliation(self, bare: str, affiliation: str) -> None:
        if affiliation == NONE:
            self.affiliations.pop(bare, None)
        else:
            self.affiliations[bare] = affiliation
        if affiliation in (NONE, OUTCAST):
            self.unreserve(bare)  # a reserved nick goes with the affiliation

    def stored_config(self) -> dict[str, Any]:
        """The configuration JSON a persistent room is stored with: its `RoomConfig`
        and its registered nicks (kept with the room, no table of their own;
        `register.load_nicks` reads them back)."""
        config = dict(self.config.as_dict())
        if self.nicks:
            config[NICKS_STORED_AS] = dict(self.nicks)
        return config

    def reserve(self, bare: str, nick: str, key: str) -> None:
        """`bare` registered `nick` (compared as `key`); its earlier one goes."""
        self.unreserve(bare)
        self.nicks[bare] = nick
        self.reserved[key] = bare

    def unreserve(self, bare: str) -> None:
        if self.nicks.pop(bare, None) is not None:
            for key, holder in list(self.reserved.items()):
                if holder == bare:
                    del self.reserved[key]

    def owners(self) -> list[str]:
        return [j for j, a in self.affiliations.items() if a == OWNER]

    def default_role(self, affiliation: str) -> str:
        """§5.1.2: the role an affiliation gives on entering."""
        if affiliation in (OWNER, ADMIN):
            return MODERATOR
        if self.config.moderated and affiliation == NONE:
            return VISITOR
        return PARTICIPANT

    def occupant_of(self, full: str) -> Occupant | None:
        key = self.by_full.get(full)
        return None if key is None else self.occupants.get(key)

    def occupants_of(self, bare: str) -> list[Occupant]:
        return [o for o in self.occupants.values() if o.bare == bare]

    def occupant_id(self, bare: str) -> str:
        digest = hmac.new(self.secret, bare.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest[:18]).decode()

    def sees_jids(self, occupant: Occupant) -> bool:
        """§7.2.4: who learns occupants' real JIDs."""
        return self.config.non_anonymous or occupant.role == MODERATOR

    def full_jids(self) -> list[str]:
        return list(self.by_full)

    def is_empty(self) -> bool:
        return not self.occupants

    # ------------------------------------------------------------ occupants

    def add_session(self, key: str, occupant: Occupant, full: str, presence: Element) -> None:
        self.occupants[key] = occupant
        occupant.sessions.pop(full, None)
        occupant.sessions[full] = presence
        if full not in self.by_full:
            self.entered[full] = time.monotonic()
        self.by_full[full] = key

    def remove_session(self, full: str) -> Occupant | None:
        """Forget one session; returns its occupant (its `sessions` may still hold
        others, then the nick stays)."""
        key = self.by_full.pop(full, None)
        self.entered.pop(full, None)
        if key is None:
            return None
        occupant = self.occupants[key]
        occupant.sessions.pop(full, None)
        if not occupant.sessions:
            del self.occupants[key]
        return occupant

    def remove_occupant(self, key: str) -> Occupant | None:
        occupant = self.occupants.pop(key, None)
        if occupant is not None:
            for full in occupant.sessions:
                self.by_full.pop(full, None)
        return occupant

    def rename(self, old_key: str, new_key: str, new_nick: str) -> Occupant:
        occupant = self.occupants.pop(old_key)
        occupant.nick = new_nick
        self.occupants[new_key] = occupant
        for full in occupant.sessions:
            self.by_full[full] = new_key
        return occupant
