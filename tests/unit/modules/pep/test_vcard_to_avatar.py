"""XEP-0398 §3.2 (vCard to PEP) through the real connection, vcard and pep modules
and storage: a vCard PHOTO becomes the XEP-0084 data and metadata items (id = SHA-1
of the bytes, computed here with hashlib), a vCard without PHOTO disables the avatar,
the same image twice is published once, neither direction echoes into the other,
what PEP refuses or cannot read leaves the vCard set successful, and the account's
disco#info says `urn:xmpp:pep-vcard-conversion:0` only when both directions are on."""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from chatgate.modules.pep.vcard_to_avatar import (
    UnreadablePhoto,
    dimensions,
    photo_of,
    sniffed_type,
)
from chatgate.storage.errors import StorageUnavailable
from chatgate.xml.framed import parse_fragment

from .client import EVENT, PUBSUB, Client, error_of, login, pep_server
from .test_avatars import DATA, META, VCARD, avatar, vcard

CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


def png(width: int, height: int) -> bytes:
    """A valid PNG (zlib and crc32 from the standard library, not the server's code)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\0" + bytes(width) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def vcard_set(image: bytes | None, mime: str = "image/png", fn: str = "Alice") -> str:
    photo = ""
    if image is not None:
        photo = (
            f"<PHOTO><TYPE>{mime}</TYPE><BINVAL>{base64.b64encode(image).decode()}</BINVAL></PHOTO>"
        )
    return f"<vCard xmlns='{VCARD}'><FN>{fn}</FN>{photo}</vCard>"


def metadata_events(client: Client) -> list[ET.Element]:
    """The <metadata/> of each avatar metadata event written to `client`."""
    found = []
    for message in client.events():
        for items in message.iter(f"{{{EVENT}}}items"):
            if items.get("node") != META:
                continue
            for item in items.iter(f"{{{EVENT}}}item"):
                metadata = item.find(f"{{{META}}}metadata")
                assert metadata is not None
                found.append(metadata)
    return found


async def two(srv) -> tuple[Client, Client]:  # type: ignore[no-untyped-def]
    alice = await login(srv, "alice")
    bob = await login(srv, "bob")
    await alice.available([])
    await bob.available([META + "+notify"])
    bob.take()
    return alice, bob


async def fetch_data(client: Client, avatar_id: str) -> bytes:
    body = (
        f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'><item id='{avatar_id}'/></items></pubsub>"
    )
    reply = await client.iq("get", body, to="alice@localhost", iq_id="f")
    assert reply.get("type") == "result", ET.tostring(reply)
    return base64.b64decode(reply.findtext(f".//{{{DATA}}}data") or "")


async def test_vcard_photo_is_published_as_the_pep_avatar(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        image = png(32, 16)
        reply = await alice.iq("set", vcard_set(image), iq_id="s")
        assert reply.get("type") == "result"
        (metadata,) = metadata_events(bob)
        (info,) = metadata.findall(f"{{{META}}}info")
        expected_id = hashlib.sha1(image).hexdigest()
        assert info.attrib == {
            "id": expected_id,
            "bytes": str(len(image)),
            "type": "image/png",
            "width": "32",
            "height": "16",
        }
        assert await fetch_data(bob, expected_id) == image
        # the vCard is what the client set: no PEP-to-vCard rewrite echoed back
        card = await vcard(alice)
        assert card.findtext(f"{{{VCARD}}}FN") == "Alice"
        assert len(card.findall(f"{{{VCARD}}}PHOTO")) == 1
        stored = await srv.db.vcards.get(("alice", "localhost"))
        assert stored == (
            f'<vCard xmlns="{VCARD}"><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>'
            f"<BINVAL>{base64.b64encode(image).decode()}</BINVAL></PHOTO></vCard>"
        )


async def test_the_data_node_gets_the_default_access_model(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, _ = await two(srv)
        carol = await login(srv, "carol")
        image = png(4, 4)
        await alice.iq("set", vcard_set(image), iq_id="s")
        body = f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'/></pubsub>"
        refused = await carol.iq("get", body, to="alice@localhost", iq_id="c")
        assert error_of(refused) == ("not-authorized", "presence-subscription-required")
        owner = "http://jabber.org/protocol/pubsub#owner"
        config = await alice.iq(
            "get", f"<pubsub xmlns='{owner}'><configure node='{META}'/></pubsub>", iq_id="g"
        )
        values = {
            f.get("var"): f.findtext("{jabber:x:data}value")
            for f in config.iter("{jabber:x:data}field")
        }
        assert values["pubsub#access_model"] == "presence"


async def test_the_same_image_twice_is_published_once(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        image = png(8, 8)
        await alice.iq("set", vcard_set(image), iq_id="s1")
        assert len(metadata_events(bob)) == 1
        await alice.iq("set", vcard_set(image, fn="Alice L."), iq_id="s2")
        assert metadata_events(bob) == []
        other = png(9, 9)
        await alice.iq("set", vcard_set(other), iq_id="s3")
        (metadata,) = metadata_events(bob)
        info = metadata.find(f"{{{META}}}info")
        assert info is not None and info.get("id") == hashlib.sha1(other).hexdigest()


async def test_a_vcard_without_photo_disables_the_avatar_once(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        # no avatar yet: a vCard without PHOTO publishes nothing
        await alice.iq("set", vcard_set(None), iq_id="s0")
        assert metadata_events(bob) == []
        await alice.iq("set", vcard_set(png(8, 8)), iq_id="s1")
        assert len(metadata_events(bob)) == 1
        await alice.iq("set", vcard_set(None), iq_id="s2")
        (metadata,) = metadata_events(bob)
        assert list(metadata) == []  # XEP-0084 §4.5: <metadata/>
        await alice.iq("set", vcard_set(None), iq_id="s3")
        assert metadata_events(bob) == []


@pytest.mark.parametrize(
    "photo",
    [
        "<PHOTO/>",
        "<PHOTO><TYPE/></PHOTO>",
        "<PHOTO><TYPE>image/png</TYPE><BINVAL> </BINVAL></PHOTO>",
    ],
)
async def test_a_photo_without_image_data_disables_the_avatar(tmp_path: Path, photo: str) -> None:
    """What XEP-0153 clients send to clear their avatar (slixmpp: set_avatar(b''))."""
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        await alice.iq("set", vcard_set(png(8, 8)), iq_id="s1")
        assert len(metadata_events(bob)) == 1
        text = f"<vCard xmlns='{VCARD}'><FN>Alice</FN>{photo}</vCard>"
        assert (await alice.iq("set", text, iq_id="s2")).get("type") == "result"
        (metadata,) = metadata_events(bob)
        assert list(metadata) == []


async def test_a_pep_avatar_copied_to_the_vcard_is_not_published_back(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        image = png(16, 16)
        avatar_id, data, meta = avatar(image)
        await alice.iq("set", data, iq_id="d")
        await alice.iq("set", meta, iq_id="m")
        # the client's own publish only: the vCard copy published nothing more
        (metadata,) = metadata_events(bob)
        assert metadata.find(f"{{{META}}}info").get("height") == "64"  # type: ignore[union-attr]
        card = await vcard(alice)
        assert base64.b64decode(card.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL") or "") == image
        # a XEP-0153 client writes the vCard back with that photo: nothing new on PEP
        await alice.iq("set", vcard_set(image, fn="Alice"), iq_id="s")
        assert metadata_events(bob) == []
        assert await fetch_data(bob, avatar_id) == image


@pytest.mark.parametrize(
    "photo",
    [
        "<PHOTO><EXTVAL>https://example.org/a.png</EXTVAL></PHOTO>",
        "<PHOTO><TYPE>image/png</TYPE><BINVAL>not base64!</BINVAL></PHOTO>",
        "<PHOTO><BINVAL>" + base64.b64encode(b"no known magic").decode() + "</BINVAL></PHOTO>",
    ],
)
async def test_an_unreadable_photo_is_skipped_and_the_vcard_stands(
    tmp_path: Path, photo: str
) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        first = png(8, 8)
        await alice.iq("set", vcard_set(first), iq_id="s1")
        assert len(metadata_events(bob)) == 1
        text = f"<vCard xmlns='{VCARD}'><FN>Alice</FN>{photo}</vCard>"
        assert (await alice.iq("set", text, iq_id="s2")).get("type") == "result"
        assert metadata_events(bob) == []  # the avatar is neither replaced nor disabled
        stored = await srv.db.vcards.get(("alice", "localhost"))
        assert stored is not None and "<FN>Alice</FN><PHOTO>" in stored
        body = f"<pubsub xmlns='{PUBSUB}'><items node='{META}'/></pubsub>"
        newest = await bob.iq("get", body, to="alice@localhost", iq_id="g")
        (info,) = newest.iter(f"{{{META}}}info")
        assert info.get("id") == hashlib.sha1(first).hexdigest()


async def test_a_photo_the_pep_limits_refuse_leaves_the_vcard_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with pep_server(tmp_path, max_item_bytes=1024) as srv:
        alice, bob = await two(srv)
        image = b"\x89PNG\r\n\x1a\n" + bytes(2000)
        with caplog.at_level(logging.INFO, "chatgate.modules.pep.vcard_to_avatar"):
            reply = await alice.iq("set", vcard_set(image), iq_id="s")
        assert reply.get("type") == "result"
        assert "payload-too-big" in caplog.text or "not-acceptable" in caplog.text
        assert metadata_events(bob) == []
        card = await vcard(alice)
        assert base64.b64decode(card.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL") or "") == image
        body = f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'/></pubsub>"
        assert error_of(await alice.iq("get", body, iq_id="g")) == ("item-not-found", None)


async def test_a_storage_failure_on_pep_is_logged_and_the_vcard_stands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        repository = srv.module("pep").service.repository

        async def unavailable(*args: object, **kwargs: object) -> None:
            raise StorageUnavailable("the database is down")

        repository.publish = unavailable
        image = png(8, 8)
        with caplog.at_level(logging.WARNING):
            reply = await alice.iq("set", vcard_set(image), iq_id="s")
        assert reply.get("type") == "result"
        assert "VCardStored" in caplog.text
        assert metadata_events(bob) == []
        card = await vcard(alice)
        assert base64.b64decode(card.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL") or "") == image


async def test_disco_lists_the_conversion_only_when_both_directions_are_on(
    tmp_path: Path,
) -> None:
    query = f"<query xmlns='{DISCO_INFO}'/>"
    for options, listed in (({}, True), ({"vcard_to_avatar": False}, False)):
        async with pep_server(tmp_path / str(listed), **options) as srv:
            alice = await login(srv, "alice")
            info = await alice.iq("get", query, to="alice@localhost", iq_id="d")
            features = {f.get("var") for f in info.iter(f"{{{DISCO_INFO}}}feature")}
            assert (CONVERSION in features) is listed


async def test_turned_off_nothing_is_published(tmp_path: Path) -> None:
    async with pep_server(tmp_path, vcard_to_avatar=False) as srv:
        alice, bob = await two(srv)
        assert (await alice.iq("set", vcard_set(png(8, 8)), iq_id="s")).get("type") == "result"
        assert metadata_events(bob) == []


# ---------------------------------------------------------------- pure parts


def _card(text: str):  # type: ignore[no-untyped-def]
    data = f"<vCard xmlns='{VCARD}'>{text}</vCard>".encode()
    return parse_fragment(data, "", max_stanza_bytes=len(data) + 1)


def test_photo_of_reads_wrapped_base64_and_sniffs_a_missing_type() -> None:
    image = png(2, 3)
    wrapped = base64.encodebytes(image).decode()  # 76-column lines, as XEP-0153 clients send
    assert photo_of(_card(f"<PHOTO><BINVAL>{wrapped}</BINVAL></PHOTO>")) == ("image/png", image)
    typed = (
        f"<PHOTO><TYPE>text/html</TYPE><BINVAL>{base64.b64encode(image).decode()}</BINVAL></PHOTO>"
    )
    assert photo_of(_card(typed)) == ("image/png", image)  # not an image type: read from the bytes
    assert photo_of(_card("<FN>x</FN>")) is None
    assert photo_of(_card("<PHOTO><TYPE>image/png</TYPE></PHOTO>")) is None
    with pytest.raises(UnreadablePhoto):
        photo_of(_card("<PHOTO><EXTVAL>https://example.org/a.png</EXTVAL></PHOTO>"))


def test_dimensions_of_png_gif_and_jpeg_headers() -> None:
    assert dimensions(png(640, 480)) == (640, 480)
    gif = b"GIF89a" + struct.pack("<HH", 20, 10) + bytes(10)
    assert dimensions(gif) == (20, 10)
    # SOI, an APP0 segment, then SOF0 with height 7 and width 300
    jpeg = (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 6)
        + b"JFIF"
        + b"\xff\xc0"
        + struct.pack(">HBHH", 11, 8, 7, 300)
        + bytes(6)
    )
    assert dimensions(jpeg) == (300, 7)
    assert sniffed_type(jpeg) == "image/jpeg" and sniffed_type(gif) == "image/gif"


def test_dimensions_of_malformed_headers_give_none() -> None:
    assert dimensions(b"\xff\xd8\xff\xe0\x00\x00" + bytes(20)) is None  # length 0
    assert dimensions(b"\xff\xd8" + b"\x00" * 20) is None  # no marker
    assert dimensions(b"\xff\xd8\xff\xe0\xff\xff" + bytes(3)) is None  # runs off the end
    assert dimensions(b"\x89PNG\r\n\x1a\n") is None
    assert dimensions(b"plain text") is None


async def test_a_vcard_refused_for_its_size_publishes_nothing(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        image = b"\x89PNG\r\n\x1a\n" + bytes(60_000)  # base64 past the 64 KiB vCard bound
        reply = await alice.iq("set", vcard_set(image), iq_id="s")
        assert error_of(reply) == ("not-acceptable", None)
        assert metadata_events(bob) == []
        assert await srv.db.vcards.get(("alice", "localhost")) is None


async def test_a_vcard_set_on_another_account_is_refused_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob = await two(srv)
        body = vcard_set(png(8, 8))
        reply = await bob.iq("set", body, to="alice@localhost", iq_id="x")
        # vCard sets are handled for the sender's own account only
        assert error_of(reply) == ("service-unavailable", None)
        alice.take()
        assert metadata_events(bob) == []
        body = f"<pubsub xmlns='{PUBSUB}'><items node='{META}'/></pubsub>"
        assert error_of(await alice.iq("get", body, iq_id="g")) == ("item-not-found", None)
