"""The `[modules.muc]` options: where the service lives and every bound a peer can fill."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MucOptions(BaseModel):
    """XEP-0045 multi-user chat, one service per served virtual host."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Run the service (XEP-0479 Advanced IM needs it)."""

    domain_prefix: str = Field("conference", min_length=1, max_length=63, pattern=r"^[a-z0-9-]+$")
    """The service of host H is on `PREFIX.H` (e.g. conference.example.org)."""

    name: str = "Chatrooms"
    """The service's name in disco (identity and the host's disco#items)."""

    max_rooms: int = Field(10_000, ge=1)
    """Rooms one service holds at once (persistent and temporary), per node in a
    cluster; creating one more is refused with `resource-constraint`."""

    max_occupants: int = Field(1_000, ge=1)
    """Occupants (nicks) of one room at most; an owner's `maxusers` may lower it."""

    max_sessions_per_occupant: int = Field(10, ge=1)
    """Sessions of one user under one nick at most."""

    max_rooms_per_session: int = Field(200, ge=1)
    """Rooms one client session may be in at once (a join flood is refused with
    `resource-constraint` after that)."""

    max_nick_length: int = Field(64, ge=1, le=1023)
    """Nicknames longer than this (characters, after PRECIS) get `jid-malformed`."""

    max_presence_bytes: int = Field(16 * 1024, ge=1024)
    """Bytes of an occupant's presence at most (the room keeps it while the occupant
    stays): larger ones get `policy-violation`."""

    max_affiliations: int = Field(5_000, ge=1)
    """Affiliations (owner/admin/member/outcast) one room keeps at most."""

    history_messages: int = Field(50, ge=0)
    """Messages each room keeps in memory for joiners (an owner's history length may
    lower it); 0 keeps none."""

    history_bytes: int = Field(256 * 1024, ge=0)
    """Bytes of history each room keeps at most (serialized stanzas)."""

    history_total_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """Bytes of history all rooms of the process keep together at most (per node in
    a cluster); when full, a room keeps new messages only by dropping its own oldest."""

    default_history: int = Field(20, ge=0)
    """History messages a joiner gets when it does not ask for a number."""

    lock_new_rooms: bool = True
    """XEP-0045 §10.1: a new room is locked (others get `item-not-found`) until its
    owner configures it or accepts the instant room; off, new rooms open at once."""

    persistent_by_default: bool = False
    """New rooms start persistent (else temporary, destroyed when the last occupant
    leaves)."""

    public_by_default: bool = True
    """New rooms are listed in the service's disco#items."""

    max_subject_length: int = Field(1024, ge=0)
    """Characters of a room subject at most (`not-acceptable` beyond)."""

    room_list_max: int = Field(500, ge=1, le=10_000)
    """Rooms one answer of the service's room list (disco#items) names at most; a
    client pages through the rest with RSM (XEP-0059 `<max/>` above this is
    lowered to it)."""

    max_config_text: int = Field(1024, ge=1)
    """Characters of a configured name, description or password at most."""
