"""A live room as bytes, and back: what an old owner sends a node that joined and
now owns the room (`ownership.py`), so its occupants stay in without noticing.

Everything the room holds in memory goes: configuration, affiliations, the
occupant-id key, subject, lock, registered nicks, occupants (nick, real JID, role, each session's
full JID, last presence and how long it has been in, the time of its last voice
request) and the join history (each message as broadcast, with its time and sender).  JSON, with
stanzas as XML text; the size is bounded by the room's own bounds (occupants,
presence bytes, history bytes).

Must not: deliver, touch storage or the registry (the caller does).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from chatgate.modules.muc.room import History, HistoryEntry, Occupant, Room, RoomConfig
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize

#: the state's format; a node that reads another refuses the room (the sender
#: then falls back to dropping it with status 332)
VERSION = 1


def room_state(room: Room) -> bytes:
    """`room` as the bytes `restore` reads."""
    now = time.monotonic()
    return json.dumps(
        {
            "v": VERSION,
            "jid": room.jid,
            "config": room.config.as_dict(),
            "affiliations": room.affiliations,
            "secret": base64.b64encode(room.secret).decode(),
            "subject": room.subject,
            "subject_nick": room.subject_nick,
            "locked": room.locked,
            "nicks": room.nicks,
            "reserved": room.reserved,
            "occupants": [
                {
                    "key": key,
                    "nick": o.nick,
                    "bare": o.bare,
                    "role": o.role,
                    "voice": o.voice_requested if o.voice_requested > float("-inf") else None,
                    # each session with how long it has been in (seconds: no shared clock)
                    "sessions": [
                        [full, serialize(p), now - room.entered.get(full, now)]
                        for full, p in o.sessions.items()
                    ],
                }
                for key, o in room.occupants.items()
            ],
            "history": [
                [serialize(e.stanza), e.stamp, e.when, e.size, e.sender, e.stanza_id]
                for e in room.history.entries
            ],
        }
    ).encode()


def restore(data: bytes, history: History, max_stanza_bytes: int) -> Room:
    """The room `room_state` wrote; raises ValueError when it cannot be read."""
    try:
        state: dict[str, Any] = json.loads(data)
        if state.get("v") != VERSION:
            raise ValueError(f"room state version {state.get('v')!r}")
        room = Room(
            str(state["jid"]),
            RoomConfig.from_dict(state["config"]),
            history=history,
            secret=base64.b64decode(state["secret"]),
            affiliations={str(k): str(v) for k, v in state["affiliations"].items()},
            subject=str(state["subject"]),
            subject_nick=str(state["subject_nick"]),
        )
        room.locked = bool(state["locked"])
        room.nicks = {str(k): str(n) for k, n in state.get("nicks", {}).items()}
        room.reserved = {str(k): str(b) for k, b in state.get("reserved", {}).items()}
        for entry in state["occupants"]:
            occupant = Occupant(str(entry["nick"]), str(entry["bare"]), str(entry["role"]))
            if entry["voice"] is not None:
                occupant.voice_requested = float(entry["voice"])
            now = time.monotonic()
            for full, presence, *age in entry["sessions"]:
                element = parse_fragment(presence.encode(), max_stanza_bytes=max_stanza_bytes)
                room.add_session(str(entry["key"]), occupant, str(full), element)
                if age:
                    room.entered[str(full)] = now - max(0.0, float(age[0]))
        for stanza, stamp, when, size, sender, stanza_id in state["history"]:
            element = parse_fragment(stanza.encode(), max_stanza_bytes=max_stanza_bytes)
            history.add(HistoryEntry(element, stamp, float(when), int(size), sender, stanza_id))
    except ValueError:
        raise
    except Exception as exc:  # a missing key, a wrong type, unparsable XML
        raise ValueError(f"unreadable room state: {exc!r}") from None
    return room
