"""XEP-0398 §3.2, vCard to PEP: a vCard PHOTO a client sets (XEP-0054/XEP-0153) is
published as its XEP-0084 avatar, so clients that read only PEP avatars see it.

Owns: reading the PHOTO (TYPE + BINVAL), publishing the image to
``urn:xmpp:avatar:data`` (item id = SHA-1 hex of the bytes, the same value as the
XEP-0153 presence hash) and then one ``<info/>`` to ``urn:xmpp:avatar:metadata``;
a vCard without PHOTO publishes an empty ``<metadata/>`` (XEP-0084 §4.5, avatar
disabled).  Publishing goes through `PepService.publish` without options (nodes are
made with the PEP defaults, an existing node keeps its configuration) and with
``observe=False``, so the PEP-to-vCard copy (`vcard_avatar.AvatarToVCard`) does not
write the vCard back.  What the metadata node already says is not published again.
Must not: fail the vCard set.  A PHOTO that cannot be published (only an EXTVAL
link, bad base64, no image type) and a publish the PEP limits refuse are logged
and skipped; a PHOTO without image data (no BINVAL, or an empty one) is no photo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import struct

from chatgate.modules.pep.errors import PubsubError
from chatgate.modules.pep.service import PepService, bare_of
from chatgate.modules.pep.vcard_avatar import DATA, METADATA
from chatgate.modules.vcard import VCardStored
from chatgate.storage.repositories.owner import Owner
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition as C
from chatgate.xml.element import Element

log = logging.getLogger(__name__)

#: XEP-0398 §2: the account's disco#info says the server converts both ways
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
_MAX_TYPE = 100


class UnreadablePhoto(ValueError):
    """The vCard has a PHOTO, but no inline image the server can publish."""


def photo_of(card: Element) -> tuple[str, bytes] | None:
    """(MIME type, image bytes) of the vCard's PHOTO; None when it holds no image:
    no PHOTO, or one with neither BINVAL nor EXTVAL, or an empty BINVAL (what
    XEP-0153 clients send to clear their avatar).

    Raises UnreadablePhoto for a PHOTO that names an image the server cannot
    publish: only an EXTVAL link (not an image the server holds), BINVAL that is
    not base64, or a type neither given (TYPE) nor recognisable from the bytes."""
    photo = card.find("PHOTO", ns.VCARD)
    if photo is None:
        return None
    binval = photo.find("BINVAL", ns.VCARD)
    if binval is None:
        if photo.find("EXTVAL", ns.VCARD) is not None:
            raise UnreadablePhoto("the PHOTO is an EXTVAL link, not an image")
        return None
    try:
        # XEP-0153 BINVAL is often wrapped in lines: whitespace is not data.
        data = base64.b64decode("".join(binval.text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UnreadablePhoto("the BINVAL is not base64") from None
    if not data:
        return None
    given = photo.find("TYPE", ns.VCARD)
    mime = given.text.strip() if given is not None else ""
    if not _looks_like_mime(mime):
        mime = sniffed_type(data) or ""
    if not mime:
        raise UnreadablePhoto("the PHOTO's type is neither given nor recognised")
    return mime, data


def _looks_like_mime(text: str) -> bool:
    """An image type (XEP-0084 §4.2: the IANA type of the image), within bounds."""
    kind, slash, sub = text.partition("/")
    return bool(
        slash and kind.lower() == "image" and sub and len(text) <= _MAX_TYPE and text.isprintable()
    )


def sniffed_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, GIF or JPEG header, for XEP-0084's optional
    info attributes; None for other formats or a header that does not parse."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(data)
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame (SOF0..SOF15 but DHT,
    JPG and DAC); each step moves forward, so a malformed file ends the walk."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def metadata_for(avatar_id: str, mime: str, data: bytes) -> Element:
    """XEP-0084 §4.2: one <info/> for the image stored in the data node."""
    metadata = Element("metadata", METADATA)
    info = metadata.sub("info", METADATA, {"id": avatar_id, "bytes": str(len(data)), "type": mime})
    size = dimensions(data)
    if size is not None and size[0] > 0 and size[1] > 0:
        info.attrs["width"], info.attrs["height"] = str(size[0]), str(size[1])
    return metadata


class VCardToAvatar:
    """Hears `VCardStored` (an `OnEvent` handler of the pep module)."""

    def __init__(self, service: PepService) -> None:
        self.service = service

    async def __call__(self, event: VCardStored) -> None:
        owner = event.owner
        try:
            photo = photo_of(event.card)
            await self._publish(owner, photo)
        except UnreadablePhoto as exc:
            log.info("vCard photo of %s@%s not published on PEP: %s", *owner, exc)
        except PubsubError as exc:
            # the PEP limits (item size, node count) or a reconfigured node
            log.info("vCard photo of %s@%s not published on PEP: %s", *owner, exc)

    async def _publish(self, owner: Owner, photo: tuple[str, bytes] | None) -> None:
        current = await self._current_ids(owner)
        if photo is None:
            if current:  # an avatar to disable; none (or disabled already): nothing
                await self._item(owner, METADATA, "", Element("metadata", METADATA))
            return
        mime, data = photo
        avatar_id = hashlib.sha1(data).hexdigest()  # XEP-0084 names SHA-1
        if avatar_id in current:
            return  # the same image: published already (by the client or by us)
        payload = Element("data", DATA)
        payload.append(base64.b64encode(data).decode())
        # XEP-0398 §3.2: the data first, then the metadata that names it.
        await self._item(owner, DATA, avatar_id, payload)
        await self._item(owner, METADATA, avatar_id, metadata_for(avatar_id, mime, data))

    async def _current_ids(self, owner: Owner) -> set[str]:
        """The ids of the <info/> in the newest metadata item (empty: none, or disabled)."""
        try:
            newest = await self.service.items(owner, bare_of(owner), METADATA, last=1, ids=None)
        except PubsubError as exc:
            if exc.condition is C.ITEM_NOT_FOUND:
                return set()
            raise
        ids: set[str] = set()
        for item in newest.find_all("item"):
            for metadata in item.find_all("metadata", METADATA):
                ids.update(i.get("id") or "" for i in metadata.find_all("info", METADATA))
        ids.discard("")
        return ids

    async def _item(self, owner: Owner, node: str, item_id: str, payload: Element) -> None:
        item = Element("item", ns.PUBSUB, {"id": item_id} if item_id else None)
        item.append(payload)
        await self.service.publish(owner, bare_of(owner), node, item, None, observe=False)
