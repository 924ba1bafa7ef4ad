"""XEP-0398 §3.1, PEP to vCard: an avatar published on PEP (XEP-0084) is written
into the user's vCard (XEP-0054 PHOTO), so that clients that only know vCard
avatars (XEP-0153) see it too.

Owns: reading the newest metadata's info (the inline one, PNG first), fetching its
data item, checking that its SHA-1 is the info's id (so the XEP-0153 hash of the
vCard photo and the XEP-0084 id name the same image), and replacing the vCard's
PHOTO (an empty metadata removes it).  The vCard is written to its repository
directly, not through the vcard module, so the other direction
(`vcard_to_avatar.VCardToAvatar`) does not publish it back.
Must not: fail the client's publish (a conversion that cannot be done is logged).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging

from chatgate.modules.pep.errors import PubsubError
from chatgate.modules.pep.service import PepService
from chatgate.storage.repositories.owner import Owner
from chatgate.storage.repositories.vcards import VCardRepository
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession

log = logging.getLogger(__name__)

METADATA = "urn:xmpp:avatar:metadata"
DATA = "urn:xmpp:avatar:data"
#: the vcard module's own bound (modules/vcard.py MAX_VCARD_BYTES)
MAX_VCARD_BYTES = 64 * 1024


def chosen_info(metadata: Element) -> Element | None:
    """The <info/> to copy: one stored on PEP (no url), image/png preferred."""
    inline = [i for i in metadata.find_all("info", METADATA) if not i.get("url") and i.get("id")]
    inline.sort(key=lambda i: i.get("type") != "image/png")
    return inline[0] if inline else None


def with_photo(vcard: Element | None, mime: str | None, data: bytes | None) -> Element:
    """`vcard` (or a new one) with its PHOTO replaced (removed when `data` is None)."""
    card = vcard if vcard is not None else Element("vCard", ns.VCARD)
    card.children = [c for c in card.children if not (isinstance(c, Element) and c.name == "PHOTO")]
    if data is not None:
        photo = card.sub("PHOTO", ns.VCARD)
        photo.sub("TYPE", ns.VCARD, text=mime or "image/png")
        photo.sub("BINVAL", ns.VCARD, text=base64.b64encode(data).decode())
    return card


class AvatarToVCard:
    """A `PepService` observer (see `PepService.observers`)."""

    def __init__(self, service: PepService, vcards: VCardRepository) -> None:
        self.service = service
        self.vcards = vcards

    async def __call__(self, owner: Owner, node: str, session: C2SSession | None) -> None:
        if node != METADATA:
            return
        try:
            await self._convert(owner)
        except (PubsubError, ValueError, binascii.Error) as exc:
            log.info("avatar of %s@%s not copied to the vCard: %s", *owner, exc)

    async def _convert(self, owner: Owner) -> None:
        bare = f"{owner[0]}@{owner[1]}"
        newest = await self.service.items(owner, bare, METADATA, last=1, ids=None)
        item = next(iter(newest.find_all("item")), None)
        metadata = item.find("metadata", METADATA) if item is not None else None
        info = chosen_info(metadata) if metadata is not None else None
        data = mime = None
        if info is not None:
            found = await self.service.items(
                owner, bare, DATA, last=None, ids=[info.get("id") or ""]
            )
            item = next(iter(found.find_all("item")), None)
            payload = item.find("data", DATA) if item is not None else None
            if payload is None:
                raise ValueError("the metadata names no stored data item")
            data = base64.b64decode(payload.text.strip(), validate=False)
            if hashlib.sha1(data).hexdigest() != info.get("id"):  # XEP-0084 §4.2
                raise ValueError("the data's SHA-1 is not the id the metadata names")
            mime = info.get("type")
        stored = await self.vcards.get(owner)
        card = (
            parse_fragment(stored.encode(), "", max_stanza_bytes=len(stored.encode()) + 1)
            if stored
            else None
        )
        text = serialize(with_photo(card, mime, data), parent_ns="")
        if len(text.encode()) > MAX_VCARD_BYTES:
            raise ValueError("the vCard would pass its size limit")
        await self.vcards.put(owner, text)
