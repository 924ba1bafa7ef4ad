"""`/sessions`: the live client sessions of this process, and kicking one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from chatgate.administration import sessions
from chatgate.administration.targets import full_jid
from chatgate.http.api.models import MAX_QUERY_TEXT, Model, Paged, PageQuery
from chatgate.http.api.operation import Call, Operation
from chatgate.http.api.paging import decode_cursor, encode_cursor
from chatgate.http.auth.base import Access


class SessionOut(Model):
    jid: str
    """Full JID."""
    account: str
    """Bare JID."""
    resource: str
    transport: Literal["tcp", "websocket", "bosh"]
    direct_tls: bool
    """XEP-0368 direct TLS (rather than STARTTLS or plain TCP)."""
    address: str | None
    """The client's address."""
    tls_version: str | None
    """`TLSv1.3`, ...; null when not encrypted."""
    mechanism: str
    """SASL mechanism of the login (`jabber:iq:auth` for XEP-0078)."""
    connected_since: datetime | None
    available: bool
    priority: int


class SessionList(Paged):
    items: list[SessionOut]
    total: int


class SessionsQuery(PageQuery):
    account: Annotated[str | None, Field(max_length=MAX_QUERY_TEXT)] = None
    """Only the sessions of this bare JID."""
    transport: Literal["tcp", "websocket", "bosh"] | None = None
    """Only sessions over this transport."""


def session_out(info: sessions.SessionInfo) -> SessionOut:
    return SessionOut(
        jid=info.jid,
        account=info.account,
        resource=info.resource,
        transport=info.transport,
        direct_tls=info.direct_tls,
        address=info.address,
        tls_version=info.tls_version,
        mechanism=info.mechanism,
        connected_since=info.connected_since,
        available=info.available,
        priority=info.priority,
    )


async def list_sessions(call: Call) -> SessionList:
    q = call.query_as(SessionsQuery)
    found = sessions.list_sessions(call.ctx, account=q.account)
    if q.transport is not None:
        found = [s for s in found if s.transport == q.transport]
    if q.cursor is not None:
        after = decode_cursor(q.cursor, str)
        found_after = [s for s in found if s.jid > str(after)]
    else:
        found_after = found
    page = found_after[: q.limit]
    more = len(found_after) > q.limit
    return SessionList(
        items=[session_out(s) for s in page],
        next=encode_cursor(page[-1].jid) if more and page else None,
        total=len(found),
    )


async def get_session(call: Call) -> SessionOut:
    return session_out(sessions.get_session(call.ctx, full_jid(call.param("jid"))))


async def kick_session(call: Call) -> SessionOut:
    jid = full_jid(call.param("jid"))
    call.target = jid
    return session_out(sessions.kick(call.ctx, jid))


_JID = {"jid": "Full JID, user@domain/resource (the '/' may be sent as %2F)"}

OPERATIONS = (
    Operation(
        "GET",
        "/sessions",
        list_sessions,
        "List live client sessions",
        "sessions",
        query=SessionsQuery,
        response=SessionList,
        description="Bound sessions of this server process, by JID: transport, address,"
        " TLS version and SASL mechanism.",
    ),
    Operation(
        "GET",
        "/sessions/{jid}",
        get_session,
        "Get one session",
        "sessions",
        response=SessionOut,
        params=_JID,
        greedy=frozenset({"jid"}),
    ),
    Operation(
        "DELETE",
        "/sessions/{jid}",
        kick_session,
        "Kick a session",
        "sessions",
        access=Access.WRITE,
        response=SessionOut,
        action="session.kick",
        params=_JID,
        greedy=frozenset({"jid"}),
        description="Ends the session with a policy-violation stream error: the client is"
        " disconnected (it may log in again; lock the account to keep it out).",
    ),
)
