"""Service discovery (XEP-0030) for the server and for accounts' bare JIDs.

Besides the server's identity and features it answers:

- disco#items: the services on domains of their own (`ServiceDomain`s);
- nodes: a module answers disco#info/#items on its own nodes by adding a
  `NodeResolver` to `Disco.nodes` (ad-hoc commands list theirs under
  ``http://jabber.org/protocol/commands``, XEP-0050 §2.1).  A node nobody
  answers is ``item-not-found``;
- XEP-0128 extended information: the XEP-0157 contact addresses of
  `[modules.disco] contacts` as a ``http://jabber.org/network/serverinfo`` form,
  and the XEP-0455 external status addresses of `status_addresses` (where
  clients look when the server cannot be reached) as a ``urn:xmpp:sos:0`` form;
- XEP-0115 entity capabilities: the server's ``<c/>`` in the stream features
  after authentication, its verification string computed once at start over
  the server's disco#info (every module's features are known then), and the
  caps node (``node#ver``) answered like the server itself (§6.2).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, field_validator

from chatgate.jid import JID
from chatgate.modules.base import IqHandler, OnStart, Registration, Spec, StreamFeature
from chatgate.modules.dataforms import FormField, build_form
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import CAPS
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext

#: XEP-0115's namespace
#: XEP-0157's FORM_TYPE
SERVER_INFO = "http://jabber.org/network/serverinfo"
#: XEP-0455's FORM_TYPE
SOS = "urn:xmpp:sos:0"
#: the feature PEP adds to accounts; with it, accounts also show the pubsub/pep identity
PUBSUB_PUBLISH = "http://jabber.org/protocol/pubsub#publish"

ContactKind = Literal["abuse", "admin", "feedback", "sales", "security", "status", "support"]


class DiscoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    contacts: dict[ContactKind, list[str]] = {}
    """XEP-0157 contact addresses, by kind (`admin`, `abuse`, `feedback`, `sales`,
    `security`, `status`, `support`), each a list of URIs (``mailto:...``,
    ``xmpp:...``, ``https://...``): published in the server's disco#info as the
    ``<kind>-addresses`` fields of a ``http://jabber.org/network/serverinfo`` form."""
    status_addresses: list[str] = []
    """XEP-0455 external status addresses: ``http://`` or ``https://`` URLs of a JSON
    status document hosted elsewhere than this server (clients fetch and cache them,
    and look there when they cannot connect): published in the server's disco#info
    as the ``external-status-addresses`` field of a ``urn:xmpp:sos:0`` form."""
    caps_node: str = "urn:chatgate:server"
    """The XEP-0115 node naming this software in the server's ``<c/>`` stream feature."""

    @field_validator("status_addresses")
    @classmethod
    def _http_urls(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            parsed = urlparse(address)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"{address!r} is not an http:// or https:// URL")
        return addresses


@dataclass(frozen=True, slots=True)
class NodeItem:
    jid: str
    node: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """What a node answers: its identities (category, type, name) and features for
    disco#info, its items for disco#items."""

    identities: tuple[tuple[str, str, str | None], ...] = ()
    features: tuple[str, ...] = ()
    items: tuple[NodeItem, ...] = ()


#: (requesting session, host asked, node) -> the node's answer, None when the
#: resolver does not know the node; may raise StanzaError (e.g. forbidden)
NodeResolver = Callable[[C2SSession, str, str], NodeAnswer | None]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The server's disco#info: identities, features and XEP-0128 forms."""

    identities: tuple[tuple[str, str, str | None], ...]
    features: tuple[str, ...]
    forms: tuple[Element, ...] = ()

    def payload(self, node: str | None = None) -> Element:
        query = Element("query", ns.DISCO_INFO, {"node": node} if node else None)
        for category, kind, name in self.identities:
            attrs = {"category": category, "type": kind}
            if name:
                attrs["name"] = name
            query.sub("identity", attrs=attrs)
        for var in self.features:
            query.sub("feature", attrs={"var": var})
        for form in self.forms:
            query.append(form.copy())
        return query


def contact_form(contacts: dict[ContactKind, list[str]]) -> Element | None:
    """The XEP-0157 form (None when no address is configured)."""
    fields = [
        FormField(f"{kind}-addresses", "list-multi", values=tuple(addresses))
        for kind, addresses in sorted(contacts.items())
        if addresses
    ]
    return build_form(SERVER_INFO, fields, form="result") if fields else None


def status_form(addresses: list[str]) -> Element | None:
    """The XEP-0455 form (None when no address is configured)."""
    if not addresses:
        return None
    field = FormField("external-status-addresses", "list-multi", values=tuple(addresses))
    return build_form(SOS, [field], form="result")


def caps_ver(info: ServerInfo) -> str:
    """XEP-0115 §5.1 verification string (SHA-1, base64) of `info`.

    Identities ``category/type/lang/name<`` sorted, features sorted, then each
    form by FORM_TYPE: the FORM_TYPE value, then its fields sorted by var, each
    var followed by its values sorted (§5.4)."""
    parts: list[str] = []
    for category, kind, name in sorted(info.identities, key=lambda i: (i[0], i[1], "", i[2])):
        parts.append(f"{category}/{kind}//{name or ''}<")
    parts.extend(f"{var}<" for var in sorted(info.features))
    forms = []
    for form in info.forms:
        fields: dict[str, list[str]] = {}
        for el in form.find_all("field", ns.DATA_FORMS):
            fields[el.get("var") or ""] = [v.text for v in el.find_all("value", ns.DATA_FORMS)]
        form_type = (fields.pop("FORM_TYPE", None) or [""])[0]
        forms.append((form_type, fields))
    for form_type, fields in sorted(forms, key=lambda f: f[0]):
        parts.append(f"{form_type}<")
        for var in sorted(fields):
            parts.append(f"{var}<")
            parts.extend(f"{value}<" for value in sorted(fields[var]))
    digest = hashlib.sha1("".join(parts).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Disco:
    name: ClassVar[str] = "disco"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (
        Spec("XEP-0030", "2.5rc3"),
        Spec("XEP-0115", "1.6.0"),
        Spec("XEP-0128", "1.0.1"),
        Spec("XEP-0157", "1.1.1"),
        Spec("XEP-0455", "0.3.1"),
    )
    Options: ClassVar[type[DiscoOptions]] = DiscoOptions

    #: modules' node answers, asked in order (see the module docstring)
    nodes: list[NodeResolver] = field(default_factory=list)
    #: the caps node's ``node#ver``, once computed at start
    caps: str | None = None

    def server_info(self, ctx: ServerContext) -> ServerInfo:
        features = {ns.DISCO_INFO, ns.DISCO_ITEMS}
        features.update(f.var for f in ctx.disco_features if not f.on_account)
        options = ctx.options(self.name, DiscoOptions)
        forms = (contact_form(options.contacts), status_form(options.status_addresses))
        return ServerInfo(
            (("server", "im", "chatgate"),),
            tuple(sorted(features)),
            tuple(form for form in forms if form is not None),
        )

    def node_answer(self, session: C2SSession, host: str, node: str) -> NodeAnswer:
        for resolve in self.nodes:
            answer = resolve(session, host, node)
            if answer is not None:
                return answer
        raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such node")

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, DiscoOptions)

        async def info(session: C2SSession, iq: Element) -> None:
            query = iq.find("query", ns.DISCO_INFO)
            assert query is not None
            node = query.get("node")
            to = iq.get("to")
            target = JID.parse(to) if to else None
            if target is None or not target.local:
                host = target.domain if target is not None else session.domain
                if not node or node == self.caps:
                    # XEP-0115 §6.2: the caps node answers as the entity itself.
                    payload = self.server_info(ctx).payload(node)
                else:
                    payload = _node_info(node, self.node_answer(session, host, node))
            else:
                if node:
                    raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such node")
                # XEP-0030 §3.1 / RFC 6121 §8.5.1: the server answers for its accounts.
                if not await ctx.account_exists(target.local, target.domain):
                    raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
                kind = "anonymous" if ctx.is_anonymous(target.domain) else "registered"
                features = {ns.DISCO_INFO, ns.DISCO_ITEMS}
                features.update(f.var for f in ctx.disco_features if f.on_account)
                identities: tuple[tuple[str, str, str | None], ...] = (("account", kind, None),)
                if PUBSUB_PUBLISH in features:
                    # XEP-0163 §1: an account with PEP is a pubsub/pep service too
                    # (Conversations turns PEP on only when it sees this identity).
                    identities = (*identities, ("pubsub", "pep", None))
                payload = ServerInfo(identities, tuple(sorted(features))).payload()
            reply = iq_result(iq, payload)
            reply.attrs["to"] = session.full
            session.send(reply)

        def items(session: C2SSession, iq: Element) -> None:
            query = iq.find("query", ns.DISCO_ITEMS)
            node = query.get("node") if query is not None else None
            to = iq.get("to")
            target = JID.parse(to) if to else None
            payload = Element("query", ns.DISCO_ITEMS, {"node": node} if node else None)
            if target is None or not target.local:
                host = target.domain if target is not None else session.domain
                if node:
                    for item in self.node_answer(session, host, node).items:
                        attrs = {"jid": item.jid}
                        if item.node:
                            attrs["node"] = item.node
                        if item.name:
                            attrs["name"] = item.name
                        payload.sub("item", attrs=attrs)
                else:
                    # The server's services on domains of their own (XEP-0030 §4.1).
                    for service in ctx.services:
                        if service.parent == host:
                            attrs = {"jid": service.domain}
                            if service.name:
                                attrs["name"] = service.name
                            payload.sub("item", attrs=attrs)
            elif node:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such node")
            reply = iq_result(iq, payload)
            reply.attrs["to"] = session.full
            session.send(reply)

        async def advertise_caps() -> None:
            """The server's ``<c/>`` (XEP-0115 §6.3: a server MAY include it in the
            stream features), hashed over what every loaded module declared."""
            ver = caps_ver(self.server_info(ctx))
            self.caps = f"{options.caps_node}#{ver}"
            c = Element("c", CAPS, {"hash": "sha-1", "node": options.caps_node, "ver": ver})
            feature = StreamFeature(serialize(c))
            # Late, because the hash needs every module's features: recorded as
            # this module's registration, so stopping it removes the feature too.
            ctx.stream_features.append(feature)
            ctx.modules[self.name].registrations.append(feature)

        yield IqHandler(ns.DISCO_INFO, "get", info, to_server=True, to_account=True)
        yield IqHandler(ns.DISCO_ITEMS, "get", items, to_server=True, to_account=True)
        yield OnStart(advertise_caps)


def _node_info(node: str, answer: NodeAnswer) -> Element:
    return ServerInfo(answer.identities, answer.features).payload(node)
