"""The live client sessions of this process: who is connected, how, and ending one.

A session is read from its connection driver (`xmpp/c2s.py`'s `C2SConnection`
in `ctx.connections`): the directory holds the `C2SSession` records, but only
the connection knows the transport's facts (address, TLS) and the login's SASL
mechanism.  Only bound sessions are listed: a connection still negotiating has
no JID yet.  With a shared session directory (a cluster) this lists the
sessions of this process only.

Kicking ends the session's stream with a `policy-violation` stream error (RFC
6120 §4.9.3.14) through the session's own `close`, whatever its transport; the
client is disconnected and its session leaves the directory as on any close.
It never deletes or locks the account: the client may log in again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from chatgate.administration.errors import NotFound
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xmpp.c2s import C2SConnection

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

Transport = Literal["tcp", "websocket", "bosh"]

#: what a kicked client reads in its stream error
KICK_TEXT = "session ended by an administrator"
#: the mechanism shown for an XEP-0078 (jabber:iq:auth) login, which runs no SASL
LEGACY_MECHANISM = "jabber:iq:auth"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One bound client session, as an operator sees it."""

    #: full JID, `user@domain/resource`
    jid: str
    #: bare JID, the account
    account: str
    resource: str
    #: `tcp` (STARTTLS or direct TLS), `websocket` or `bosh`
    transport: Transport
    #: XEP-0368 direct TLS (port 5223) rather than STARTTLS or plain TCP
    direct_tls: bool
    #: the client's address (through trusted proxies for the web transports)
    address: str | None
    #: `TLSv1.3`, ...; None when the stream is not encrypted
    tls_version: str | None
    #: the SASL mechanism the client logged in with (`jabber:iq:auth` for XEP-0078)
    mechanism: str
    #: when the connection was opened (UTC); None when the driver does not record it
    connected_since: datetime | None
    #: sent available presence (RFC 6121 §4.2)
    available: bool
    priority: int


def _transport(name: str) -> tuple[Transport, bool]:
    if name == "tls":
        return "tcp", True
    if name in ("websocket", "bosh"):
        return name, False  # type: ignore[return-value]
    return "tcp", False


def _info(conn: C2SConnection) -> SessionInfo | None:
    session = conn.session
    if session is None or conn.closed:
        return None
    facts = conn.facts
    transport, direct_tls = _transport(conn.transport.name)
    mechanism = conn.login_mechanism
    opened = conn.connected_at
    return SessionInfo(
        jid=session.full,
        account=session.bare,
        resource=session.resource,
        transport=transport,
        direct_tls=direct_tls,
        address=facts.remote_address,
        tls_version=facts.tls_version if facts.tls_active else None,
        mechanism=mechanism or LEGACY_MECHANISM,
        connected_since=datetime.fromtimestamp(opened, UTC),
        available=session.available,
        priority=session.priority,
    )


def _bound(ctx: ServerContext) -> list[tuple[SessionInfo, C2SConnection]]:
    found = []
    for conn in list(ctx.connections):
        if isinstance(conn, C2SConnection):
            info = _info(conn)
            if info is not None:
                found.append((info, conn))
    return found


def list_sessions(ctx: ServerContext, account: str | None = None) -> list[SessionInfo]:
    """Every bound session of this process (of one bare JID when `account` is
    given), ordered by JID so pages are stable."""
    sessions = [info for info, _ in _bound(ctx) if account is None or info.account == account]
    sessions.sort(key=lambda s: s.jid)
    return sessions


def get_session(ctx: ServerContext, jid: str) -> SessionInfo:
    """The session of a full JID (NotFound when none is bound here)."""
    for info, _ in _bound(ctx):
        if info.jid == jid:
            return info
    raise NotFound(f"no session {jid} is connected")


def kick(ctx: ServerContext, jid: str, text: str = KICK_TEXT) -> SessionInfo:
    """End the session of full JID `jid` with a `policy-violation` stream error and
    return what it was.  A bare JID is refused (NotFound): use `kick_account` to
    end every session of an account.  Raises NotFound when no such session is
    bound here."""
    for info, conn in _bound(ctx):
        if info.jid == jid:
            conn.close_stream(StreamErrorCondition.POLICY_VIOLATION, text)
            log.info("ended the session of %s (%s from %s)", jid, info.transport, info.address)
            return info
    raise NotFound(f"no session {jid} is connected")


def kick_account(ctx: ServerContext, account: str, text: str = KICK_TEXT) -> list[SessionInfo]:
    """End every session of bare JID `account` here; returns those ended (maybe none)."""
    ended = []
    for info, conn in _bound(ctx):
        if info.account == account:
            conn.close_stream(StreamErrorCondition.POLICY_VIOLATION, text)
            ended.append(info)
    if ended:
        log.info("ended %d session(s) of %s", len(ended), account)
    return ended
