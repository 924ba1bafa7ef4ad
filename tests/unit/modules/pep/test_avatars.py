"""XEP-0084 avatars on PEP (data and metadata nodes: what a contact gets and can
fetch), and XEP-0398's PEP-to-vCard copy (PHOTO replaced, removed on an empty
metadata, the rest of the vCard kept; a photo too large for a vCard leaves it as
it was and the publish succeeds)."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

from .client import EVENT, PUBSUB, login, pep_server, publish

DATA = "urn:xmpp:avatar:data"
META = "urn:xmpp:avatar:metadata"
VCARD = "vcard-temp"


def avatar(image: bytes) -> tuple[str, str, str]:
    """(id, data publish, metadata publish) as a XEP-0084 client sends them."""
    avatar_id = hashlib.sha1(image).hexdigest()
    data = publish(
        DATA, f"<data xmlns='{DATA}'>{base64.b64encode(image).decode()}</data>", avatar_id
    )
    meta = publish(
        META,
        f"<metadata xmlns='{META}'><info id='{avatar_id}' bytes='{len(image)}' type='image/png' "
        "height='64' width='64'/></metadata>",
        avatar_id,
    )
    return avatar_id, data, meta


async def vcard(client) -> ET.Element:  # type: ignore[no-untyped-def]
    reply = await client.iq("get", f"<vCard xmlns='{VCARD}'/>", iq_id="v")
    card = reply.find(f"{{{VCARD}}}vCard")
    assert card is not None
    return card


async def test_contact_hears_metadata_and_fetches_data_and_vcard_follows(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await alice.available([])
        await bob.available([META + "+notify"])
        bob.take()
        await alice.iq("set", f"<vCard xmlns='{VCARD}'><FN>Alice</FN></vCard>", iq_id="s")
        image = bytes(range(256)) * 4
        avatar_id, data, meta = avatar(image)
        assert (await alice.iq("set", data, iq_id="d")).get("type") == "result"
        assert (await alice.iq("set", meta, iq_id="m")).get("type") == "result"
        (event,) = bob.events()
        info = event.find(
            f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}item/{{{META}}}metadata/{{{META}}}info"
        )
        assert info is not None and info.get("id") == avatar_id
        fetched = await bob.iq(
            "get",
            f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'><item id='{avatar_id}'/></items></pubsub>",
            to="alice@localhost",
        )
        assert base64.b64decode(fetched.findtext(f".//{{{DATA}}}data") or "") == image

        card = await vcard(alice)
        assert card.findtext(f"{{{VCARD}}}FN") == "Alice"
        assert card.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}TYPE") == "image/png"
        assert base64.b64decode(card.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL") or "") == image

        # XEP-0084 §4.5: empty metadata disables the avatar
        await alice.iq("set", publish(META, f"<metadata xmlns='{META}'/>", "none"), iq_id="e")
        card = await vcard(alice)
        assert card.find(f"{{{VCARD}}}PHOTO") is None
        assert card.findtext(f"{{{VCARD}}}FN") == "Alice"


async def test_a_photo_too_large_for_the_vcard_leaves_it_alone(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        await alice.iq("set", f"<vCard xmlns='{VCARD}'><FN>Alice</FN></vCard>", iq_id="s")
        _, data, meta = avatar(b"\x89PNG" + bytes(60_000))
        assert (await alice.iq("set", data, iq_id="d")).get("type") == "result"
        assert (await alice.iq("set", meta, iq_id="m")).get("type") == "result"
        card = await vcard(alice)
        assert card.find(f"{{{VCARD}}}PHOTO") is None and card.findtext(f"{{{VCARD}}}FN") == "Alice"


async def test_conversion_can_be_turned_off(tmp_path: Path) -> None:
    async with pep_server(tmp_path, avatar_to_vcard=False) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        _, data, meta = avatar(b"png")
        await alice.iq("set", data, iq_id="d")
        await alice.iq("set", meta, iq_id="m")
        card = await vcard(alice)
        assert card.find(f"{{{VCARD}}}PHOTO") is None
