"""The archive service: what the stage, the IQ handlers and the rooms module call.

`archive_chat` (from the routing stage, synchronous) decides, for a message
between two accounts, which of the two archives keep it, queues a row for
each and stamps the recipient's copy with its XEP-0359 stanza-id;
`append_room` queues a room's message (for the rooms module); `answer_query`
answers an XEP-0313 query on any archive, an account's or a room's; `retract`
replaces or deletes one message (XEP-0425 moderation); `prefs_*` answer
XEP-0313 §7 preferences.

Preferences are decided twice.  Routing cannot wait for storage, so it decides
with what is in memory (the prefs cache, the roster of an account with a
session here) and, when something is not in memory, assumes the message is
kept: that decides only whether the recipient's copy gets a stanza-id.  The
writer then decides for good, with preferences and rosters read from storage
when needed (`screen`), before anything is written.

Queries are bounded: `max_page` messages (RSM max above it is
lowered to it), `max_page_bytes` of stored text (a page stops early,
complete='false', when the next message would pass it), and
`max_queries_per_account` queries at once per asking account, whichever
archive they read (resource-constraint beyond: a hundred occupants of a room
fetching its history together are a hundred askers, not one).  Every query
first waits for the rows queued before it (`flush`), so what was just sent is
in the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from chatgate.jid import JID
from chatgate.lru import LruCache
from chatgate.modules.mam import ids as archive_ids
from chatgate.modules.mam.policy import (
    MODES,
    SID,
    decide,
    strip_stanza_ids,
    verdict,
    worth_archiving,
)
from chatgate.modules.mam.query import fin, parse_query, query_form, stamp
from chatgate.modules.mam.writer import ArchiveWriter, QueuedRow
from chatgate.modules.roster.service import RosterService
from chatgate.peers import Peers
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.archive import (
    ArchivePrefs,
    ArchiveRepository,
    NewArchiveRow,
    UnknownArchiveId,
)
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import DELAY, FORWARD, MAM
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import escape_attr, serialize
from chatgate.xmpp.session import STANZAS, C2SSession
from chatgate.xmpp.stanza import iq_result

log = logging.getLogger(__name__)

#: nesting allowed when reading stored messages back (as offline storage does)
STORED_MAX_DEPTH = 1000
#: JIDs in each preference list at most
MAX_PREF_JIDS = 500
#: messages are stored as standalone elements (their namespace declared), so that
#: an answer can write the stored text inside <forwarded/> as it is
STANDALONE = ""
#: how stored text this server wrote begins (anything else is parsed back first)
_SPLICEABLE = '<message xmlns="jabber:client"'


class PrefsCache(Protocol):
    """Accounts' archiving preferences kept in memory for the routing path and
    the writer.  Entries expire.  In a cluster, a node that stores new
    preferences tells the others (`share_prefs_changes`), which forget their
    entry; a notice lost (Redis away) leaves the old preferences for at most the
    entry's lifetime."""

    def get(self, owner: str) -> ArchivePrefs | None: ...

    def put(self, owner: str, prefs: ArchivePrefs) -> None: ...

    def forget(self, owner: str) -> None: ...


class LocalPrefsCache:
    """In-process `PrefsCache`: an LRU bounded in entries and bytes, each entry
    trusted for `ttl` seconds of `clock`."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int = 16 * 1024 * 1024,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: LruCache[str, tuple[ArchivePrefs, float]] = LruCache(
            max_entries, max_bytes, _weigh_prefs
        )
        self.ttl = ttl
        self._clock = clock

    def get(self, owner: str) -> ArchivePrefs | None:
        entry = self._cache.get(owner)
        if entry is None:
            return None
        prefs, until = entry
        if self._clock() > until:
            self._cache.pop(owner)
            return None
        return prefs

    def put(self, owner: str, prefs: ArchivePrefs) -> None:
        self._cache.put(owner, (prefs, self._clock() + self.ttl))

    def forget(self, owner: str) -> None:
        self._cache.pop(owner)


#: the `ctx.peers` topic of "this account stored new preferences"
PREFS_TOPIC = "mam-prefs"


def share_prefs_changes(peers: Peers, cache: PrefsCache) -> Callable[[str], object]:
    """Keep `cache` in step with the other nodes': what another node says was
    stored is forgotten here (read again from the database when next needed), and
    the returned callable tells the others what this node stored.  One process
    (`LocalPeers`): nobody to tell, nothing heard."""

    def heard(_sender: str, owner: bytes) -> None:
        cache.forget(owner.decode(errors="replace"))

    peers.on_message(PREFS_TOPIC, heard)
    return lambda owner: peers.broadcast(PREFS_TOPIC, owner.encode())


def _weigh_prefs(owner: str, entry: tuple[ArchivePrefs, float]) -> int:
    prefs = entry[0]
    return 120 + len(owner) + sum(len(j) + 60 for j in (*prefs.always, *prefs.never))


class ArchiveService:
    """See the module docstring.  The rooms module reaches it as
    ``ctx.modules["mam"].module.service``."""

    def __init__(
        self,
        repository: ArchiveRepository,
        writer_factory: Callable[[ArchiveService], ArchiveWriter],
        roster: RosterService | None,
        *,
        default_mode: str,
        default_page: int,
        max_page: int,
        max_page_bytes: int,
        max_queries_per_account: int,
        prefs_cache: PrefsCache,
        count_results: bool = False,
        random_bytes: Callable[[int], bytes],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.roster = roster
        self.default_prefs = ArchivePrefs(default_mode)
        self.default_page = min(default_page, max_page)
        self.max_page = max_page
        self.max_page_bytes = max_page_bytes
        self.max_queries = max_queries_per_account
        self.count_results = count_results
        self.prefs_cache = prefs_cache
        #: told the owner's bare JID after new preferences are stored (the other
        #: nodes of a cluster forget theirs: `share_prefs_changes`)
        self.prefs_stored: Callable[[str], object] = lambda owner: None
        self.now = now
        self._ids = archive_ids.IdGenerator(random_bytes)
        self._running: dict[str, int] = {}
        self.writer = writer_factory(self)

    # ------------------------------------------------------------ archiving

    def new_stanza_id(self) -> tuple[str, datetime]:
        """A fresh archive id and the time it stands for."""
        ids = self._ids
        archive_id = ids.next(archive_ids.millis(self.now()))
        return archive_id, datetime.fromtimestamp(ids.last_ms / 1000, UTC)

    def archive_chat(self, stanza: Element, sender: JID, recipient: JID) -> None:
        """A message `sender` (a full JID) sends to the account `recipient`: remove
        stanza-ids forged in the recipient's name; if worth archiving, queue it for
        the recipient's and the sender's archives (those whose preferences, as
        known in memory, keep it) and give the recipient's copy its stanza-id."""
        to_bare = f"{recipient.local}@{recipient.domain}"
        strip_stanza_ids(stanza, to_bare)
        if not worth_archiving(stanza):
            return
        from_bare = f"{sender.local}@{sender.domain}"
        text = serialize(stanza, STANDALONE)
        if self._keeps_now(to_bare, from_bare):
            archive_id, moment = self.new_stanza_id()
            row = NewArchiveRow(
                to_bare,
                (recipient.local, recipient.domain),
                archive_id,
                from_bare,
                sender.resource,
                moment,
                text,
            )
            if self.writer.offer(row, from_bare):
                stanza.sub("stanza-id", SID, {"id": archive_id, "by": to_bare})
        if from_bare != to_bare and self._keeps_now(from_bare, to_bare):
            archive_id, moment = self.new_stanza_id()
            row = NewArchiveRow(
                from_bare,
                (sender.local, sender.domain),
                archive_id,
                to_bare,
                recipient.resource,
                moment,
                text,
                # what was sent to no account bounced: not history
                peer_account=(recipient.local, recipient.domain),
            )
            self.writer.offer(row, to_bare)

    def _keeps_now(self, owner: str, contact: str) -> bool:
        prefs = self.prefs_cache.get(owner)
        if prefs is None:
            return True  # not known here: the writer decides
        return decide(prefs, contact, lambda jid: self._in_cached_roster(owner, jid))

    def _in_cached_roster(self, owner: str, contact: str) -> bool:
        if self.roster is None:
            return False
        local, _, domain = owner.partition("@")
        roster = self.roster.cached((local, domain))
        return True if roster is None else contact in roster.items

    async def screen(self, queued: Sequence[QueuedRow]) -> list[NewArchiveRow]:
        """The writer's final decision: the rows the owners' preferences keep."""
        kept = []
        for item in queued:
            row = item.row
            if item.contact is None or row.account is None:
                kept.append(row)
                continue
            decided = verdict(await self.prefs(row.account), item.contact)
            if decided is None:
                decided = await self._in_roster(row.account, item.contact)
            if decided:
                kept.append(row)
        return kept

    async def _in_roster(self, account: tuple[str, str], contact: str) -> bool:
        if self.roster is None:
            return False
        return await self.roster.item(account, contact) is not None

    def append_room(
        self,
        room_jid: str,
        stanza: Element,
        occupant_nick: str,
        sender_bare: str | None,
        stanza_id: str | None = None,
    ) -> str:
        """Queue a room's message (as its occupants got it) for the room's archive and
        return its archive id, which is the XEP-0359 stanza-id (by the room) the
        occupants must see.  `stanza_id`, when given, must come from
        `new_stanza_id()` (time-ordered ids are what paging relies on).  A full
        queue drops it (logged once per episode); the id is returned all the same.
        `sender_bare` is kept for nobody but the log: rooms reveal real JIDs by
        their own rules."""
        if stanza_id is None or not archive_ids.is_archive_id(stanza_id):
            stanza_id, moment = self.new_stanza_id()
        else:
            moment = archive_ids.stamp_of(stanza_id)
        row = NewArchiveRow(
            room_jid,
            None,
            stanza_id,
            room_jid,
            occupant_nick,
            moment,
            serialize(stanza, STANDALONE),
        )
        self.writer.offer(row, None)
        return stanza_id

    async def retract(self, owner: str, stanza_id: str, tombstone: Element | None = None) -> bool:
        """XEP-0425 moderation: replace the message `stanza_id` of `owner`'s archive by
        `tombstone`, or delete it when None.  False when the archive has no such id."""
        text = serialize(tombstone, STANDALONE) if tombstone is not None else None
        if text is None:
            if self.writer.take_back(owner, stanza_id) is not None:
                return True
        elif self.writer.replace_queued(owner, stanza_id, text):
            return True
        return await self.repository.replace(owner, stanza_id, text)

    async def delete_archive(self, owner: str, before: str | None = None) -> int:
        """Delete a room's archive (when the room is destroyed): all of it, or the
        messages with an archive id below `before` (`new_stanza_id` when the room
        ended: a room of the same name made since keeps its own)."""
        await self.writer.flush()
        return await self.repository.delete_owner(owner, before)

    # ------------------------------------------------------------ queries

    async def answer_query(self, session: C2SSession, iq: Element, owner_jid: str) -> None:
        """Answer the XEP-0313 query `iq` (type set) from `session` on the archive of
        `owner_jid`: the result messages to the session, then the IQ result with
        <fin/>.  Who may query is the caller's decision.  Raises StanzaError."""
        query = iq.find("query", MAM)
        if query is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "no <query/>")
        parsed = parse_query(
            query, default_max=self.default_page, limit=self.max_page, count=self.count_results
        )
        asker = session.bare
        running = self._running.get(asker, 0)
        if running >= self.max_queries:
            raise StanzaError(
                StanzaErrorCondition.RESOURCE_CONSTRAINT,
                f"at most {self.max_queries} archive queries at once",
            )
        self._running[asker] = running + 1
        try:
            await self.writer.flush()
            try:
                page = await self.repository.query(owner_jid, parsed.filters, parsed.page)
            except UnknownArchiveId:
                raise StanzaError(
                    StanzaErrorCondition.ITEM_NOT_FOUND, "no message with this id"
                ) from None
        finally:
            left = self._running[asker] - 1
            if left:
                self._running[asker] = left
            else:
                del self._running[asker]
        records = page.records
        complete = page.complete
        # bound the bytes of one answer: keep the messages nearest where the page
        # starts (the oldest going forward, the newest going backward) up to the
        # budget; the first one always goes, so paging never stalls
        backwards = parsed.page.before is not None
        nearest_first = list(reversed(records)) if backwards else records
        total = 0
        for index, record in enumerate(nearest_first):
            total += len(record.stanza)
            if index and total > self.max_page_bytes:
                kept = nearest_first[:index]
                records = list(reversed(kept)) if backwards else kept
                complete = False
                break
        ordered = list(reversed(records)) if parsed.flip else records
        # Each result is the stored text, which this server wrote (well-formed, its
        # namespace declared), inside the <result/> wrapper: no parse and serialize
        # again per message.  Text that does not begin as ours is parsed first.
        queryid = "" if parsed.queryid is None else f' queryid="{escape_attr(parsed.queryid)}"'
        head = (
            f'<message to="{escape_attr(session.full)}" from="{escape_attr(owner_jid)}">'
            f'<result xmlns="{MAM}"{queryid} id="'
        )
        for record in ordered:
            text = record.stanza
            if not text.startswith(_SPLICEABLE):
                original = _restore(text, record.archive_id, owner_jid)
                if original is None:
                    continue
                text = serialize(original, STANDALONE)
            STANZAS.sent += 1
            session.write(
                f'{head}{escape_attr(record.archive_id)}"><forwarded xmlns="{FORWARD}">'
                f'<delay xmlns="{DELAY}" stamp="{stamp(record.stamp)}"/>{text}'
                "</forwarded></result></message>".encode()
            )
        first = ordered[0].archive_id if ordered else None
        last = ordered[-1].archive_id if ordered else None
        reply = iq_result(iq, fin(complete, first, last, page.count))
        reply.attrs["to"] = session.full
        session.send(reply)

    #: the name the rooms module's `RoomArchive` protocol uses
    query = answer_query

    def answer_form(self, session: C2SSession, iq: Element) -> None:
        """XEP-0313 §5: the query form."""
        payload = Element("query", MAM)
        payload.append(query_form())
        reply = iq_result(iq, payload)
        reply.attrs["to"] = session.full
        session.send(reply)

    async def answer_metadata(self, session: C2SSession, iq: Element, owner_jid: str) -> None:
        """urn:xmpp:mam:2#extended: the archive's first and last message."""
        await self.writer.flush()
        meta = await self.repository.metadata(owner_jid)
        payload = Element("metadata", MAM)
        if meta.first is not None and meta.last is not None:
            payload.sub(
                "start", attrs={"id": meta.first.archive_id, "timestamp": stamp(meta.first.stamp)}
            )
            payload.sub(
                "end", attrs={"id": meta.last.archive_id, "timestamp": stamp(meta.last.stamp)}
            )
        reply = iq_result(iq, payload)
        reply.attrs["to"] = session.full
        session.send(reply)

    # ------------------------------------------------------------ preferences

    async def prefs(self, account: tuple[str, str]) -> ArchivePrefs:
        """The account's preferences (the defaults when it set none), cached."""
        owner = f"{account[0]}@{account[1]}"
        prefs = self.prefs_cache.get(owner)
        if prefs is None:
            prefs = await self.repository.prefs(account) or self.default_prefs
            self.prefs_cache.put(owner, prefs)
        return prefs

    async def answer_prefs_get(self, session: C2SSession, iq: Element) -> None:
        prefs = await self.prefs((session.username, session.domain))
        self._send_prefs(session, iq, prefs)

    async def answer_prefs_set(self, session: C2SSession, iq: Element) -> None:
        request = iq.find("prefs", MAM)
        if request is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "no <prefs/>")
        prefs = read_prefs(request)
        account = (session.username, session.domain)
        try:
            await self.repository.set_prefs(account, prefs)
        except AccountNotFound:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such account") from None
        self.prefs_cache.put(session.bare, prefs)
        self.prefs_stored(session.bare)
        self._send_prefs(session, iq, prefs)

    def _send_prefs(self, session: C2SSession, iq: Element, prefs: ArchivePrefs) -> None:
        payload = Element("prefs", MAM, {"default": prefs.default})
        for name, jids in (("always", prefs.always), ("never", prefs.never)):
            box = payload.sub(name)
            for jid in jids:
                box.sub("jid", text=jid)
        reply = iq_result(iq, payload)
        reply.attrs["to"] = session.full
        session.send(reply)


def read_prefs(request: Element) -> ArchivePrefs:
    """XEP-0313 §7.2: the <prefs/> a client sets (bad-request when malformed; more
    than MAX_PREF_JIDS JIDs in a list is not-acceptable)."""
    default = request.get("default")
    if default not in MODES:
        raise StanzaError(
            StanzaErrorCondition.BAD_REQUEST, "default must be always, never or roster"
        )
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("always", "never"):
        box = request.find(name)
        jids: list[str] = []
        if box is not None:
            for el in box.find_all("jid"):
                try:
                    jid = str(JID.parse(el.text.strip()).bare)
                except Exception:
                    raise StanzaError(
                        StanzaErrorCondition.JID_MALFORMED, f"a JID in <{name}/> is malformed"
                    ) from None
                if jid not in jids:
                    jids.append(jid)
        if len(jids) > MAX_PREF_JIDS:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"at most {MAX_PREF_JIDS} JIDs per list"
            )
        lists[name] = tuple(jids)
    return ArchivePrefs(default, lists["always"], lists["never"])


def _restore(text: str, archive_id: str, owner: str) -> Element | None:
    """A stored message parsed back (None, logged without its content, when it cannot be)."""
    data = text.encode()
    try:
        stanza = parse_fragment(
            data, max_stanza_bytes=max(len(data), 1), max_depth=STORED_MAX_DEPTH
        )
    except Exception as exc:
        log.warning(
            "archived message %s of %s cannot be read back (%s); skipped",
            archive_id,
            owner,
            type(exc).__name__,
        )
        return None
    return stanza
