"""What the pre-authentication IQ handlers (XEP-0077 registration, XEP-0078 legacy
authentication) share: errors with their legacy codes (XEP-0086), per-connection
state kept off the connection driver, and the TLS rule.

They see a connection only through `modules.base.PreAuthConnection`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chatgate.modules.base import PreAuthConnection
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.stanza import append_error

LEGACY_CODES: dict[StanzaErrorCondition, str] = {
    StanzaErrorCondition.BAD_REQUEST: "400",
    StanzaErrorCondition.CONFLICT: "409",
    StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED: "501",
    StanzaErrorCondition.FORBIDDEN: "403",
    StanzaErrorCondition.INTERNAL_SERVER_ERROR: "500",
    StanzaErrorCondition.ITEM_NOT_FOUND: "404",
    StanzaErrorCondition.JID_MALFORMED: "400",
    StanzaErrorCondition.NOT_ACCEPTABLE: "406",
    StanzaErrorCondition.NOT_ALLOWED: "405",
    StanzaErrorCondition.NOT_AUTHORIZED: "401",
    StanzaErrorCondition.POLICY_VIOLATION: "406",  # not in XEP-0086; jabberd's generic refusal
    StanzaErrorCondition.REGISTRATION_REQUIRED: "407",
    StanzaErrorCondition.RESOURCE_CONSTRAINT: "500",
    StanzaErrorCondition.SERVICE_UNAVAILABLE: "503",
    StanzaErrorCondition.UNEXPECTED_REQUEST: "400",
}


def iq_reply(
    iq: Element, kind: str, payload: Element | None = None, *, to: str | None = None
) -> Element:
    """An IQ of type `kind` answering `iq`: its id, `from` its addressee, `to` when
    given (a bound session's full JID), and `payload` if any; nothing of the request
    is copied (it may hold a password)."""
    attrs = {"type": kind, "id": iq.get("id") or ""}
    if to:
        attrs["to"] = to
    recipient = iq.get("to")
    if recipient:
        attrs["from"] = recipient
    reply = Element("iq", ns.CLIENT, attrs)
    if payload is not None:
        reply.append(payload)
    return reply


def error_with_code(
    iq: Element,
    condition: StanzaErrorCondition,
    text: str = "",
    *,
    to: str | None = None,
    echo: Element | None = None,
    error_type: str | None = None,
) -> Element:
    """An IQ error with both the legacy code and the RFC 6120 condition (XEP-0086).

    Unlike `stanza.error_reply`, the request is not copied: `echo` is what to
    send back, if anything (never a password).
    """
    reply = iq_reply(iq, "error", echo, to=to)
    error_attrs = {"type": error_type or condition.default_type}
    code = LEGACY_CODES.get(condition)
    if code:
        error_attrs["code"] = code
    append_error(reply, condition, error_attrs, text)
    return reply


T = TypeVar("T")


class ConnectionTable(Generic[T]):
    """State that pre-authentication handlers keep per connection.

    `PreAuthConnection` is slotted without ``__weakref__``, so entries are held
    strongly and dropped once their connection is closed or has a session; the
    table is swept whenever it has doubled since the last sweep.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._items: dict[PreAuthConnection, T] = {}
        self._sweep_at = 64

    def __call__(self, conn: PreAuthConnection) -> T:
        item = self._items.get(conn)
        if item is None:
            if len(self._items) >= self._sweep_at:
                self.sweep()
            item = self._items[conn] = self._factory()
        return item

    def sweep(self) -> None:
        self._items = {c: v for c, v in self._items.items() if not c.closed and c.session is None}
        self._sweep_at = max(64, 2 * len(self._items))

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class ConnectionState:
    """Per connection: the handlers' lock and the failed legacy logins so far."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: int = 0


_state: ConnectionTable[ConnectionState] = ConnectionTable(ConnectionState)


def pre_auth_lock(conn: PreAuthConnection) -> asyncio.Lock:
    """One lock per connection for registration and legacy authentication.  The
    driver already handles a connection's pre-authentication IQs one at a time, in
    order; the lock keeps a handler's read-check-write atomic should that change
    (asyncio locks are FIFO, and each handler takes it before its first await)."""
    return _state(conn).lock


def connection_state(conn: PreAuthConnection) -> ConnectionState:
    return _state(conn)


def tls_missing(conn: PreAuthConnection) -> bool:
    """The listener requires TLS (RFC 6120 §5.3.1) and this stream has none yet."""
    return conn.requires_tls and not conn.facts.tls_active
