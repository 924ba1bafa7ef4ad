"""Where a stanza a component sent goes: through the router, as a service's stanzas do.

The component's stanza has a 'from' on its domain and a parsed 'to' (`stream.py`).

- To another component's domain (or its own): that component, with the sender
  standing in as the origin (errors find their way back through it).
- To a built-in service's domain (MUC, upload): `service-unavailable`.  Those services
  answer through the session table, which has no component JIDs, so a component
  joining a room would wait for answers that never come; refused until the router
  delivers to service domains from every one of its delivery paths.
- To an account (RFC 6121 §8.5): a message to a connected full JID goes there, else by
  the bare-JID rules (offline storage, or `service-unavailable` back to the component);
  presence goes to the presence module (`Router.service_presence`), which records
  subscription stanzas in the account's roster as from any contact, answers probes
  from subscribers and delivers the rest to the full JID or to the bare JID's
  available resources; an IQ to a full JID goes there (`service-unavailable` when
  that resource is gone).
- To the server or an account's bare JID, IQ get/set: only the read-only queries in
  `SERVER_QUERIES` are answered (ping, disco, version, time; vCards of accounts).  A
  component is not an account, so nothing that reads or writes an account's own data
  (roster, private storage, archive ...) is ever handled for it.
- To any other domain: `remote-server-not-found` (no federation yet).

Stanzas from components do not pass the stanza stages (blocking, archiving,
carbons), as the built-in services' stanzas do not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING

from chatgate.jid import JID
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import error_reply, payload_of

if TYPE_CHECKING:
    from chatgate.context import ServerContext

Pending = Awaitable[None] | None

#: (payload namespace, IQ type) a component may ask the server or an account's bare JID
SERVER_QUERIES = frozenset(
    {
        (ns.PING, "get"),
        (ns.DISCO_INFO, "get"),
        (ns.DISCO_ITEMS, "get"),
        (ns.VERSION, "get"),
        (ns.TIME, "get"),
        (ns.VCARD, "get"),
    }
)


def stand_in(sender: JID, write: Callable[[bytes], None]) -> C2SSession:
    """A session record that stands for the component's JID `sender` where the router
    and services expect an origin: what is sent to it goes to the component.  It is
    never in the session directory."""
    session = C2SSession(
        username=sender.local,
        domain=sender.domain,
        resource=sender.resource,
        stream_id="",
        write=write,
        close=_no_close,
        transport="component",
    )
    session.bare = str(sender.bare)
    session.full = str(sender)
    return session


def _no_close(condition: StreamErrorCondition | None, text: str) -> None:
    """A stand-in is not a stream: nothing on it can close the component's."""


def route_from_component(
    ctx: ServerContext,
    stanza: Element,
    to: JID,
    write: Callable[[bytes], None],
    components: Collection[str],
) -> Pending:
    """Deliver a stanza a component sent (see the module docstring); `write` sends
    serialized stanzas back to the component (errors, answers); `components` are the
    configured component domains."""
    router = ctx.router
    sender = JID.parse(stanza.attrs["from"])
    origin = stand_in(sender, write)
    service = router.services.get(to.domain)
    if service is not None:
        if to.domain in components:
            return service(origin, stanza, to)
        text = f"{to.domain} does not serve components"
        return _bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, text)
    if to.domain not in router.domains:
        return _bounce(origin, stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
    name = stanza.name
    if name == "message":
        if not to.local:
            return _bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        if to.resource and router.deliver_to_full(to, stanza):
            return None
        return router.deliver_message_to_bare(stanza, to, origin)
    if name == "presence":
        if router.service_presence is not None:
            # Subscriptions recorded, probes answered, as from a remote contact.
            return router.service_presence(stanza, sender, to)
        if to.local and stanza.attrs.get("type") != "probe":
            if to.resource:
                router.deliver_to_full(to, stanza)
            else:
                router.deliver_to_available(f"{to.local}@{to.domain}", stanza)
        return None
    return _iq(ctx, origin, stanza, to)


def _iq(ctx: ServerContext, origin: C2SSession, stanza: Element, to: JID) -> Pending:
    itype = stanza.attrs.get("type")
    if itype not in ("get", "set", "result", "error") or not stanza.attrs.get("id"):
        return _bounce(origin, stanza, StanzaErrorCondition.BAD_REQUEST, "iq needs id and type")
    if to.resource:
        if not ctx.router.deliver_to_full(to, stanza) and itype in ("get", "set"):
            return _bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return None
    if itype in ("result", "error"):
        return None  # an answer to the server or a bare JID: nobody asked the component
    payload = payload_of(stanza)
    if payload is None or (payload.ns, itype) not in SERVER_QUERIES:
        return _bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
    if to.local and payload.ns not in (ns.DISCO_INFO, ns.DISCO_ITEMS, ns.VCARD):
        return _bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
    return ctx.dispatch_iq(origin, stanza, to)


def _bounce(
    origin: C2SSession, stanza: Element, condition: StanzaErrorCondition, text: str = ""
) -> Pending:
    """RFC 6120 §8.3.1: the error back to the component; never an error for an error.
    Returns the nothing-pending a routing function returns."""
    if stanza.attrs.get("type") != "error":
        origin.send(error_reply(stanza, condition, text))
    return None
