"""XEP-0313 message archive management for accounts and rooms, with XEP-0059
paging and XEP-0359 stanza ids.

What it registers (nothing when ``enabled = false``):

- a routing stage (`stage.py`, priority 50) that archives chat and normal
  messages between accounts in both parties' archives (`policy.py` says which
  messages and which preferences) and stamps the recipient's copy with
  ``<stanza-id by='recipient bare JID'/>``, after removing any a client forged;
- IQ handlers on the own bare JID (or no 'to'): a query (set), the query form
  (get), the archive metadata (get, ``urn:xmpp:mam:2#extended``), and the
  preferences (get/set, XEP-0313 §7).  A query to another account's JID is
  ``forbidden``;
- a periodic purge (`max_age_days`, `max_messages_per_account`), armed at start.

Writes never happen on the routing path: rows go to a bounded queue written in
batches (`writer.py`).  Storage: `storage/repositories/archive.py`.

The room archive API (for the rooms module, which loads after this one):
``ctx.modules["mam"].module.service`` is the `ArchiveService` (None when the
archive is disabled), with

- ``append_room(room_jid, stanza, occupant_nick, sender_bare, stanza_id=None) -> str``:
  queue the room's message as occupants got it; returns its archive id, the
  stanza-id (by the room JID) to give occupants.  To put the id into the
  stanza before archiving it, take one from ``new_stanza_id()[0]`` and pass it
  as `stanza_id` (ids must be this archive's time-ordered ids);
- ``answer_query(session, iq, owner_jid)`` (alias ``query``): answer an
  XEP-0313 query IQ on any archive, a room's included (raises StanzaError; who
  may query is the caller's decision; results come ``from`` owner_jid);
  ``answer_form(session, iq)`` and ``answer_metadata(session, iq, owner_jid)``
  for the form and the metadata;
- ``retract(owner, stanza_id, tombstone=None) -> bool`` (a coroutine): XEP-0425
  moderation, replacing the archived message by `tombstone` or deleting it;
- ``delete_archive(owner)`` (a coroutine): a destroyed room's archive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatgate.jid import JID
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    OnStart,
    Registration,
    Spec,
    Stage,
)
from chatgate.modules.mam.policy import MAM_EXTENDED, SID
from chatgate.modules.mam.service import ArchiveService, LocalPrefsCache, share_prefs_changes
from chatgate.modules.mam.stage import PRIORITY, ArchiveStage
from chatgate.modules.mam.writer import ArchiveWriter
from chatgate.randomness import random_bytes
from chatgate.storage.repositories.archive import ArchiveRepository
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import MAM
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.context import ServerContext

__all__ = ["ArchiveService", "MessageArchive"]

log = logging.getLogger(__name__)


class MamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Archive messages between accounts and answer XEP-0313 queries (the rooms
    module archives rooms through it too)."""
    default: Literal["always", "never", "roster"] = "always"
    """What an account that set no preferences gets archived: every message
    (`always`), none (`never`), or those with contacts in its roster (`roster`)."""
    max_age_days: int = Field(default=0, ge=0)
    """Messages older than this many days are deleted by the periodic purge
    (accounts' and rooms' archives); 0 keeps them forever."""
    max_messages_per_account: int = Field(default=0, ge=0)
    """The periodic purge keeps at most this many of each account's newest
    messages; 0: no limit."""
    purge_interval_seconds: int = Field(default=3600, ge=10)
    """Seconds between two runs of the purge (the first runs this long after start)."""
    default_page: int = Field(default=50, ge=1)
    """Messages per page when a query names no RSM <max/> (at most `max_page`)."""
    max_page: int = Field(default=250, ge=1)
    """Messages per page at most: a larger RSM <max/> is lowered to it (XEP-0059 §2.1),
    the answer says complete='false' and the client pages on."""
    max_page_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Stored bytes one page may carry: a page stops before the message that would
    pass it (complete='false'), so one query cannot fill the session's buffers."""
    count_results: bool = False
    """Give every answer the XEP-0059 <count/> of all results.  It costs a scan of
    every matching message (12 ms for 100,000 on SQLite, where the page itself
    takes 0.3 ms), and clients page without it; a query with <max>0</max> always
    gets it."""
    max_queries_per_account: int = Field(default=4, ge=1)
    """Archive queries one account may have running at once (on its own archive and
    rooms' together); more: resource-constraint."""
    queue_messages: int = Field(default=10_000, ge=1)
    """Archive rows waiting to be written, at most (a full queue archives nothing
    until the database catches up, logged once per episode)."""
    queue_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Bytes of archive rows waiting to be written, at most."""
    batch_messages: int = Field(default=200, ge=1)
    """Rows written per transaction."""
    prefs_cache_entries: int = Field(default=10_000, ge=1)
    """Accounts whose preferences are kept in memory for routing."""


class MessageArchive:
    name: ClassVar[str] = "mam"
    depends: ClassVar[tuple[str, ...]] = ("roster",)
    implements: ClassVar[tuple[Spec, ...]] = (
        Spec("XEP-0313", "1.1.1"),
        Spec("XEP-0059", "1.0.0"),
        Spec("XEP-0359", "0.7.0"),
    )
    Options = MamOptions

    def __init__(self) -> None:
        #: the archive service (the room archive API); None when disabled
        self.service: ArchiveService | None = None
        self._purge_timer: asyncio.TimerHandle | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, MamOptions)
        if not options.enabled:
            return
        self.ctx = ctx
        self.options = options
        repository = ArchiveRepository(ctx.db.engine)
        roster_record = ctx.modules.get("roster")
        roster = getattr(roster_record.module, "service", None) if roster_record else None

        def writer(service: ArchiveService) -> ArchiveWriter:
            return ArchiveWriter(
                repository,
                service.screen,
                ctx.spawn,
                max_rows=options.queue_messages,
                max_bytes=options.queue_bytes,
                batch=options.batch_messages,
            )

        prefs_cache = LocalPrefsCache(options.prefs_cache_entries)
        self.service = ArchiveService(
            repository,
            writer,
            roster,
            default_mode=options.default,
            default_page=options.default_page,
            max_page=options.max_page,
            max_page_bytes=options.max_page_bytes,
            max_queries_per_account=options.max_queries_per_account,
            prefs_cache=prefs_cache,
            count_results=options.count_results,
            random_bytes=random_bytes,
        )
        # The cache's entries are this node's; in a cluster a change stored on
        # one node is forgotten on the others (`LocalPeers`: nothing to tell).
        self.service.prefs_stored = share_prefs_changes(ctx.peers, prefs_cache)
        yield Stage(ArchiveStage(self.service), PRIORITY)
        yield IqHandler(MAM, "set", self._query_set, to_account=True)
        yield IqHandler(MAM, "get", self._query_get, to_account=True)
        yield DiscoFeature(MAM, on_account=True)
        yield DiscoFeature(MAM_EXTENDED, on_account=True)
        yield DiscoFeature(SID, on_account=True)
        if options.max_age_days or options.max_messages_per_account:
            yield OnStart(self._arm_purge)

    # ------------------------------------------------------------ IQs

    def _own(self, session: C2SSession, iq: Element) -> None:
        """XEP-0313 §4: an account queries its own archive only."""
        to = iq.get("to")
        if to is None:
            return
        jid = JID.parse(to)
        if jid.resource or jid.local != session.username or jid.domain != session.domain:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "only your own archive")

    async def _query_set(self, session: C2SSession, iq: Element) -> None:
        assert self.service is not None
        self._own(session, iq)
        payload = _payload(iq)
        if payload.name == "query":
            await self.service.answer_query(session, iq, session.bare)
        elif payload.name == "prefs":
            await self.service.answer_prefs_set(session, iq)
        else:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"<{payload.name[:64]}/>?")

    async def _query_get(self, session: C2SSession, iq: Element) -> None:
        assert self.service is not None
        self._own(session, iq)
        payload = _payload(iq)
        if payload.name == "query":
            self.service.answer_form(session, iq)
        elif payload.name == "metadata":
            await self.service.answer_metadata(session, iq, session.bare)
        elif payload.name == "prefs":
            await self.service.answer_prefs_get(session, iq)
        else:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"<{payload.name[:64]}/>?")

    # ------------------------------------------------------------ retention

    async def _arm_purge(self) -> None:
        loop = asyncio.get_running_loop()
        self._purge_timer = loop.call_later(self.options.purge_interval_seconds, self._tick)

    def _tick(self) -> None:
        self.ctx.spawn(self._purge_once())
        loop = asyncio.get_running_loop()
        self._purge_timer = loop.call_later(self.options.purge_interval_seconds, self._tick)

    async def _purge_once(self) -> None:
        await self.purge()

    async def purge(self) -> int:
        """One run of the retention rules; returns the messages deleted."""
        assert self.service is not None
        repository = self.service.repository
        deleted = 0
        try:
            if self.options.max_age_days:
                cutoff = datetime.now(UTC) - timedelta(days=self.options.max_age_days)
                deleted += await repository.purge_older(cutoff)
            if self.options.max_messages_per_account:
                deleted += await repository.purge_excess(self.options.max_messages_per_account)
        except Exception:
            log.exception("message archive purge failed; the next run tries again")
        if deleted:
            log.info("message archive purge: %d messages deleted", deleted)
        return deleted


def _payload(iq: Element) -> Element:
    for child in iq.children:
        if isinstance(child, Element):
            return child
    raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "no payload")
