"""XEP-0049 private XML storage: an account keeps XML fragments, one per namespace,
that only it can read and write (`jabber:iq:private`, on its own account).

Owns: answering get/set, bounding what is stored (bytes per fragment, namespaces
and bytes per account), and letting another module take over one namespace
(`PrivateInterceptor`: XEP-0411 keeps `storage:bookmarks` in step with PEP).
Must not: deliver anything, or be reachable for another account's data.

Errors (XEP-0049 §3, RFC 6120 §8.3.3):
- get/set addressed to another account: forbidden (cancel);
- a query with no child element: bad-request (modify);
- a child in jabber:iq:private or jabber:client, or without a namespace: not-acceptable;
- a fragment over `max_fragment_bytes`, or an account over its quota:
  not-acceptable with a text, resource-constraint (wait) for the quota.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from chatgate.modules.base import IqHandler, Registration, Spec
from chatgate.storage.repositories.owner import Owner
from chatgate.storage.repositories.private import PrivateQuotaExceeded, PrivateXmlRepository
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext

PRIVATE = "jabber:iq:private"

#: XEP-0049 §3: "the namespace ... MUST NOT be jabber:iq:private or jabber:client" (and
#: the server's own namespaces make no sense as storage keys either)
_RESERVED = frozenset({PRIVATE, ns.CLIENT, ""})


class PrivateStorageOptions(BaseModel):
    """``[modules.private_storage]``: XEP-0049 private XML storage."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Answer jabber:iq:private (XEP-0049, and XEP-0048 bookmarks stored through it).
    When off, such requests get service-unavailable."""
    max_fragment_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 65_536
    """Largest fragment (one namespace's element, serialized, UTF-8 bytes) an account
    may store; larger ones get not-acceptable."""
    max_namespaces: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Most namespaces one account may store fragments in."""
    max_account_bytes: Annotated[int, Field(ge=1024, le=100_000_000)] = 1_048_576
    """Most bytes of fragments one account may store in all; past it, resource-constraint."""


@dataclass(frozen=True, slots=True)
class PrivateInterceptor:
    """Another module's view of one namespace (XEP-0411: `storage:bookmarks` read
    from and written to PEP).  `get` returns the element to answer with (None: the
    stored fragment, as usual); `stored` hears each fragment after it is stored."""

    get: Callable[[C2SSession], Awaitable[Element | None]]
    stored: Callable[[C2SSession, Element], Awaitable[None]]


class PrivateStorage:
    name: ClassVar[str] = "private_storage"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0049", "1.2"),)
    Options: ClassVar[type[BaseModel]] = PrivateStorageOptions

    def __init__(self) -> None:
        self.repository: PrivateXmlRepository | None = None
        #: per namespace, the module that takes part in it (`PrivateInterceptor`)
        self.interceptors: dict[str, PrivateInterceptor] = {}
        self.options = PrivateStorageOptions()

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.options = ctx.options(self.name, PrivateStorageOptions)
        if not self.options.enabled:
            return
        self.repository = PrivateXmlRepository(ctx.db.engine)
        yield IqHandler(PRIVATE, "get", self._get, to_server=True, to_account=True)
        yield IqHandler(PRIVATE, "set", self._set, to_server=True, to_account=True)

    # ------------------------------------------------------------ reading and writing

    async def read(self, owner: Owner, namespace: str) -> Element | None:
        """The stored fragment of `namespace` (None when there is none)."""
        assert self.repository is not None
        stored = await self.repository.get(owner, namespace)
        if stored is None:
            return None
        return parse_fragment(stored.encode(), "", max_stanza_bytes=len(stored.encode()) + 1)

    async def write(self, owner: Owner, fragment: Element) -> None:
        """Store `fragment` under its namespace (what a set does, without the
        interceptors).  Raises StanzaError for a fragment too large or a full quota."""
        assert self.repository is not None
        text = serialize(fragment, parent_ns="")
        if len(text.encode()) > self.options.max_fragment_bytes:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"a private fragment may take at most {self.options.max_fragment_bytes} bytes",
            )
        try:
            await self.repository.put(
                owner,
                fragment.ns,
                text,
                max_fragments=self.options.max_namespaces,
                max_bytes=self.options.max_account_bytes,
            )
        except PrivateQuotaExceeded as exc:
            raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, str(exc)) from None

    # ------------------------------------------------------------ IQ handlers

    async def _get(self, session: C2SSession, iq: Element) -> None:
        query = _own_query(session, iq)
        reply_query = Element("query", PRIVATE)
        for child in _fragments(query):
            found: Element | None = None
            interceptor = self.interceptors.get(child.ns)
            if interceptor is not None:
                found = await interceptor.get(session)
            if found is None:
                found = await self.read((session.username, session.domain), child.ns)
            # §3.2: what nothing was stored for comes back as it was asked (empty).
            reply_query.append(found if found is not None else Element(child.name, child.ns))
        _reply(session, iq, reply_query)

    async def _set(self, session: C2SSession, iq: Element) -> None:
        query = _own_query(session, iq)
        fragments = _fragments(query)
        owner = (session.username, session.domain)
        for fragment in fragments:
            await self.write(owner, fragment)
            interceptor = self.interceptors.get(fragment.ns)
            if interceptor is not None:
                await interceptor.stored(session, fragment)
        _reply(session, iq, None)


def _own_query(session: C2SSession, iq: Element) -> Element:
    """The <query/> of an IQ to the user's own account; forbidden for anyone else's."""
    to = iq.get("to")
    if to:
        bare = to.partition("/")[0]
        if bare not in (session.bare, session.domain):
            # XEP-0049 §3: "the server MUST NOT allow any entity other than an authorized
            # resource of the user's account to read or write".
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "private data is the owner's only")
    query = iq.find("query", PRIVATE)
    if query is None:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "no jabber:iq:private query")
    return query


def _fragments(query: Element) -> list[Element]:
    children = [c for c in query.children if isinstance(c, Element)]
    if not children:
        # XEP-0049 §3.1: "at least one child element".
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the query has no child element")
    for child in children:
        if child.ns in _RESERVED:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"no private data can be kept in the namespace {child.ns!r}",
            )
    return children


def _reply(session: C2SSession, iq: Element, payload: Element | None) -> None:
    reply = iq_result(iq, payload)
    reply.attrs["to"] = session.full
    reply.attrs.pop("from", None)
    session.send(reply)
