"""Bookmarks: XEP-0402 (PEP native bookmarks) kept in step with XEP-0048
bookmarks in private XML storage (XEP-0049) and in the PEP node
``storage:bookmarks`` (XEP-0048 over XEP-0223), as XEP-0411 asks.

Owns: converting between the two formats and writing each change a client makes
in one place into the others.  Which representation a client uses does not
matter: a client of either kind sees the other's changes.
Must not: keep any state of its own (both stores are the PEP and private storage
modules'), or change what a client wrote in the place it wrote it.

How the sync runs.  A write the client makes (a private ``storage:bookmarks``
set, a publish, retract, purge or delete on ``urn:xmpp:bookmarks:1`` or
``storage:bookmarks``) is stored by its module first; the module then tells this
one (a `PrivateInterceptor`, a `PepService` observer), which rewrites the other
representations with `observe=False`, so nothing echoes back.  XEP-0402 items
are published with its publish-options (whitelist, persist, max_items max,
send_last never), and events go to the owner's resources that asked for them.
XEP-0048 ``<url/>`` bookmarks have no XEP-0402 form: they stay in the XEP-0048
copies.

Errors in a sync (a quota reached on the other side) are logged; the client's
own write stands.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from chatgate.jid import JID, InvalidJID
from chatgate.modules.base import DiscoFeature, Registration, Spec
from chatgate.modules.pep.config import AccessModel, SendLast
from chatgate.modules.pep.module import PersonalEventing
from chatgate.modules.private_storage import PrivateInterceptor, PrivateStorage
from chatgate.storage.repositories.owner import Owner
from chatgate.vocabulary.errors import StanzaError
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.modules.pep.service import PepService

log = logging.getLogger(__name__)

NATIVE = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
CONVERSION = "urn:xmpp:bookmarks-conversion:0"
#: XEP-0402 §5.3: a server that syncs with XEP-0048 private storage says so
COMPAT = "urn:xmpp:bookmarks:1#compat"
COMPAT_PEP = "urn:xmpp:bookmarks:1#compat-pep"
_TRUE = ("1", "true")


class BookmarksOptions(BaseModel):
    """``[modules.bookmarks]``: XEP-0402 bookmarks kept in step with XEP-0048 (XEP-0411)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Keep XEP-0048 bookmarks (private XML and the storage:bookmarks PEP node) and
    XEP-0402 bookmarks in step, and advertise it (urn:xmpp:bookmarks-conversion:0,
    urn:xmpp:bookmarks:1#compat). Needs the pep and private_storage modules."""


# ---------------------------------------------------------------- pure conversion


def legacy_conferences(storage: Element) -> dict[str, Element]:
    """XEP-0048 ``<storage/>`` -> XEP-0402 conferences by room JID (item id).  A
    conference without a valid JID is skipped; the last of a repeated JID wins."""
    found: dict[str, Element] = {}
    for old in storage.find_all("conference", LEGACY):
        try:
            room = str(JID.parse(old.get("jid") or ""))
        except InvalidJID:
            continue
        attrs = {}
        if old.get("name"):
            attrs["name"] = old.get("name") or ""
        if (old.get("autojoin") or "").lower() in _TRUE:
            attrs["autojoin"] = "true"
        new = Element("conference", NATIVE, attrs)
        for child in ("nick", "password"):
            value = old.find(child, LEGACY)
            if value is not None and value.text:
                new.sub(child, text=value.text)
        found[room] = new
    return found


def legacy_storage(conferences: dict[str, Element], urls: Iterable[Element]) -> Element:
    """XEP-0402 conferences (by room JID) and kept XEP-0048 URLs -> ``<storage/>``."""
    storage = Element("storage", LEGACY)
    for room, conference in conferences.items():
        attrs = {"jid": room}
        if conference.get("name"):
            attrs["name"] = conference.get("name") or ""
        if (conference.get("autojoin") or "").lower() in _TRUE:
            attrs["autojoin"] = "true"
        old = storage.sub("conference", attrs=attrs)
        for child in ("nick", "password"):
            value = conference.find(child, NATIVE)
            if value is not None and value.text:
                old.sub(child, text=value.text)
    for url in urls:
        storage.append(url.copy())
    return storage


def _same(a: Element, b: Element) -> bool:
    return a.attrs == b.attrs and [(c.name, c.text) for c in a.find_all(None, NATIVE)] == [
        (c.name, c.text) for c in b.find_all(None, NATIVE)
    ]


# ---------------------------------------------------------------- the module


class Bookmarks:
    name: ClassVar[str] = "bookmarks"
    depends: ClassVar[tuple[str, ...]] = ("pep", "private_storage")
    implements: ClassVar[tuple[Spec, ...]] = (
        Spec("XEP-0402", "1.2.0"),
        Spec("XEP-0048", "1.2"),
        Spec("XEP-0411", "0.3.0"),
    )
    Options: ClassVar[type[BaseModel]] = BookmarksOptions

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, BookmarksOptions)
        pep = ctx.modules["pep"].module
        private = ctx.modules["private_storage"].module
        assert isinstance(pep, PersonalEventing) and isinstance(private, PrivateStorage)
        if not options.enabled or pep.service is None or private.repository is None:
            return
        self.pep: PepService = pep.service
        self.private = private
        self.native_options: dict[str, object] = {
            "persist_items": True,
            "max_items": pep.limits.max_items_cap,
            "send_last_published_item": SendLast.NEVER,
            "access_model": AccessModel.WHITELIST,
        }
        self.legacy_options: dict[str, object] = {
            "persist_items": True,
            "access_model": AccessModel.WHITELIST,
        }
        self.pep.observers.append(self._pep_changed)
        private.interceptors[LEGACY] = PrivateInterceptor(self._private_get, self._private_stored)
        yield DiscoFeature(CONVERSION, on_account=True)
        yield DiscoFeature(COMPAT, on_account=True)
        yield DiscoFeature(COMPAT_PEP, on_account=True)

    # ------------------------------------------------------------ hearing changes

    async def _private_get(self, session: C2SSession) -> Element | None:
        return None  # the stored copy is kept current by the sync

    async def _private_stored(self, session: C2SSession, storage: Element) -> None:
        owner = (session.username, session.domain)
        await self._guarded(self._to_native(owner, session, storage))
        await self._guarded(self._to_legacy_pep(owner, session, storage, only_if_exists=True))

    async def _pep_changed(self, owner: Owner, node: str, session: C2SSession | None) -> None:
        if node == NATIVE:
            storage = await self._from_native(owner)
            await self._guarded(self._write_private(owner, storage))
            await self._guarded(self._to_legacy_pep(owner, session, storage, only_if_exists=True))
        elif node == LEGACY:
            storage = await self._legacy_pep_storage(owner)
            await self._guarded(self._write_private(owner, storage))
            await self._guarded(self._to_native(owner, session, storage))

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except StanzaError as exc:
            log.warning("bookmarks sync left one copy behind: %s", exc)

    # ------------------------------------------------------------ reading each copy

    async def _native_items(self, owner: Owner) -> dict[str, Element]:
        if await self.pep.config_of(owner, NATIVE) is None:
            return {}
        items = await self.pep.items(owner, f"{owner[0]}@{owner[1]}", NATIVE, last=None, ids=None)
        found = {}
        for item in items.find_all("item"):
            conference = item.find("conference", NATIVE)
            if conference is not None and item.get("id"):
                found[item.get("id") or ""] = conference
        return found

    async def _from_native(self, owner: Owner) -> Element:
        kept = await self.private.read(owner, LEGACY)
        urls = kept.find_all("url", LEGACY) if kept is not None else []
        return legacy_storage(await self._native_items(owner), urls)

    async def _legacy_pep_storage(self, owner: Owner) -> Element:
        if await self.pep.config_of(owner, LEGACY) is None:
            return Element("storage", LEGACY)
        items = await self.pep.items(owner, f"{owner[0]}@{owner[1]}", LEGACY, last=1, ids=None)
        for item in items.find_all("item"):
            storage = item.find("storage", LEGACY)
            if storage is not None:
                return storage
        return Element("storage", LEGACY)

    # ------------------------------------------------------------ writing each copy

    async def _write_private(self, owner: Owner, storage: Element) -> None:
        await self.private.write(owner, storage)

    async def _to_native(self, owner: Owner, session: C2SSession | None, storage: Element) -> None:
        wanted = legacy_conferences(storage)
        present = await self._native_items(owner)
        exists = await self.pep.config_of(owner, NATIVE) is not None
        publisher = session.full if session is not None else f"{owner[0]}@{owner[1]}"
        for room, conference in wanted.items():
            old = present.get(room)
            if old is not None and _same(old, conference):
                continue
            item = Element("item", "http://jabber.org/protocol/pubsub", {"id": room})
            item.append(conference)
            await self.pep.publish(
                owner,
                publisher,
                NATIVE,
                item,
                None if exists else self.native_options,
                observe=False,
            )
            exists = True
        for room in present:
            if room not in wanted:
                await self.pep.retract(owner, NATIVE, room, True, observe=False)

    async def _to_legacy_pep(
        self, owner: Owner, session: C2SSession | None, storage: Element, *, only_if_exists: bool
    ) -> None:
        exists = await self.pep.config_of(owner, LEGACY) is not None
        if only_if_exists and not exists:
            return  # nobody uses XEP-0048 over PEP on this account
        item = Element("item", "http://jabber.org/protocol/pubsub", {"id": "current"})
        item.append(storage.copy())
        publisher = session.full if session is not None else f"{owner[0]}@{owner[1]}"
        await self.pep.publish(
            owner, publisher, LEGACY, item, None if exists else self.legacy_options, observe=False
        )
