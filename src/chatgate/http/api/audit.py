"""The audit log: who changed what, through the API, the console or the CLI.

Every change the API makes is recorded here (by `operation.py`, after the
change succeeded) with who made it (the principal's name, or `token:ID`), how
they authenticated, from which address, a dotted action (`account.create`), its
target (a JID, a token id) and a short detail.  A detail never holds a secret:
callers pass only names and flags, never a password or a token.  Entries are
read newest first, in pages, and swept after `[admin] audit_retention_days`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatgate.http.auth.base import Principal
    from chatgate.storage.database import Database
    from chatgate.storage.repositories.admin import AuditRow

log = logging.getLogger("chatgate.audit")

#: longest detail kept (a detail is a summary, not a payload)
MAX_DETAIL = 500


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        principal: Principal,
        address: str | None,
        action: str,
        target: str | None = None,
        detail: str | None = None,
    ) -> int:
        """Append one entry and log it at INFO; returns its id."""
        if detail is not None and len(detail) > MAX_DETAIL:
            detail = detail[: MAX_DETAIL - 1] + "…"
        entry = await self.db.audit.append(
            int(time.time()), principal.actor, principal.method, address, action, target, detail
        )
        log.info(
            "%s (%s from %s): %s %s%s",
            principal.actor,
            principal.method,
            address or "-",
            action,
            target or "-",
            f" ({detail})" if detail else "",
        )
        return entry

    async def page(
        self, *, before: int | None = None, limit: int = 50, action: str | None = None
    ) -> list[AuditRow]:
        """Entries newest first, older than entry id `before` when given."""
        return await self.db.audit.page(before_id=before, limit=limit, action=action)
