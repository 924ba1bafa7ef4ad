"""XEP-0398 §4: the avatar hash a server adds to its users' available presence
(XEP-0153 ``<x xmlns='vcard-temp:x:update'><photo>HASH</photo></x>``), so that
contacts and rooms learn of an avatar a XEP-0084 client set (it sends no hash).

Owns: which hash an account advertises (`PhotoHashes.current`: the id of the
avatar the newest ``urn:xmpp:avatar:metadata`` item names, which is the SHA-1 of
the image and so the XEP-0153 hash of the vCard photo the PEP-to-vCard copy
writes), the rules for putting it into a presence (`stamp`), and the in-memory
copy of each online account's hash the presence path reads (`AdvertisedHashes`).
Must not: route or deliver presence, or read storage on the presence path.

Why a cache: every available presence a client sends (broadcast, directed, MUC
joins) is stamped synchronously by the router (`Router.presence_stamp`), which
must cost a dict look-up, not a database read.  The hash is read when a session of
the account binds (a presence sent before that read is done waits for it, at most
`READ_WAIT` seconds: §4 wants the hash in every available presence, the initial
one most of all, which a client sends right after binding), read again when the
account's avatar metadata changes (a `PepService` observer; the vCard-to-PEP
copy, which publishes unobserved, through `VCardStored`; another cluster node's
publish, through `cluster/pep.py`'s event) and dropped when the account's last
session here ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol

from chatgate.lru import LruCache
from chatgate.modules.pep.errors import PubsubError
from chatgate.modules.pep.service import PepService, bare_of
from chatgate.modules.pep.vcard_avatar import METADATA, chosen_info
from chatgate.storage.repositories.owner import Owner
from chatgate.vocabulary.errors import StanzaErrorCondition as C
from chatgate.xml.element import Element
from chatgate.xmpp.events import SessionBound, SessionClosed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionMovedOut

log = logging.getLogger(__name__)

VCARD_UPDATE = "vcard-temp:x:update"


def stamp(presence: Element, photo: str | None) -> bool:
    """Put `photo` (a hash, "" for "no avatar", None for "unknown") into an
    available `presence` as XEP-0398 §4 says; True when the presence changed.

    * None, or a presence with a type (unavailable, subscriptions, errors): unchanged;
    * ``<x/>`` with an empty ``<photo/>``: unchanged (the client says it has none);
    * ``<x/>`` without ``<photo/>`` (XEP-0153 "not ready"): the photo is added;
    * ``<x/>`` with another hash: replaced by ours (§4 allows it; one hash for
      everyone), unless ours is "" -- we know of no avatar, the client knows of
      one: its vCard may hold a photo we could not publish on PEP (no image type),
      and §4 lets only a hash the service calculated replace the client's;
    * no ``<x/>``: ``<x><photo>HASH</photo></x>`` is added."""
    if photo is None or presence.get("type") is not None:
        return False
    update = presence.find("x", VCARD_UPDATE)
    if update is None:  # the common case (a XEP-0084 client): one append
        photo_el = Element("photo", VCARD_UPDATE, None, [photo] if photo else None)
        presence.children.append(Element("x", VCARD_UPDATE, None, [photo_el]))
        return True
    photos = update.find_all("photo", VCARD_UPDATE)
    if photos:
        given = photos[0].text.strip()
        if not given or not photo or (given == photo and len(photos) == 1):
            return False
    update.children = [
        c for c in update.children if not (isinstance(c, Element) and c.name == "photo")
    ]
    element = update.sub("photo", VCARD_UPDATE)
    if photo:
        element.append(photo)
    return True


class PhotoHashes:
    """The hash each account advertises, read from its PEP metadata node."""

    def __init__(self, service: PepService) -> None:
        self.service = service

    async def current(self, owner: Owner) -> str | None:
        """The chosen inline avatar's id; "" when the newest metadata names none
        (the avatar is disabled); None when there is no metadata node or item."""
        try:
            newest = await self.service.items(owner, bare_of(owner), METADATA, last=1, ids=None)
        except PubsubError as exc:
            if exc.condition is C.ITEM_NOT_FOUND:
                return None
            raise
        item = next(iter(newest.find_all("item")), None)
        metadata = item.find("metadata", METADATA) if item is not None else None
        if metadata is None:
            return None
        info = chosen_info(metadata)
        return (info.get("id") or "") if info is not None else ""

    async def stamp(self, owner: Owner, presence: Element) -> bool:
        """`stamp` with `owner`'s current hash (only available presence is read for)."""
        if presence.get("type") is not None:
            return False
        return stamp(presence, await self.current(owner))


#: an XEP-0084 id is the image's SHA-1 in hex (§4.2); anything else is not advertised
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
#: accounts whose hash is kept (one entry per account online on this node)
MAX_ACCOUNTS = 100_000
#: seconds a presence waits for its account's bind-time read; past it, it goes
#: out unstamped (a slow database must not hold presence back for long)
READ_WAIT = 2.0


class HashStore(Protocol):
    """Where the presence path reads an account's hash: in memory, read without I/O.
    A shared implementation (Redis) would not help: every node fills its own copy
    from the database and hears every avatar change (`cluster/pep.py`)."""

    def get(self, bare: str) -> str | None: ...

    def put(self, bare: str, photo: str | None) -> None: ...

    def drop(self, bare: str) -> None: ...


class LocalHashes:
    """`HashStore` in this process: an LRU bounded by count (and, to be safe, bytes;
    a value is 0 or 40 characters).  Evicted while its account is online, a hash is
    read again at the account's next bind or avatar change; meanwhile its presence
    goes out unstamped, as before the feature."""

    def __init__(self, max_accounts: int = MAX_ACCOUNTS) -> None:
        self._lru: LruCache[str, str] = LruCache(max_accounts, max_accounts * 512)
        #: the live dict's own get: a hit on the presence path is one look-up
        self.get: Callable[[str], str | None] = self._lru.mapping.get

    def put(self, bare: str, photo: str | None) -> None:
        if photo is None:
            self._lru.pop(bare)
        else:
            self._lru.put(bare, photo)

    def drop(self, bare: str) -> None:
        self._lru.pop(bare)

    def __len__(self) -> int:
        return len(self._lru)


Spawn = Callable[[Awaitable[None]], None]


class AdvertisedHashes:
    """The hash of each account with a session on this node, kept current, and the
    router's stamp (`stamp_presence`)."""

    def __init__(self, hashes: PhotoHashes, spawn: Spawn, store: HashStore | None = None) -> None:
        self.hashes = hashes
        self.spawn = spawn
        self.store: HashStore = store if store is not None else LocalHashes()
        #: sessions bound here per account (bounded by the sessions the server admits)
        self._sessions: dict[str, int] = {}
        #: the newest read started per account: an older read that ends later is void
        self._reads: dict[str, int] = {}
        self._ticket = 0
        #: the bind-time read of each account under way (what a presence waits for)
        self._loading: dict[str, asyncio.Future[None]] = {}

    # ------------------------------------------------------------ the presence path

    def stamp_presence(self, origin: C2SSession, presence: Element) -> Awaitable[None] | None:
        """The cached hash, if any, into an available presence, at once; or, while
        the account's bind-time read is under way, what to await before routing
        it (this is called again then, and finds the hash)."""
        photo = self.store.get(origin.bare)
        if presence.attrs.get("type") is not None:
            return None
        if photo is not None:
            stamp(presence, photo)
            return None
        loading = self._loading.get(origin.bare)
        return None if loading is None else self._wait_for_read(origin.bare, loading)

    async def _wait_for_read(self, bare: str, read: asyncio.Future[None]) -> None:
        """Until the read is done or `READ_WAIT` has passed; then nothing waits
        for it any more (the presence, called again, goes out unstamped, and so do
        the account's next ones until the read lands).  Its failure is its own
        awaiter's to log (the `SessionBound` hook's)."""
        await asyncio.wait({read}, timeout=READ_WAIT)
        if not read.done() and self._loading.get(bare) is read:
            del self._loading[bare]

    # ------------------------------------------------------------ keeping it current

    def bound(self, event: SessionBound) -> Awaitable[None] | None:
        """A session of the account bound here: its first one reads the hash."""
        bare = event.session.bare
        count = self._sessions.get(bare, 0)
        self._sessions[bare] = count + 1
        if count:
            return None
        read = asyncio.ensure_future(self._read(bare))
        self._loading[bare] = read
        read.add_done_callback(partial(self._loaded, bare))
        return read

    def _loaded(self, bare: str, read: asyncio.Future[None]) -> None:
        if self._loading.get(bare) is read:
            del self._loading[bare]

    def ended(self, event: SessionClosed | SessionMovedOut) -> None:
        """A session closed or moved to another node: the last one drops the hash."""
        bare = event.session.bare
        count = self._sessions.get(bare, 0) - 1
        if count > 0:
            self._sessions[bare] = count
            return
        self._sessions.pop(bare, None)
        self._reads.pop(bare, None)
        self.store.drop(bare)

    def changed(self, owner: Owner) -> Awaitable[None] | None:
        """The account's avatar metadata may have changed: read it again if it is
        online here (the read comes after the change was stored)."""
        bare = bare_of(owner)
        if bare not in self._sessions:
            return None
        return self._read(bare)

    def changed_elsewhere(self, owner_bare: str, node: str) -> None:
        """Another node's event on `node` of `owner_bare` (`cluster/pep.py`)."""
        if node == METADATA and owner_bare in self._sessions:
            local, _, domain = owner_bare.partition("@")
            pending = self.changed((local, domain))
            if pending is not None:
                self.spawn(pending)

    async def observe(self, owner: Owner, node: str, session: C2SSession | None) -> None:
        """The `PepService` observer: a client's change to its metadata node."""
        if node == METADATA:
            pending = self.changed(owner)
            if pending is not None:
                try:
                    await pending
                except Exception:  # the client's publish must not fail for this
                    log.warning("avatar hash of %s@%s not read", *owner, exc_info=True)

    async def _read(self, bare: str) -> None:
        self._ticket += 1
        ticket = self._reads[bare] = self._ticket
        local, _, domain = bare.partition("@")
        photo = await self.hashes.current((local, domain))
        if self._reads.get(bare) != ticket:
            return  # a newer read is under way, or the account left
        del self._reads[bare]
        if photo is not None and photo and not _SHA1_HEX.fullmatch(photo):
            photo = None  # not a SHA-1: no hash is better than a wrong one
        self.store.put(bare, photo)
