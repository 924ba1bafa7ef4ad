"""Local stanza routing (RFC 6120 §10, RFC 6121 §8.5): who gets a stanza, or which error.

The router owns the table of bound sessions (bare JID -> resource -> session)
and the delivery rules for messages; presence stanzas go to the presence
handler and IQs to the IQ dispatcher, both supplied at assembly.  Routing is
synchronous on the hot path (a message to an online resource is stamped,
serialized once and written); only what needs storage (offline storage,
existence checks) returns an awaitable, which the connection awaits in order.

It never parses bytes and never touches the database itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatgate.hooks import Hooks
from chatgate.jid import JID, InvalidJID
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import error_reply

log = logging.getLogger(__name__)

Pending = Awaitable[None] | None
PresenceHandler = Callable[[C2SSession, Element, JID | None], Pending]
IqDispatch = Callable[[C2SSession, Element, JID | None], Pending]
AccountExists = Callable[[str, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class MessageUndeliverable:
    """Hook (decide): a chat/normal message for a local account with no available
    resource. A handler returns True when it stored the message (XEP-0160)."""

    recipient: str  # bare JID
    stanza: Element


class BindConflict(Exception):
    """The resource is taken and the policy refuses the new session."""


class Router:
    """Sessions of the served domains (virtual hosts) and the RFC 6121 §8.5 delivery rules."""

    def __init__(
        self, domains: str | frozenset[str], hooks: Hooks, account_exists: AccountExists
    ) -> None:
        #: every domain served here; stanzas to others need federation (not yet built)
        self.domains = frozenset((domains,)) if isinstance(domains, str) else domains
        self.hooks = hooks
        self.account_exists = account_exists
        self.sessions: dict[str, dict[str, C2SSession]] = {}
        self.presence_handler: PresenceHandler | None = None
        self.iq_dispatch: IqDispatch | None = None

    # ------------------------------------------------------------ binding

    def bind(
        self,
        session_for: Callable[[str], C2SSession],
        resource: str | None,
        policy: str,
        max_resources: int,
    ) -> tuple[C2SSession, C2SSession | None]:
        """Register a new session; returns it and the session it replaced, if any.

        `policy` is the configured resource-conflict rule: "newest" (the old
        session is returned for the caller to close with <conflict/>, RFC 6120
        §7.7.2.2), "reject" (raises BindConflict) or "randomize".
        """
        probe = session_for(resource or _random_resource())
        bare = probe.bare
        resources = self.sessions.get(bare)
        replaced = None
        if resources is not None:
            existing = resources.get(probe.resource)
            if existing is not None:
                if policy == "reject":
                    raise BindConflict(probe.resource)
                if policy == "randomize" or resource is None:
                    probe = session_for(f"{probe.resource}-{_random_resource()[:8]}")
                else:
                    replaced = existing
                    del resources[existing.resource]
            if replaced is None and len(resources) >= max_resources:
                raise BindConflict("too many resources")
        else:
            resources = self.sessions[bare] = {}
        resources[probe.resource] = probe
        return probe, replaced

    def unbind(self, session: C2SSession) -> None:
        resources = self.sessions.get(session.bare)
        if resources is not None and resources.get(session.resource) is session:
            del resources[session.resource]
            if not resources:
                del self.sessions[session.bare]

    def resources_of(self, bare: str) -> dict[str, C2SSession]:
        return self.sessions.get(bare) or {}

    # ------------------------------------------------------------ routing

    def route(self, origin: C2SSession, stanza: Element) -> Pending:
        """Route a stanza sent by a local client (RFC 6120 §10.4, §10.5)."""
        # §8.1.2.1: the server stamps the full JID of the sender.
        stanza.attrs["from"] = origin.full
        to_text = stanza.attrs.get("to")
        if to_text is None:
            to = None
        else:
            try:
                to = JID.parse(to_text)
            except InvalidJID as exc:
                return self._bounce(origin, stanza, StanzaErrorCondition.JID_MALFORMED, str(exc))
        name = stanza.name
        if name == "message":
            return self._route_message(origin, stanza, to)
        if name == "presence":
            if self.presence_handler is not None:
                return self.presence_handler(origin, stanza, to)
            return None
        if name == "iq":
            return self._route_iq(origin, stanza, to)
        origin.close(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"<{name}/> is not a stanza")
        return None

    def _route_message(self, origin: C2SSession, stanza: Element, to: JID | None) -> Pending:
        if to is None:
            # §10.3.1 no 'to': processed as if addressed to the sender's bare JID.
            to = JID(origin.username, origin.domain, "")
        if to.domain not in self.domains:
            return self._bounce(origin, stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
        if not to.local:
            # A message to the server itself: nothing here handles it.
            return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        resources = self.sessions.get(f"{to.local}@{to.domain}")
        if to.resource and resources is not None:
            target = resources.get(to.resource)
            if target is not None:
                # §8.5.3.1: a connected resource gets any message addressed to it.
                target.write(serialize(stanza).encode())
                return None
        return self.deliver_message_to_bare(stanza, to, resources, origin)

    def deliver_message_to_bare(
        self,
        stanza: Element,
        to: JID,
        resources: dict[str, C2SSession] | None,
        origin: C2SSession | None,
    ) -> Pending:
        """RFC 6121 §8.5.2: a message for a local account's bare JID (or a full JID
        whose resource is gone, §8.5.3.2.1)."""
        mtype = stanza.attrs.get("type", "normal")
        if mtype == "groupchat":
            # §8.5.2.1.2 / §8.5.3.2.1: groupchat to a user is an error.
            return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        targets: list[C2SSession] = []
        if resources:
            best = -1
            for session in resources.values():
                if not session.available or session.priority < 0:
                    continue
                if mtype == "headline":
                    targets.append(session)  # §8.5.2.1.2: every non-negative resource
                elif session.priority > best:
                    best = session.priority
                    targets = [session]
                elif session.priority == best:
                    targets.append(session)
        if targets:
            data = serialize(stanza).encode()
            for session in targets:
                session.write(data)
            return None
        if mtype == "error":
            return None  # §8.5.2.2.1: errors are never bounced or stored
        return self._undeliverable(stanza, to, mtype, origin)

    async def _undeliverable(
        self, stanza: Element, to: JID, mtype: str, origin: C2SSession | None
    ) -> None:
        bare = f"{to.local}@{to.domain}"
        if not await self.account_exists(to.local, to.domain):
            # §8.5.1: no such account.
            self._bounce_now(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        if mtype in ("chat", "normal"):
            stored = await self.hooks.decide(MessageUndeliverable(bare, stanza))
            if stored:
                return
        if mtype != "headline":
            # §8.5.2.2.1: not stored, so the sender learns it was not delivered.
            self._bounce_now(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    def _route_iq(self, origin: C2SSession, stanza: Element, to: JID | None) -> Pending:
        itype = stanza.attrs.get("type")
        if itype not in ("get", "set", "result", "error") or not stanza.attrs.get("id"):
            # RFC 6120 §8.2.3: type and id are required.
            return self._bounce(
                origin, stanza, StanzaErrorCondition.BAD_REQUEST, "iq needs id and type"
            )
        if to is not None and to.domain not in self.domains:
            return self._bounce(origin, stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
        if to is not None and to.resource:
            target = self.sessions.get(f"{to.local}@{to.domain}", {}).get(to.resource)
            if target is not None:
                target.write(serialize(stanza).encode())
                return None
            if itype in ("get", "set"):
                # §8.5.3.2.2 (RFC 6121): no such resource.
                return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return None
        if itype in ("result", "error"):
            return None  # a reply to the server or an account: nothing waits for it
        if self.iq_dispatch is not None:
            return self.iq_dispatch(origin, stanza, to)
        return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    # ------------------------------------------------------------ delivery helpers

    def deliver_to_full(self, full: JID, stanza: Element) -> bool:
        """Write `stanza` to one connected resource; False when it is not connected."""
        target = self.sessions.get(f"{full.local}@{full.domain}", {}).get(full.resource)
        if target is None:
            return False
        target.write(serialize(stanza).encode())
        return True

    def _bounce(
        self,
        origin: C2SSession | None,
        stanza: Element,
        condition: StanzaErrorCondition,
        text: str = "",
    ) -> Pending:
        """Bounce now; returns the nothing-pending a routing function returns."""
        self._bounce_now(origin, stanza, condition, text)
        return None

    def _bounce_now(
        self,
        origin: C2SSession | None,
        stanza: Element,
        condition: StanzaErrorCondition,
        text: str = "",
    ) -> None:
        # §8.3.1: never answer an error with an error.
        if origin is None or stanza.attrs.get("type") == "error":
            return
        reply = error_reply(stanza, condition, text)
        if reply.attrs.get("to") == origin.full or "to" not in reply.attrs:
            reply.attrs["to"] = origin.full
        origin.send(reply)


def _random_resource() -> str:
    return os.urandom(9).hex()
