"""PEP (XEP-0163 on a XEP-0060 core), avatars (XEP-0084, XEP-0398) and pubsub
with aioxmpp 0.13 as the client: an item published on a node reaches a
subscribed contact whose caps say `+notify` and nobody else; an avatar reaches a
contact through aioxmpp's `AvatarService` and lands in the vCard; aioxmpp's
`PubSubClient` works the account's own service (create, publish, items, retract,
node configuration, purge, delete)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import aioxmpp
import aioxmpp.avatar
import aioxmpp.forms
import aioxmpp.pep
import aioxmpp.pubsub
import aioxmpp.pubsub.xso as pubsub_xso
import aioxmpp.service
import aioxmpp.vcard
import aioxmpp.xso
import pytest

from tests.e2e.aioxmpp_support import (
    Emissions,
    add_users,
    aioxmpp_client,
    aioxmpp_client_with,
    befriend,
)
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "aioxmpp-pep-pass"
NOTES = "urn:example:chatgate-tests:notes"
SERVICES = (aioxmpp.RosterClient, aioxmpp.PEPClient, aioxmpp.avatar.AvatarService)


@pubsub_xso.as_payload_class
class Note(aioxmpp.xso.XSO):
    """A small payload of our own, the way an application defines one."""

    TAG = (NOTES, "note")
    text = aioxmpp.xso.Text(default="")

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text


class NotesService(aioxmpp.service.Service):
    """An application's service that wants notes events, declared the way aioxmpp
    offers (`register_pep_node`: the `+notify` feature is in its caps)."""

    ORDER_AFTER = [aioxmpp.PEPClient]
    notes = aioxmpp.pep.register_pep_node(NOTES, notify=True)


def png(red: int, green: int, blue: int) -> bytes:
    """A real 1x1 PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, green, blue]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    add_users(server, ("px-alice", "px-bob", "px-carol", "px-dave", "px-erin"), PASSWORD)


def client(
    server: RunningServer, user: str, services: Sequence[type[Any]] = SERVICES
) -> AbstractAsyncContextManager[aioxmpp.PresenceManagedClient]:
    return aioxmpp_client_with(server, f"{user}@localhost/pep", PASSWORD, services)


async def test_item_reaches_the_subscribed_contact_with_notify(server: RunningServer) -> None:
    async with (
        client(server, "px-alice", (*SERVICES, NotesService)) as alice,
        client(server, "px-bob") as bob,
        client(server, "px-carol") as carol,
    ):
        # Bob wants notes (`+notify` in his caps); Carol is a contact without it
        bob_notes = bob.summon(aioxmpp.PEPClient).claim_pep_node(NOTES, notify=True)
        heard_by_bob = Emissions(bob_notes.on_item_publish)
        heard_by_carol = Emissions(carol.summon(aioxmpp.PubSubClient).on_item_published)
        await befriend(alice, bob)
        await befriend(alice, carol)
        # a stranger, even one asking for notes, hears nothing
        async with client(server, "px-dave") as dave:
            dave_notes = dave.summon(aioxmpp.PEPClient).claim_pep_node(NOTES, notify=True)
            heard_by_dave = Emissions(dave_notes.on_item_publish)

            heard_by_alice = Emissions(alice.summon(NotesService).notes.on_item_publish)
            pep = alice.summon(aioxmpp.PEPClient)
            assert await pep.available()  # the account's pubsub/pep identity (XEP-0163 §8.1)
            item_id = await pep.publish(NOTES, Note("gone fishing"), id_="today")
            assert item_id == "today"
            (jid, node, item), _ = await heard_by_bob.next()
            assert jid == alice.local_jid.bare() and node == NOTES
            assert item.id_ == "today" and item.registered_payload.text == "gone fishing"
            # the owner's own resource wants notes too (XEP-0163 §4.3)
            (jid, node, item), _ = await heard_by_alice.next()
            assert (jid, node, item.id_) == (alice.local_jid.bare(), NOTES, "today")
            assert await heard_by_carol.silent()
            assert await heard_by_dave.silent(0.2)

            # Dave may not read the node either (presence access model)
            with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
                await dave.summon(aioxmpp.PubSubClient).get_items(alice.local_jid.bare(), NOTES)
            assert refused.value.condition == aioxmpp.errors.ErrorCondition.NOT_AUTHORIZED

        # Carol, as a contact, may fetch what she was not told about
        items = await carol.summon(aioxmpp.PubSubClient).get_items(alice.local_jid.bare(), NOTES)
        assert [(i.id_, i.registered_payload.text) for i in items.payload.items] == [
            ("today", "gone fishing")
        ]


async def test_avatar_reaches_a_contact_and_the_vcard(server: RunningServer) -> None:
    image = png(200, 30, 30)
    avatar = aioxmpp.avatar.AvatarSet()
    avatar.add_avatar_image("image/png", image_bytes=image, width=1, height=1)
    async with client(server, "px-erin") as erin, client(server, "px-bob") as bob:
        await befriend(erin, bob)
        changes = Emissions(bob.summon(aioxmpp.avatar.AvatarService).on_metadata_changed)
        own = Emissions(erin.summon(aioxmpp.avatar.AvatarService).on_metadata_changed)
        # the two XEP-0084 nodes, data then metadata
        await erin.summon(aioxmpp.avatar.AvatarService).publish_avatar_set(avatar)

        while True:  # vCard-based (XEP-0153) announcements may come too: wait for PEP's
            (jid, descriptors), _ = await changes.next()
            if any(
                isinstance(d, aioxmpp.avatar.service.PubsubAvatarDescriptor) for d in descriptors
            ):
                break
        assert jid == erin.local_jid.bare()
        (descriptor,) = descriptors
        assert descriptor.id_ == avatar.png_id and descriptor.mime_type == "image/png"
        assert descriptor.nbytes == len(image)
        assert await descriptor.get_image_bytes() == image
        # Erin's own resource hears of it, and reads it back
        while True:
            (jid, descriptors), _ = await own.next()
            if any(
                isinstance(d, aioxmpp.avatar.service.PubsubAvatarDescriptor) for d in descriptors
            ):
                break
        assert jid == erin.local_jid.bare() and [d.id_ for d in descriptors] == [avatar.png_id]
        mine = await erin.summon(aioxmpp.avatar.AvatarService).get_avatar_metadata(
            erin.local_jid.bare(), require_fresh=True
        )
        assert await mine[0].get_image_bytes() == image

        fetched = await bob.summon(aioxmpp.avatar.AvatarService).get_avatar_metadata(
            erin.local_jid.bare(), require_fresh=True
        )
        assert [d.id_ for d in fetched] == [avatar.png_id]

        # XEP-0398: the server put the same picture in Erin's vCard
        vcard = await bob.summon(aioxmpp.vcard.VCardService).get_vcard(erin.local_jid.bare())
        assert vcard.get_photo_data() == image
        assert vcard.get_photo_mime_type() == "image/png"

        # an empty metadata item disables the avatar; the contact hears of it
        await erin.summon(aioxmpp.avatar.AvatarService).disable_avatar()
        while True:
            (jid, descriptors), _ = await changes.next()
            if jid == erin.local_jid.bare() and not descriptors:
                break
        vcard = await bob.summon(aioxmpp.vcard.VCardService).get_vcard(erin.local_jid.bare())
        assert vcard.get_photo_data() is None


def node_config(values: dict[str, str]) -> aioxmpp.forms.Data:
    """A pubsub#node_config submission of `values`, built field by field."""
    form = aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT)
    values = {"FORM_TYPE": "http://jabber.org/protocol/pubsub#node_config", **values}
    for var, value in values.items():
        form.fields.append(aioxmpp.forms.Field(var=var, values=[value]))
    return form


async def test_pubsub_client_on_the_own_pep_service(server: RunningServer) -> None:
    async with aioxmpp_client(server, "px-dave@localhost/ps", PASSWORD) as dave:
        pubsub = dave.summon(aioxmpp.PubSubClient)
        me = dave.local_jid.bare()
        features = await pubsub.get_features(me)
        assert {
            pubsub_xso.Feature.PUBLISH,
            pubsub_xso.Feature.RETRIEVE_ITEMS,
            pubsub_xso.Feature.RETRACT_ITEMS,
            pubsub_xso.Feature.CONFIG_NODE,
            pubsub_xso.Feature.PURGE_NODES,
            pubsub_xso.Feature.DELETE_NODES,
        } <= features

        assert await pubsub.create(me, NOTES) == NOTES
        config = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, NOTES))
        assert config.access_model.value == "presence"  # XEP-0163's default
        config.max_items.value = "10"
        config.title.value = "Notes"
        await pubsub.set_node_config(me, config.render_reply(), NOTES)
        # a list-single field's new value, in a form built by hand
        await pubsub.set_node_config(me, node_config({"pubsub#access_model": "whitelist"}), NOTES)
        again = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, NOTES))
        assert (again.max_items.value, again.access_model.value) == ("10", "whitelist")
        assert again.title.value == "Notes"

        for n in range(3):
            assert await pubsub.publish(me, NOTES, Note(f"n{n}"), id_=f"i{n}") == f"i{n}"
        generated = await pubsub.publish(me, NOTES, Note("no id"))
        assert generated  # the server made one (XEP-0060 §7.1.2)

        def texts(result: pubsub_xso.Request) -> list[tuple[str, str]]:
            return [(i.id_, i.registered_payload.text) for i in result.payload.items]

        everything = texts(await pubsub.get_items(me, NOTES))
        assert sorted(everything) == sorted(
            [("i0", "n0"), ("i1", "n1"), ("i2", "n2"), (generated, "no id")]
        )
        assert texts(await pubsub.get_items(me, NOTES, max_items=1)) == [(generated, "no id")]
        assert texts(await pubsub.get_items_by_id(me, NOTES, ["i1"])) == [("i1", "n1")]

        await pubsub.retract(me, NOTES, "i1")
        assert texts(await pubsub.get_items_by_id(me, NOTES, ["i1"])) == []
        assert len(texts(await pubsub.get_items(me, NOTES))) == 3

        # fewer max_items drops the oldest
        config = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, NOTES))
        config.max_items.value = "1"
        config.title.value = "Notes"
        await pubsub.set_node_config(me, config.render_reply(), NOTES)
        assert texts(await pubsub.get_items(me, NOTES)) == [(generated, "no id")]

        await pubsub.purge(me, NOTES)
        assert texts(await pubsub.get_items(me, NOTES)) == []
        await pubsub.delete(me, NOTES)
        with pytest.raises(aioxmpp.errors.XMPPCancelError) as gone:
            await pubsub.get_items(me, NOTES)
        assert gone.value.condition == aioxmpp.errors.ErrorCondition.ITEM_NOT_FOUND

        # someone else's PEP service is not ours to change
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
            await pubsub.publish(aioxmpp.JID.fromstr("px-alice@localhost"), NOTES, Note("x"))
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN


async def test_node_config_form_template(server: RunningServer) -> None:
    async with aioxmpp_client(server, "px-carol@localhost/ps", PASSWORD) as carol:
        pubsub = carol.summon(aioxmpp.PubSubClient)
        me = carol.local_jid.bare()
        await pubsub.create(me, "urn:example:chatgate-tests:options")
        node = "urn:example:chatgate-tests:options"
        config = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, node))
        config.access_model.value = "open"
        config.send_last_published_item.value = "never"
        config.title.value = "Notes"
        await pubsub.set_node_config(me, config.render_reply(), node)
        again = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, node))
        assert again.access_model.value == "open"
        assert again.send_last_published_item.value == "never"


async def test_node_config_round_trip_without_a_title(server: RunningServer) -> None:
    async with aioxmpp_client(server, "px-carol@localhost/ps", PASSWORD) as carol:
        pubsub = carol.summon(aioxmpp.PubSubClient)
        me = carol.local_jid.bare()
        node = "urn:example:chatgate-tests:untitled"
        await pubsub.create(me, node)
        config = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, node))
        config.max_items.value = "5"
        await pubsub.set_node_config(me, config.render_reply(), node)
        again = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, node))
        assert again.max_items.value == "5"
