"""`/audit`: the audit log, newest first, paged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from chatgate.http.api.models import Model, Paged, PageQuery
from chatgate.http.api.operation import Call, Operation
from chatgate.http.api.paging import decode_cursor, encode_cursor


class AuditEntryOut(Model):
    id: int
    at: datetime
    actor: str
    """Who: an administrator's name, or `token:ID` for a bearer token."""
    method: str
    """How they authenticated (`basic`, `digest`, `bearer`, `console`, ...)."""
    address: str | None
    action: str
    """What, dotted: `account.create`, `session.kick`, ..."""
    target: str | None
    detail: str | None


class AuditList(Paged):
    items: list[AuditEntryOut]


class AuditQuery(PageQuery):
    action: Annotated[str | None, Field(max_length=100)] = None
    """Only entries of this action."""


async def list_audit(call: Call) -> AuditList:
    q = call.query_as(AuditQuery)
    before = None if q.cursor is None else int(decode_cursor(q.cursor, int))
    entries = await call.site.audit.page(before=before, limit=q.limit + 1, action=q.action)
    page = entries[: q.limit]
    return AuditList(
        items=[
            AuditEntryOut(
                id=e.id,
                at=datetime.fromtimestamp(e.at, UTC),
                actor=e.actor,
                method=e.method,
                address=e.address,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in page
        ],
        next=encode_cursor(page[-1].id) if len(entries) > q.limit and page else None,
    )


OPERATIONS = (
    Operation(
        "GET",
        "/audit",
        list_audit,
        "Read the audit log",
        "audit",
        query=AuditQuery,
        response=AuditList,
        description="Every change made through the API or the console, newest first.",
    ),
)
