"""XEP-0191 blocking command: each account's blocklist, and the stage that enforces it.

What it owns:

* the `urn:xmpp:blocking` IQs (§3.2 get the list, §3.3 block, §3.4 unblock, §3.5
  unblock all), stored by `storage/repositories/blocking.py`, with the pushes to
  the user's resources that asked for pushes (`Router.push`);
* `BlockingStage` (priority 100, before archiving and carbons): a message or IQ
  from a blocked entity never reaches the user (§3.3: messages and IQ get/set
  answered `service-unavailable`, other IQs dropped), and what the user sends to
  a blocked JID is refused with `not-acceptable` and
  ``<blocked xmlns='urn:xmpp:blocking:errors'/>`` (§3.3);
* `BlockingPresenceFilter`, which `modules/presence.py` consults (only when this
  module is loaded): presence between a user and a JID either of them blocks is
  neither broadcast nor probed nor routed, and blocking sends the contact
  unavailable presence from the user's available resources (§3.3).

JID matching is XEP-0016 §2.1's (XEP-0191 §6 points there): an item `d` matches
the domain and everything on it, `d/r` that resource of the domain, `u@d` every
resource of the account, `u@d/r` only that resource.

Blocklists are read in the router's synchronous path, so they are kept in memory
(`BlocklistCache`): pinned while the account has a session on this node, in a
bounded LRU otherwise.  A stanza whose sender's or recipient's list is not in
memory waits (bounded) while it is read, then is routed again in arrival order.
Never awaits inside routing; never writes storage there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from chatgate.jid import JID, InvalidJID
from chatgate.lru import LruCache
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    OnEvent,
    OnStart,
    Registration,
    Spec,
    Stage,
)
from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog
from chatgate.storage.repositories.blocking import BlocklistFull, BlocklistRepository
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import BLOCKING, BLOCKING_ERRORS
from chatgate.xml.element import Element
from chatgate.xmpp.events import SessionBound, SessionClosed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionMovedIn, SessionMovedOut, SessionMovingOut
from chatgate.xmpp.stanza import error_reply, iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.modules.roster.service import RosterService
    from chatgate.xmpp.router import Router

log = logging.getLogger(__name__)


#: stanzas held while one account's list is read, and accounts read at once: a peer
#: can fill these, so past them a stanza is answered resource-constraint (wait)
MAX_WAITING_PER_ACCOUNT = 200
MAX_ACCOUNTS_LOADING = 1000
#: accounts with a non-empty list known by name at most (beyond, every list is read)
MAX_KNOWN_BLOCKERS = 100_000
#: while the database is away, a list it could not give counts as empty this long,
#: for at most this many accounts
UNREAD_SECONDS = 5.0
MAX_UNREAD = 10_000
#: seconds a resynchronisation waits for the cached lists to be read again
RESYNC_WAIT = 10.0

_EMPTY: frozenset[str] = frozenset()


class Options(BaseModel):
    """``[modules.blocking]``"""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer XEP-0191 blocking (XEP-0479 Advanced IM); off: no IQs, no stage, no filter."""
    max_items: int = Field(1000, ge=1, le=100_000)
    """JIDs one account may block; a block past it is refused with resource-constraint."""
    cache_entries: int = Field(10_000, ge=1)
    """Blocklists of accounts with no session on this node kept in memory (LRU)."""
    cache_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Bytes those cached blocklists may take in all."""


def matches(items: frozenset[str], jid: JID) -> bool:
    """XEP-0016 §2.1: does an item of `items` name `jid` (or its account or domain)?"""
    domain = jid.domain
    if domain in items:
        return True
    if jid.local:
        bare = f"{jid.local}@{domain}"
        if bare in items:
            return True
        if jid.resource and f"{bare}/{jid.resource}" in items:
            return True
    elif jid.resource and f"{domain}/{jid.resource}" in items:
        return True
    return False


def _matches_session(items: frozenset[str], session: C2SSession) -> bool:
    return (
        session.domain in items
        or session.bare in items
        or session.full in items
        or f"{session.domain}/{session.resource}" in items
    )


def _matches_bare(items: frozenset[str], bare: str) -> bool:
    """For presence, which goes to accounts: the account or its domain is blocked."""
    return bare in items or bare.partition("@")[2] in items


# ------------------------------------------------------------------ the cache


class BlocklistCache(Protocol):
    """Blocklists in memory, read by the router's synchronous path.

    In a cluster every node keeps its own copy; a change made on one node reaches
    the others through `chatgate.cluster.blocking.BlocklistSync` (the new list,
    applied there with `Blocklists.changed`), so the cache itself stays per node."""

    def get(self, bare: str) -> frozenset[str] | None: ...

    def put(self, bare: str, items: frozenset[str], *, pinned: bool) -> None: ...

    def unpin(self, bare: str) -> None: ...

    def changed(self, bare: str, items: frozenset[str]) -> None: ...

    def forget(self, bare: str) -> None: ...

    def accounts(self) -> list[str]:
        """Every account whose list is in memory."""
        ...

    @property
    def blocking(self) -> int:
        """How many cached lists are not empty (0: presence need not be filtered)."""
        ...


class LocalBlocklistCache:
    """This process's cache: pinned lists for accounts with a session here (bounded
    by the sessions, each list by `max_items`), an LRU bounded in entries and
    bytes for the others."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._pinned: dict[str, frozenset[str]] = {}
        self._recent: LruCache[str, frozenset[str]] = LruCache(
            max_entries, max_bytes, _weigh, on_evict=self._evicted
        )
        self._blocking = 0

    @property
    def blocking(self) -> int:
        return self._blocking

    def get(self, bare: str) -> frozenset[str] | None:
        items = self._pinned.get(bare)
        if items is None:
            items = self._recent.get(bare)
        return items

    def put(self, bare: str, items: frozenset[str], *, pinned: bool) -> None:
        self.forget(bare)
        if pinned:
            self._pinned[bare] = items
        elif not self._recent.put(bare, items):
            return
        if items:
            self._blocking += 1

    def unpin(self, bare: str) -> None:
        items = self._pinned.pop(bare, None)
        if items is not None:
            if items:
                self._blocking -= 1
            self.put(bare, items, pinned=False)

    def changed(self, bare: str, items: frozenset[str]) -> None:
        if bare in self._pinned:
            self.put(bare, items, pinned=True)
        elif bare in self._recent:
            self.put(bare, items, pinned=False)

    def forget(self, bare: str) -> None:
        items = self._pinned.pop(bare, None)
        if items is None:
            items = self._recent.pop(bare)
        if items:
            self._blocking -= 1

    def accounts(self) -> list[str]:
        return [*self._pinned, *self._recent]

    def _evicted(self, _bare: str, items: frozenset[str]) -> None:
        if items:
            self._blocking -= 1


def _weigh(bare: str, items: frozenset[str]) -> int:
    return 64 + len(bare) + sum(49 + len(i) for i in items)


# ------------------------------------------------------------------ the module


class Blocking:
    name: ClassVar[str] = "blocking"
    depends: ClassVar[tuple[str, ...]] = ("roster", "presence")
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0191", "1.3"),)
    Options = Options

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, Options)
        if not options.enabled:
            return
        from chatgate.modules.presence import PresenceModule
        from chatgate.modules.roster.module import RosterModule

        roster = ctx.modules["roster"].module
        presence = ctx.modules["presence"].module
        assert isinstance(roster, RosterModule) and roster.service is not None
        assert isinstance(presence, PresenceModule)
        self.ctx = ctx
        self.options = options
        self.repository = BlocklistRepository(ctx.db.engine)
        self.cache: BlocklistCache = LocalBlocklistCache(options.cache_entries, options.cache_bytes)
        self.lists = Blocklists(ctx, self.repository, self.cache)
        self.stage = BlockingStage(ctx.router, self.lists)
        self.commands = BlockingCommands(ctx, self.lists, roster.service, options.max_items)
        presence.filter = BlockingPresenceFilter(self.lists)
        yield IqHandler(BLOCKING, "get", self.commands.get)
        yield IqHandler(BLOCKING, "set", self.commands.set)
        yield DiscoFeature(BLOCKING)
        yield Stage(self.stage, priority=100)
        if ctx.cluster is not None and ctx.peers.clustered:
            from chatgate.cluster.blocking import BlocklistSync

            # Every node's blocks reach this node's cache and set of blockers.
            self.sync = BlocklistSync(ctx.cluster, ctx.peers, self.lists)
        yield OnStart(self.lists.learn_blockers)
        yield OnEvent(SessionBound, self.lists.session_bound)
        yield OnEvent(SessionClosed, self.lists.session_closed, priority=-100)
        yield OnEvent(SessionClosed, self.commands.session_closed)
        # A session resumed on another node (XEP-0198 across a cluster) still gets
        # the pushes it asked for; this node unpins what it no longer needs.
        yield OnEvent(SessionMovingOut, self.commands.moving_out)
        yield OnEvent(SessionMovedOut, self.commands.moved_out)
        yield OnEvent(SessionMovedOut, self.lists.moved_out, priority=-100)
        yield OnEvent(SessionMovedIn, self.commands.moved_in)


class Blocklists:
    """Reading lists into the cache, once per account at a time, and replaying what
    waited for them in arrival order."""

    def __init__(
        self, ctx: ServerContext, repository: BlocklistRepository, cache: BlocklistCache
    ) -> None:
        self.ctx = ctx
        self.repository = repository
        self.cache = cache
        #: accounts being read, with the stanzas that wait for them
        self.waiting: dict[str, deque[tuple[C2SSession, Element]]] = {}
        self._loads: dict[str, asyncio.Future[frozenset[str]]] = {}
        #: lists changed while being read: read again
        self._dirty: set[str] = set()
        #: the stanza being routed again after its wait (it must not wait again)
        self.replaying: Element | None = None
        #: lists just read, for the stanzas that waited for them (a list too large
        #: for the LRU is used for those and read again next time)
        self._fresh: dict[str, frozenset[str]] = {}
        #: one line per outage of the database, not a traceback per stanza
        self._outage = OutageLog(log, "blocklists")
        #: lists the database could not give, counted empty until this loop time (a
        #: few seconds: not read again for every stanza while the database is away)
        self._unread: dict[str, float] = {}
        #: the accounts whose list is not empty (read at start, grown by blocks): any
        #: other's list is empty without a read, so a login costs no query for the
        #: many who block nobody.  None: not known (a cluster, or too many), read all.
        self.blockers: set[str] | None = None
        #: tells the other nodes of a cluster about a change made here (None: alone);
        #: awaiting it means they were sent it
        self.share: Callable[[str, frozenset[str]], Awaitable[None]] | None = None

    async def learn_blockers(self) -> None:
        self.blockers = await self.repository.blockers(MAX_KNOWN_BLOCKERS)

    def learned(self, bare: str, items: frozenset[str]) -> None:
        """Another node changed `bare`'s list to `items`: applied here at once, and
        kept in memory (a presence filter needs it without a read), then read again
        from the database, which settles two changes made at once on two nodes."""
        self.changed(bare, items)
        if self.cache.get(bare) is None:
            self.cache.put(bare, items, pinned=self.ctx.router.directory.bound_here(bare))
        self.reload(bare)

    def reload(self, bare: str) -> None:
        """Read `bare`'s list again (another node changed it; concurrent changes
        on two nodes may have crossed): the cached list applies meanwhile."""
        if bare in self._loads:
            self._dirty.add(bare)
        elif self.cache.get(bare) is not None:
            self.load(bare)

    async def resync(self) -> None:
        """After changes may have been missed (a cluster's Redis came back): the set
        of blockers and every cached list are read again, and this returns once
        they have been (up to `RESYNC_WAIT` seconds), so that what runs after a
        cluster's resynchronisation (`ClusterNode.on_resynced`) sees them."""
        try:
            await self.learn_blockers()
        except StorageUnavailable as exc:
            self._outage.failed("reading the accounts with a blocklist", exc)
            self.blockers = None
        reads: list[asyncio.Future[frozenset[str]]] = []
        for bare in self.cache.accounts():
            self.reload(bare)
            read = self._loads.get(bare)
            if read is not None:
                reads.append(read)
        if reads:
            await asyncio.wait(reads, timeout=RESYNC_WAIT)

    def get(self, bare: str) -> frozenset[str] | None:
        items = self.cache.get(bare)
        if items is None:
            if self._fresh:
                items = self._fresh.get(bare)
            if items is None and self.blockers is not None and bare not in self.blockers:
                return _EMPTY
            if items is None and self._unread:
                until = self._unread.get(bare)
                if until is not None:
                    if asyncio.get_running_loop().time() < until:
                        return _EMPTY
                    del self._unread[bare]
        return items

    def _unreadable(self, bare: str) -> None:
        if len(self._unread) >= MAX_UNREAD:
            self._unread.clear()  # bounded: the oldest outage's entries go first
        self._unread[bare] = asyncio.get_running_loop().time() + UNREAD_SECONDS

    def load(self, bare: str) -> Awaitable[frozenset[str]]:
        """The account's list, read into the cache when missing (one read at a time)."""
        future = self._loads.get(bare)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._loads[bare] = future
            self.waiting.setdefault(bare, deque())
            self.ctx.spawn(self._read(bare, future))
        return future

    async def get_or_load(self, bare: str) -> frozenset[str]:
        items = self.get(bare)
        if items is None:
            items = await self.load(bare)
        return items

    def wait(self, bare: str, origin: C2SSession, stanza: Element) -> bool:
        """Hold `stanza` until `bare`'s list is read; False when too much waits."""
        queue = self.waiting.get(bare)
        if queue is None:
            if len(self.waiting) >= MAX_ACCOUNTS_LOADING:
                return False
            self.load(bare)
            queue = self.waiting[bare]
        if len(queue) >= MAX_WAITING_PER_ACCOUNT:
            return False
        queue.append((origin, stanza))
        return True

    async def _read(self, bare: str, future: asyncio.Future[frozenset[str]]) -> None:
        local, _, domain = bare.partition("@")
        try:
            try:
                while True:
                    self._dirty.discard(bare)
                    items = await self.repository.items((local, domain))
                    if bare not in self._dirty:
                        break
            except StorageUnavailable as exc:
                # The database is out of reach: sessions keep chatting (a cluster's
                # sender reads a recipient's list on another node this way).  The list
                # counts as empty for the stanzas that waited for it, and nothing is
                # cached: the next stanza reads it again.  Lists of accounts with a
                # session here are pinned and keep applying.
                self._outage.failed(f"reading the blocklist of {bare} (none meanwhile)", exc)
                self._unreadable(bare)
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller may not be waiting
                items = _EMPTY
            else:
                pinned = self.ctx.router.directory.bound_here(bare)
                self.cache.put(bare, items, pinned=pinned)
                if not future.done():
                    future.set_result(items)
            queue = self.waiting.get(bare, deque())
            self._fresh[bare] = items
            while queue:
                origin, stanza = queue.popleft()
                self.replaying = stanza
                try:
                    pending = self.ctx.router.route(origin, stanza)
                finally:
                    self.replaying = None
                if pending is not None:
                    try:
                        await pending
                    except StorageUnavailable as exc:
                        # as the connection answers a stanza whose storage failed
                        self._outage.failed(f"routing a stanza of {origin.full}", exc)
                        _refuse(origin, stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
        except Exception as exc:
            log.exception("could not read the blocklist of %s", bare)
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a caller may not be waiting
            for origin, stanza in self.waiting.get(bare, ()):
                _refuse(origin, stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
        finally:
            self.waiting.pop(bare, None)
            self._loads.pop(bare, None)
            self._fresh.pop(bare, None)

    def changed(self, bare: str, items: frozenset[str]) -> None:
        if items and self.blockers is not None:
            self.blockers.add(bare)
            if len(self.blockers) > MAX_KNOWN_BLOCKERS:
                self.blockers = None  # too many to keep: read every list again
        if bare in self._loads:
            self._dirty.add(bare)
        if bare in self._fresh:
            self._fresh[bare] = items
        self.cache.changed(bare, items)
        if self.cache.get(bare) is None and self.ctx.router.directory.bound_here(bare):
            # Its login read nothing (it blocked nobody): pinned from now on.
            self.cache.put(bare, items, pinned=True)

    # ---------------------------------------------------------- lifecycle

    def session_bound(self, event: SessionBound) -> None:
        bare = event.session.bare
        if self.blockers is not None and bare not in self.blockers:
            return  # blocks nobody: nothing to read or pin
        items = self.cache.get(bare)
        if items is None:
            self.load(bare)
        else:
            self.cache.put(bare, items, pinned=True)

    def session_closed(self, event: SessionClosed | SessionMovedOut) -> None:
        bare = event.session.bare
        if not self.ctx.router.directory.bound_here(bare):
            self.cache.unpin(bare)

    moved_out = session_closed


def _refuse(
    origin: C2SSession,
    stanza: Element,
    condition: StanzaErrorCondition,
    text: str = "",
    *,
    blocked: bool = False,
) -> None:
    """Answer `origin` with an error for `stanza` (never an error for an error)."""
    if stanza.get("type") in ("error", "result"):
        return
    reply = error_reply(stanza, condition, text, error_type="cancel" if blocked else None)
    reply.attrs["to"] = origin.full
    if blocked:
        error = reply.find("error", ns.CLIENT)
        assert error is not None
        error.sub("blocked", BLOCKING_ERRORS)
    origin.send(reply)


class BlockingStage:
    """Enforcement on messages and IQs between accounts (XEP-0191 §3.3)."""

    def __init__(self, router: Router, lists: Blocklists) -> None:
        self.router = router
        self.lists = lists

    def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
        lists = self.lists
        recipient = f"{to.local}@{to.domain}"
        if recipient == origin.bare:
            return True  # an account's own resources are never blocked from it
        if lists.waiting and stanza is not lists.replaying:
            # Keep arrival order behind stanzas that wait for either list.
            for bare in (origin.bare, recipient):
                if bare in lists.waiting:
                    return self._wait(bare, origin, stanza)
        mine = lists.get(origin.bare)
        if mine is None:
            return self._wait(origin.bare, origin, stanza)
        theirs = lists.get(recipient)
        if theirs is None:
            return self._wait(recipient, origin, stanza)
        if mine and matches(mine, to):
            # §3.3: the user's server refuses what the user sends to a blocked JID.
            _refuse(origin, stanza, StanzaErrorCondition.NOT_ACCEPTABLE, blocked=True)
            return False
        if theirs and _matches_session(theirs, origin):
            # §3.3: from a blocked entity: messages and IQ get/set answered
            # service-unavailable (the user looks offline), IQ results and errors dropped.
            _refuse(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return False
        return True

    def delivered(self, stanza: Element, to: JID, targets: Sequence[C2SSession]) -> None:
        return None

    def _wait(self, bare: str, origin: C2SSession, stanza: Element) -> bool:
        if not self.lists.wait(bare, origin, stanza):
            _refuse(
                origin,
                stanza,
                StanzaErrorCondition.RESOURCE_CONSTRAINT,
                "too many stanzas waiting for blocklists",
            )
        return False


class BlockingPresenceFilter:
    """What `modules/presence.py` asks (its `PresenceFilter`): presence never passes
    between an account and one it blocks or that blocks it.  Presence goes to
    accounts, so items naming an account or a domain count here; an item naming one
    resource blocks that resource's messages and IQs only."""

    def __init__(self, lists: Blocklists) -> None:
        self.lists = lists

    def ready(self, bare: str) -> bool:
        return self.lists.get(bare) is not None

    async def load(self, bare: str) -> None:
        await self.lists.get_or_load(bare)

    def visible(self, bare: str, others: Iterable[str]) -> Iterable[str]:
        lists = self.lists
        if not lists.cache.blocking:
            return others
        mine = lists.get(bare) or _EMPTY
        kept = []
        for other in others:
            if mine and _matches_bare(mine, other):
                continue
            theirs = lists.get(other)
            if (
                theirs is None
                and other not in lists.waiting
                and len(lists.waiting) < MAX_ACCOUNTS_LOADING
            ):
                # Not in memory (a contact with no session here, evicted): read it
                # for the next presence; this one cannot wait.
                lists.load(other)
            if theirs and _matches_bare(theirs, bare):
                continue
            kept.append(other)
        return kept

    async def hides(self, bare: str, other: str) -> bool:
        mine = await self.lists.get_or_load(bare)
        if mine and _matches_bare(mine, other):
            return True
        if other.partition("@")[2] not in self.lists.ctx.hosts:
            return False
        theirs = await self.lists.get_or_load(other)
        return bool(theirs) and _matches_bare(theirs, bare)


class BlockingCommands:
    """The `urn:xmpp:blocking` IQs of a user about its own list."""

    def __init__(
        self, ctx: ServerContext, lists: Blocklists, rosters: RosterService, max_items: int
    ) -> None:
        self.ctx = ctx
        self.lists = lists
        self.rosters = rosters
        self.max_items = max_items
        #: this node's sessions that requested their blocklist: they get the pushes
        #: (§3.3), even without the roster; forgotten when they close
        self.asked: set[C2SSession] = set()

    def session_closed(self, event: SessionClosed) -> None:
        self.asked.discard(event.session)

    def moving_out(self, event: SessionMovingOut) -> None:
        if event.session in self.asked:
            event.carry["blocking"] = "1"

    def moved_out(self, event: SessionMovedOut) -> None:
        self.asked.discard(event.session)

    def moved_in(self, event: SessionMovedIn) -> None:
        if event.carry.get("blocking") == "1":
            self.asked.add(event.session)

    async def get(self, session: C2SSession, iq: Element) -> None:
        """§3.2: the list, an empty <blocklist/> when there is none."""
        if iq.find("blocklist", BLOCKING) is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "expected <blocklist/>")
        self.asked.add(session)
        items = await self.lists.get_or_load(session.bare)
        payload = Element("blocklist", BLOCKING)
        for jid in sorted(items):
            payload.sub("item", BLOCKING, {"jid": jid})
        self._reply(session, iq, payload)

    async def set(self, session: C2SSession, iq: Element) -> None:
        block = iq.find("block", BLOCKING)
        unblock = iq.find("unblock", BLOCKING)
        if (block is None) == (unblock is None):
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "expected <block/> or <unblock/>")
        owner = (session.username, session.domain)
        bare = session.bare
        await self.lists.get_or_load(bare)  # a change always finds the list in memory
        if block is not None:
            jids = self._items(block)
            if not jids:
                # §3.3: a <block/> without items is bad-request.
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "nothing to block")
            try:
                changed = await self.lists.repository.block(owner, jids, self.max_items)
            except BlocklistFull as exc:
                raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, str(exc)) from None
            current = frozenset(await self.lists.repository.items(owner))
        else:
            assert unblock is not None
            jids = self._items(unblock)
            # §3.5: an <unblock/> without items unblocks every JID.
            changed = await self.lists.repository.unblock(owner, jids or None)
            current = frozenset(await self.lists.repository.items(owner))
        self.lists.changed(bare, current)
        if self.lists.share is not None:
            # Every node applies the new list before the user hears it is done.
            await self.lists.share(bare, current)
        self._reply(session, iq, None)
        if block is not None:
            if changed:
                self._push("block", bare, changed)
                await self._presence_on_block(owner, bare, changed)
        elif changed:
            self._push("unblock", bare, [] if not jids else changed)
            await self._presence_on_unblock(owner, bare, changed, current)

    def _items(self, parent: Element) -> list[str]:
        """The prepared JIDs of `parent`'s <item/>s; jid-malformed for a bad one."""
        jids: list[str] = []
        for item in parent.find_all("item", BLOCKING):
            text = item.get("jid")
            if not text:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "an <item/> needs a jid")
            try:
                jids.append(str(JID.parse(text)))
            except InvalidJID as exc:
                raise StanzaError(StanzaErrorCondition.JID_MALFORMED, str(exc)) from None
            if len(jids) > self.max_items:
                raise StanzaError(
                    StanzaErrorCondition.RESOURCE_CONSTRAINT,
                    f"at most {self.max_items} items at once",
                )
        return jids

    def _reply(self, session: C2SSession, iq: Element, payload: Element | None) -> None:
        reply = iq_result(iq, payload)
        reply.attrs["to"] = session.full
        reply.attrs.pop("from", None)
        session.send(reply)

    def _push(self, name: str, bare: str, jids: Sequence[str]) -> None:
        """§3.3/§3.4: the change to every resource that asked for pushes."""
        payload = Element(name, BLOCKING)
        for jid in jids:
            payload.sub("item", BLOCKING, {"jid": jid})
        self.ctx.router.push(bare, payload, also=self.asked.__contains__)

    async def _presence_on_block(
        self, owner: tuple[str, str], bare: str, jids: Sequence[str]
    ) -> None:
        """§3.3: a newly blocked contact allowed to see the user's presence gets
        unavailable from each available resource; the user's resources see the
        contact go unavailable too, since its presence stops reaching them."""
        roster = await self.rosters.read(owner)
        router = self.ctx.router
        for jid in jids:
            if "@" not in jid or "/" in jid:
                continue  # domains and single resources: nothing to withdraw at once
            if jid in roster.presence_subscribers:
                router.send_unavailable_of(bare, jid)
            if jid in roster.presence_sources:
                router.send_unavailable_of(jid, bare)

    async def _presence_on_unblock(
        self, owner: tuple[str, str], bare: str, jids: Sequence[str], current: frozenset[str]
    ) -> None:
        """§3.4: an unblocked contact allowed to see the user's presence gets it again,
        and the user gets the contact's (unless something else still blocks it)."""
        roster = await self.rosters.read(owner)
        router = self.ctx.router
        for jid in jids:
            if "@" not in jid or "/" in jid or _matches_bare(current, jid):
                continue
            theirs = self.lists.get(jid)
            if theirs and _matches_bare(theirs, bare):
                continue
            if jid in roster.presence_subscribers:
                router.send_presence_of(bare, jid)
            if jid in roster.presence_sources:
                router.send_presence_of(jid, bare)
