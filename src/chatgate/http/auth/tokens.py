"""Bearer tokens for automation: created, listed, revoked, checked."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatgate.storage.database import Database


class BearerTokens:
    def __init__(self, db: Database) -> None:
        self.db = db
