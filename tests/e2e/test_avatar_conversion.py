"""XEP-0398 both ways against the real `chatgate serve`, with slixmpp clients.

alice's client sets its avatar the XEP-0153 way (xep_0153.set_avatar: a vCard
PHOTO through xep_0054, then presence with the photo hash); bob, subscribed, with
XEP-0084 +notify in his caps, hears the avatar metadata the server published for
her, fetches the data, and the id he hears is the hash alice's presence carries. A
vCard without a photo disables the avatar. The other way, an avatar alice
publishes on PEP appears in her vCard, and is not published back. Her account's
disco#info lists urn:xmpp:pep-vcard-conversion:0."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator

import pytest

from .conftest import Client, RunningServer, present
from .test_pep import PEP_PLUGINS, connect_with, subscribe, wait_until

pytestmark = pytest.mark.e2e

CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
PLUGINS = (*PEP_PLUGINS, "xep_0030", "xep_0054", "xep_0153")


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob"):
        server.add_user(name, f"{name}-password")


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\0" + bytes(width) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@contextlib.asynccontextmanager
async def avatar_client(server: RunningServer, jid: str) -> AsyncIterator[Client]:
    """Logged in with PEP and vCard plugins; caps include avatar metadata+notify;
    `metadata` gets each avatar metadata event, `photos` each contact's presence hash."""
    client = await connect_with(server, jid, PLUGINS)
    client.metadata: asyncio.Queue[object] = asyncio.Queue()  # type: ignore[misc]
    client.photos: dict[str, str | None] = {}  # type: ignore[misc]
    client.add_event_handler("avatar_metadata_publish", client.metadata.put_nowait)

    def presence(pres) -> None:  # type: ignore[no-untyped-def]
        if pres.match("presence/vcard_temp_update"):
            client.photos[pres["from"].bare] = pres["vcard_temp_update"]["photo"]

    client.add_event_handler("presence_available", presence)
    async with present(client, caps=True):
        yield client


def infos(event) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    metadata = event["pubsub_event"]["items"]["item"]["avatar_metadata"]
    return [
        {k: info[k] for k in ("id", "type", "bytes", "width", "height")}
        for info in metadata["items"]
    ]


async def test_a_vcard_avatar_reaches_xep_0084_clients_and_back(server: RunningServer) -> None:
    async with (
        avatar_client(server, "alice@localhost/desk") as alice,
        avatar_client(server, "bob@localhost/phone") as bob,
    ):
        await subscribe(alice, bob, "bob@localhost", "alice@localhost")
        await asyncio.sleep(0.5)  # caps questions answered

        info = await bob.plugin["xep_0030"].get_info("alice@localhost")
        assert CONVERSION in info["disco_info"]["features"]

        # vCard to PEP: a XEP-0153 client sets its photo
        image = png(48, 32)
        avatar_id = hashlib.sha1(image).hexdigest()
        await alice.plugin["xep_0153"].set_avatar(avatar=image, mtype="image/png")
        event = await asyncio.wait_for(bob.metadata.get(), 10)
        assert event["from"] == "alice@localhost"
        assert infos(event) == [
            {
                "id": avatar_id,
                "type": "image/png",
                "bytes": len(image),
                "width": 48,
                "height": 32,
            }
        ]
        data = await bob.plugin["xep_0084"].retrieve_avatar("alice@localhost", avatar_id)
        assert data["pubsub"]["items"]["item"]["avatar_data"]["value"] == image
        # the XEP-0153 hash in alice's presence names the same image
        await wait_until(lambda: bob.photos.get("alice@localhost") == avatar_id)

        # the same photo again (a vCard edit that keeps it): nothing new on PEP
        card = (await alice.plugin["xep_0054"].get_vcard("alice@localhost"))["vcard_temp"]
        card["FN"] = "Alice Liddell"
        await alice.plugin["xep_0054"].publish_vcard(card)
        # a vCard without a photo disables the avatar (XEP-0084 §4.5)
        empty = alice.plugin["xep_0054"].make_vcard()
        empty["FN"] = "Alice Liddell"
        await alice.plugin["xep_0054"].publish_vcard(empty)
        event = await asyncio.wait_for(bob.metadata.get(), 10)
        assert infos(event) == [], "the same photo was published twice"

        # PEP to vCard still works, and is not published back
        other = png(20, 20)
        other_id = alice.plugin["xep_0084"].generate_id(other)
        await alice.plugin["xep_0084"].publish_avatar(other)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": other_id, "type": "image/png", "bytes": len(other)}]
        )
        event = await asyncio.wait_for(bob.metadata.get(), 10)
        assert [i["id"] for i in infos(event)] == [other_id]
        card = (await bob.plugin["xep_0054"].get_vcard("alice@localhost"))["vcard_temp"]
        assert card["PHOTO"]["BINVAL"] == other and card["FN"] == "Alice Liddell"
        await asyncio.sleep(1)
        assert bob.metadata.empty(), "the vCard copy was published back on PEP"
