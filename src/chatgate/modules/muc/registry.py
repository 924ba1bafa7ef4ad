"""Where rooms live: the `RoomRegistry` protocol and its in-process implementation.

A room's state (occupants, history, roles) changes with every stanza, so it lives
in exactly one process.  In a cluster each node's registry holds the rooms that
node owns (`relay.py` sends every stanza for a room to its owner, whose deliveries
go out through the router to sessions on any node; `ownership.py` hands rooms
over or reloads them when the node set changes); nothing of it is shared.
Nothing here awaits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from chatgate.modules.muc.room import Room


class RoomRegistry(Protocol):
    """The rooms of the services of this process, and which rooms each session is in
    (so a closed session leaves all of them)."""

    def get(self, jid: str) -> Room | None: ...

    def add(self, room: Room) -> None: ...

    def remove(self, jid: str) -> None: ...

    def count(self, service: str) -> int:
        """How many rooms the service `service` (a domain) holds."""
        ...

    def rooms(self, service: str) -> Iterator[Room]: ...

    def joined(self, full: str, room: str) -> None: ...

    def left(self, full: str, room: str) -> None: ...

    def rooms_of(self, full: str) -> list[str]:
        """The room JIDs the session `full` is in."""
        ...


class LocalRoomRegistry:
    """Every room of this process in dicts (the single-process server)."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}
        self._per_service: dict[str, int] = {}
        self._sessions: dict[str, set[str]] = {}

    def get(self, jid: str) -> Room | None:
        return self._rooms.get(jid)

    def add(self, room: Room) -> None:
        if room.jid in self._rooms:
            raise ValueError(f"room {room.jid} exists")
        self._rooms[room.jid] = room
        service = _service(room.jid)
        self._per_service[service] = self._per_service.get(service, 0) + 1

    def remove(self, jid: str) -> None:
        room = self._rooms.pop(jid, None)
        if room is None:
            return
        service = _service(jid)
        self._per_service[service] -= 1
        for full in room.full_jids():
            self.left(full, jid)

    def count(self, service: str) -> int:
        return self._per_service.get(service, 0)

    def rooms(self, service: str) -> Iterator[Room]:
        return (r for j, r in self._rooms.items() if _service(j) == service)

    def joined(self, full: str, room: str) -> None:
        self._sessions.setdefault(full, set()).add(room)

    def left(self, full: str, room: str) -> None:
        rooms = self._sessions.get(full)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._sessions[full]

    def rooms_of(self, full: str) -> list[str]:
        return sorted(self._sessions.get(full, ()))


def _service(room_jid: str) -> str:
    return room_jid.partition("@")[2]
