"""Persistent rooms (XEP-0045): configuration, subject, occupant-id key and affiliations.

A room is saved whole (its row, then its affiliations replaced) in one
transaction whenever an owner or admin changes it; rooms change rarely, and a
whole save cannot leave half a change behind.  Temporary rooms are never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.tables_rooms import RoomAffiliation, StoredRoom


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """What is stored of one persistent room."""

    jid: str
    config: dict[str, Any]
    secret: bytes
    subject: str = ""
    subject_nick: str = ""
    affiliations: dict[str, str] = field(default_factory=dict)


class RoomRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def load(self, service: str) -> list[RoomRecord]:
        """Every stored room of the service domain `service`."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        StoredRoom.id,
                        StoredRoom.jid,
                        StoredRoom.config,
                        StoredRoom.secret,
                        StoredRoom.subject,
                        StoredRoom.subject_nick,
                    ).where(StoredRoom.service == service)
                )
            ).all()
            affiliations: dict[int, dict[str, str]] = {}
            if rows:
                found = await conn.execute(
                    select(
                        RoomAffiliation.room_id, RoomAffiliation.jid, RoomAffiliation.affiliation
                    )
                    .join(StoredRoom, StoredRoom.id == RoomAffiliation.room_id)
                    .where(StoredRoom.service == service)
                )
                for room_id, jid, affiliation in found:
                    affiliations.setdefault(room_id, {})[jid] = affiliation
        return [
            RoomRecord(
                jid=jid,
                config=_config(text),
                secret=secret,
                subject=subject,
                subject_nick=subject_nick,
                affiliations=affiliations.get(room_id, {}),
            )
            for room_id, jid, text, secret, subject, subject_nick in rows
        ]

    async def save(self, record: RoomRecord) -> None:
        """Store the room, replacing what was stored of it."""
        values = {
            "config": json.dumps(record.config, sort_keys=True),
            "subject": record.subject,
            "subject_nick": record.subject_nick,
            "secret": record.secret,
        }
        async with self._writer.begin() as conn:
            room_id = (
                await conn.execute(select(StoredRoom.id).where(StoredRoom.jid == record.jid))
            ).scalar_one_or_none()
            if room_id is None:
                service = record.jid.partition("@")[2]
                room_id = (
                    await conn.execute(
                        insert(StoredRoom)
                        .values(jid=record.jid, service=service, **values)
                        .returning(StoredRoom.id)
                    )
                ).scalar_one()
            else:
                await conn.execute(
                    update(StoredRoom).where(StoredRoom.id == room_id).values(**values)
                )
                await conn.execute(
                    delete(RoomAffiliation).where(RoomAffiliation.room_id == room_id)
                )
            if record.affiliations:
                await conn.execute(
                    insert(RoomAffiliation),
                    [
                        {"room_id": room_id, "jid": jid, "affiliation": affiliation}
                        for jid, affiliation in record.affiliations.items()
                    ],
                )

    async def exists(self, jid: str) -> bool:
        """Whether a room of this JID is stored (persistent)."""
        async with self._engine.connect() as conn:
            found = await conn.execute(select(StoredRoom.id).where(StoredRoom.jid == jid))
            return found.first() is not None

    async def delete(self, jid: str) -> None:
        """Forget a room (its affiliations go with it); nothing happens if it was not stored."""
        async with self._writer.begin() as conn:
            await conn.execute(delete(StoredRoom).where(StoredRoom.jid == jid))


def _config(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
