"""XEP-0398 §4 against the real `chatgate serve`, with slixmpp clients: alice's
client knows only XEP-0084 (it sends no vcard-temp:x:update hash); after she
publishes an avatar, the presence her contact bob receives, and her join presence
in a room (XEP-0045), carry ``<x xmlns='vcard-temp:x:update'><photo/></x>`` with
the avatar's id, computed here with hashlib."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import pytest

from .conftest import Client, RunningServer, present
from .test_avatar_conversion import png
from .test_pep import PEP_PLUGINS, connect_with, subscribe, wait_until

pytestmark = pytest.mark.e2e

ROOM = "avatars@conference.localhost"


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob"):
        server.add_user(name, f"{name}-password")


@contextlib.asynccontextmanager
async def client(
    server: RunningServer, jid: str, plugins: tuple[str, ...]
) -> AsyncIterator[Client]:
    """Logged in and available; `photos` maps each sender (full JID) of available
    presence to the vcard-temp:x:update photo it carried (None: no such element)."""
    c = await connect_with(server, jid, plugins)
    c.photos: dict[str, str | None] = {}  # type: ignore[misc]

    def presence(pres) -> None:  # type: ignore[no-untyped-def]
        update = pres.xml.find("{vcard-temp:x:update}x")
        photo = update.find("{vcard-temp:x:update}photo") if update is not None else None
        c.photos[str(pres["from"])] = (photo.text or "") if photo is not None else None

    c.add_event_handler("presence_available", presence)
    c.add_event_handler("groupchat_presence", presence)  # xep_0045's, for occupants
    async with present(c):
        yield c


async def test_a_xep_0084_avatar_hash_reaches_contacts_and_rooms(server: RunningServer) -> None:
    async with (
        client(server, "alice@localhost/desk", (*PEP_PLUGINS, "xep_0045")) as alice,
        client(server, "bob@localhost/phone", ("xep_0045",)) as bob,
    ):
        assert "xep_0153" not in alice.plugin  # the client adds no hash itself
        await subscribe(alice, bob, "bob@localhost", "alice@localhost")
        await wait_until(lambda: "alice@localhost/desk" in bob.photos)
        assert bob.photos["alice@localhost/desk"] is None  # no avatar yet: unstamped

        image = png(24, 16)
        avatar_id = hashlib.sha1(image).hexdigest()
        assert alice.plugin["xep_0084"].generate_id(image) == avatar_id
        await alice.plugin["xep_0084"].publish_avatar(image)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": avatar_id, "type": "image/png", "bytes": len(image)}]
        )
        alice.send_presence(pstatus="with an avatar")
        await wait_until(lambda: bob.photos.get("alice@localhost/desk") == avatar_id)

        # A room: bob creates it, alice joins; her occupant presence carries the hash.
        muc = bob.plugin["xep_0045"]
        await muc.join_muc_wait(ROOM, "Bob", timeout=10)
        await muc.set_room_config(
            ROOM, bob.plugin["xep_0004"].make_form(ftype="submit"), timeout=10
        )
        await alice.plugin["xep_0045"].join_muc_wait(ROOM, "Alice", timeout=10)
        await wait_until(lambda: f"{ROOM}/Alice" in bob.photos)
        assert bob.photos[f"{ROOM}/Alice"] == avatar_id
        assert bob.photos.get(f"{ROOM}/Bob") is None  # bob has no avatar: his is untouched
