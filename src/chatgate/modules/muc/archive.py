"""Rooms' archives (XEP-0313 for MUC) through the MAM module's room archive API.

The MAM module (`modules/mam`, loaded before this one) owns the archive; this
adapter is all the rooms know of it, behind the `RoomArchive` protocol of
`service.py`.  It never stores anything itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.modules.mam.service import ArchiveService


class MamRoomArchive:
    """A room's messages go to the MAM archive whose owner is the room JID."""

    def __init__(self, service: ArchiveService) -> None:
        self.service = service

    def new_id(self) -> str:
        """A time-ordered archive id, which the room uses as the message's stanza-id."""
        return self.service.new_stanza_id()[0]

    def append(self, room: str, stanza: Element, stanza_id: str, nick: str, sender: str) -> None:
        self.service.append_room(room, stanza, nick, sender, stanza_id)

    async def retract(self, room: str, stanza_id: str, tombstone: Element) -> bool:
        return await self.service.retract(room, stanza_id, tombstone)

    async def delete(self, room: str, before: str | None = None) -> None:
        await self.service.delete_archive(room, before)

    async def query(self, session: C2SSession, iq: Element, room: str) -> None:
        """Answer a query sent to the room; the final IQ result comes from the room
        (the MAM module addresses it from nobody, right for an account's own archive,
        but a client matches the answer to a room's query by the room's JID)."""
        await self.service.answer_query(cast(C2SSession, _FromRoom(session, room)), iq, room)


class _FromRoom:
    """The asking session, as the archive's answer sees it: the IQ result it sends
    gets the room as 'from'."""

    __slots__ = ("_room", "_session", "bare", "full")

    def __init__(self, session: C2SSession, room: str) -> None:
        self._session = session
        self._room = room
        self.full = session.full
        self.bare = session.bare

    def send(self, el: Element) -> None:
        if el.name == "iq" and "from" not in el.attrs:
            el.attrs["from"] = self._room
        self._session.send(el)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
