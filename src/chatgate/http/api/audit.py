"""The audit log: who changed what, through the API, the console or the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatgate.storage.database import Database


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
