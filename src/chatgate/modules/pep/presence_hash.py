"""XEP-0398 §4: the avatar hash a server adds to its users' available presence
(XEP-0153 ``<x xmlns='vcard-temp:x:update'><photo>HASH</photo></x>``), so that
contacts and rooms learn of an avatar a XEP-0084 client set (it sends no hash).

Owns: which hash an account advertises (`PhotoHashes.current`: the id of the
avatar the newest ``urn:xmpp:avatar:metadata`` item names, which is the SHA-1 of
the image and so the XEP-0153 hash of the vCard photo the PEP-to-vCard copy
writes) and the rules for putting it into a presence (`stamp`).
Must not: route or deliver presence.  Not wired yet: calling `PhotoHashes.stamp`
on every available presence a client sends (broadcast and directed, MUC joins
included) is the router's or the presence module's to do.
"""

from __future__ import annotations

from chatgate.modules.pep.errors import PubsubError
from chatgate.modules.pep.service import PepService, bare_of
from chatgate.modules.pep.vcard_avatar import METADATA, chosen_info
from chatgate.storage.repositories.owner import Owner
from chatgate.vocabulary.errors import StanzaErrorCondition as C
from chatgate.xml.element import Element

VCARD_UPDATE = "vcard-temp:x:update"


def stamp(presence: Element, photo: str | None) -> bool:
    """Put `photo` (a hash, "" for "no avatar", None for "unknown") into an
    available `presence` as XEP-0398 §4 says; True when the presence changed.

    * None, or a presence with a type (unavailable, subscriptions, errors): unchanged;
    * ``<x/>`` with an empty ``<photo/>``: unchanged (the client says it has none);
    * ``<x/>`` without ``<photo/>`` (XEP-0153 "not ready"): the photo is added;
    * ``<x/>`` with another hash: replaced (§4 allows it; one hash for everyone);
    * no ``<x/>``: ``<x><photo>HASH</photo></x>`` is added."""
    if photo is None or presence.get("type") is not None:
        return False
    update = presence.find("x", VCARD_UPDATE)
    if update is None:
        update = presence.sub("x", VCARD_UPDATE)
    photos = update.find_all("photo", VCARD_UPDATE)
    if photos:
        given = photos[0].text.strip()
        if not given or (given == photo and len(photos) == 1):
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
