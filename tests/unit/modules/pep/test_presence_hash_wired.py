"""XEP-0398 §4 wired: the avatar hash the server puts into its users' available
presence, through the real pep and presence modules and the router.  alice
publishes as a XEP-0084 client (no hash in her presence); what bob, her contact,
receives is read back and compared with hashlib's SHA-1 of the image."""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chatgate.modules.pep import presence_hash
from chatgate.modules.pep.presence_hash import AdvertisedHashes
from chatgate.xml.framed import parse_fragment

from ..wire import Server, Wire, plain
from .client import CLIENT, PUBSUB, Client, login, pep_server, publish
from .test_avatars import META, avatar
from .test_vcard_to_avatar import png, vcard_set

UPDATE = "vcard-temp:x:update"


def photos_in(stanzas: list[ET.Element], sender: str) -> list[list[str]]:
    """The <photo/> texts of each presence from `sender`, in order."""
    return [
        [p.text or "" for p in el.iter(f"{{{UPDATE}}}photo")]
        for el in stanzas
        if el.tag == CLIENT + "presence" and el.get("from") == sender
    ]


async def publish_avatar(alice: Client, image: bytes) -> str:
    avatar_id, data, meta = avatar(image)
    assert (await alice.iq("set", data, iq_id="d")).get("type") == "result"
    assert (await alice.iq("set", meta, iq_id="m")).get("type") == "result"
    return avatar_id


async def online(srv, name: str) -> Client:  # type: ignore[no-untyped-def]
    client = await login(srv, name)
    await client.available(None)
    client.take()
    return client


def hashes_of(srv) -> AdvertisedHashes:  # type: ignore[no-untyped-def]
    hashes = srv.module("pep").hashes
    assert isinstance(hashes, AdvertisedHashes)
    return hashes


async def test_after_a_xep_0084_publish_the_next_presence_carries_the_hash(
    tmp_path: Path,
) -> None:
    async with pep_server(tmp_path) as srv:
        bob = await online(srv, "bob")
        alice = await online(srv, "alice")
        bob.take()
        # Before any avatar: nothing is known, the presence is left as sent.
        await alice.send("<presence><show>away</show></presence>")
        assert photos_in(bob.take(), alice.jid) == [[]]

        image = png(8, 8)
        avatar_id = await publish_avatar(alice, image)
        assert avatar_id == hashlib.sha1(image).hexdigest()
        await alice.send("<presence><show>chat</show></presence>")
        seen = [el for el in bob.take() if el.tag == CLIENT + "presence"]
        assert photos_in(seen, alice.jid) == [[avatar_id]]
        assert seen[0].findtext(CLIENT + "show") == "chat"  # the rest is untouched

        # Directed presence too (to bob's full JID), and what a probe answers.
        await alice.send(f"<presence to='{bob.jid}'/>")
        assert photos_in(bob.take(), alice.jid) == [[avatar_id]]


async def test_a_hash_the_client_sent_is_replaced_and_an_empty_photo_kept(
    tmp_path: Path,
) -> None:
    async with pep_server(tmp_path) as srv:
        bob = await online(srv, "bob")
        alice = await online(srv, "alice")
        avatar_id = await publish_avatar(alice, png(6, 6))
        bob.take()
        await alice.send(f"<presence><x xmlns='{UPDATE}'><photo>{'b' * 40}</photo></x></presence>")
        assert photos_in(bob.take(), alice.jid) == [[avatar_id]]
        await alice.send(f"<presence><x xmlns='{UPDATE}'/></presence>")  # "not ready"
        assert photos_in(bob.take(), alice.jid) == [[avatar_id]]
        await alice.send(f"<presence><x xmlns='{UPDATE}'><photo/></x></presence>")
        assert photos_in(bob.take(), alice.jid) == [[""]]  # the client says: none
        await alice.send("<presence type='unavailable'/>")
        assert photos_in(bob.take(), alice.jid) == [[]]  # unavailable: never stamped


async def test_the_hash_is_read_at_bind_and_dropped_with_the_last_session(
    tmp_path: Path,
) -> None:
    async with pep_server(tmp_path) as srv:
        hashes = hashes_of(srv)
        bob = await online(srv, "bob")
        first = await online(srv, "alice")
        avatar_id = await publish_avatar(first, png(7, 7))
        assert hashes.store.get("alice@localhost") == avatar_id
        second = await login(srv, "alice", "two")  # bound: a second session
        await first.send_nowait("</stream:stream>")
        await first.wire.settle()
        assert hashes.store.get("alice@localhost") == avatar_id  # one session is left
        await second.send_nowait("</stream:stream>")
        await second.wire.settle()
        assert hashes.store.get("alice@localhost") is None  # the last one ended

        third = await login(srv, "alice", "three")  # bind reads it (settled meanwhile)
        assert hashes.store.get("alice@localhost") == avatar_id
        bob.take()
        await third.available(None)
        assert photos_in(bob.take(), third.jid) == [[avatar_id]]


async def test_a_new_avatar_then_a_disabled_one_follow_in_the_next_presence(
    tmp_path: Path,
) -> None:
    async with pep_server(tmp_path) as srv:
        bob = await online(srv, "bob")
        alice = await online(srv, "alice")
        first = await publish_avatar(alice, png(4, 4))
        second = await publish_avatar(alice, png(9, 9))
        assert first != second
        bob.take()
        await alice.send("<presence/>")
        assert photos_in(bob.take(), alice.jid) == [[second]]

        # XEP-0084 §4.5: an empty <metadata/> disables the avatar: an empty <photo/>.
        disabled = publish(META, f"<metadata xmlns='{META}'/>", "off")
        assert (await alice.iq("set", disabled, iq_id="e")).get("type") == "result"
        await alice.send("<presence/>")
        assert photos_in(bob.take(), alice.jid) == [[""]]

        # The vCard-to-PEP copy publishes unobserved; VCardStored brings its hash.
        image = png(3, 5)
        assert (await alice.iq("set", vcard_set(image), iq_id="v")).get("type") == "result"
        await alice.send("<presence/>")
        assert photos_in(bob.take(), alice.jid) == [[hashlib.sha1(image).hexdigest()]]


async def test_another_nodes_publish_updates_the_hash_here(tmp_path: Path) -> None:
    """What `cluster/pep.py` calls on the receiving node (`on_event`), after the
    publishing node stored the item in the shared database."""
    async with pep_server(tmp_path) as srv:
        hashes = hashes_of(srv)
        alice = await online(srv, "alice")
        image = png(5, 5)
        avatar_id, data, _ = avatar(image)
        await alice.iq("set", data, iq_id="d")
        service = srv.module("pep").service
        raw = (
            f"<item xmlns='{PUBSUB}' id='{avatar_id}'><metadata xmlns='{META}'>"
            f"<info id='{avatar_id}' bytes='{len(image)}' type='image/png'/></metadata></item>"
        ).encode()
        element = parse_fragment(raw, PUBSUB, max_stanza_bytes=len(raw) + 1)
        # As another node does it: stored, no observer runs here.
        await service.publish(("alice", "localhost"), alice.jid, META, element, None, observe=False)
        assert hashes.store.get("alice@localhost") is None
        hashes.changed_elsewhere("alice@localhost", "urn:xmpp:avatar:data")  # not metadata
        await alice.wire.settle()
        assert hashes.store.get("alice@localhost") is None
        hashes.changed_elsewhere("alice@localhost", META)
        await alice.wire.settle()
        assert hashes.store.get("alice@localhost") == avatar_id
        hashes.changed_elsewhere("carol@localhost", META)  # not online here: nothing read
        assert hashes.store.get("carol@localhost") is None


async def test_with_one_direction_off_presence_is_left_alone(tmp_path: Path) -> None:
    async with pep_server(tmp_path, vcard_to_avatar=False) as srv:
        assert srv.ctx.router.presence_stamp is None
        assert getattr(srv.module("pep"), "hashes", None) is None
        bob = await online(srv, "bob")
        alice = await online(srv, "alice")
        await publish_avatar(alice, png(4, 4))
        bob.take()
        await alice.send("<presence/>")
        assert photos_in(bob.take(), alice.jid) == [[]]


async def test_an_id_that_is_no_sha1_is_not_advertised(tmp_path: Path) -> None:
    """A client's metadata may name any id: only a SHA-1 (XEP-0084 §4.2) goes into
    presence, so a forged or huge id is never copied into every presence."""
    async with pep_server(tmp_path) as srv:
        hashes = hashes_of(srv)
        bob = await online(srv, "bob")
        alice = await online(srv, "alice")
        for bad in ("Z" * 40, "a" * 41, "x" * 5000):
            meta = publish(
                META, f"<metadata xmlns='{META}'><info id='{bad}' bytes='1'/></metadata>"
            )
            assert (await alice.iq("set", meta, iq_id="m")).get("type") == "result"
            assert hashes.store.get("alice@localhost") is None
            bob.take()
            await alice.send("<presence/>")
            assert photos_in(bob.take(), alice.jid) == [[]]


async def bind_and_present(srv: Server, user: str, resource: str = "r") -> Wire:
    """`user` binds and sends its initial presence in the same read (as a client that
    sends presence right after binding), without waiting for the server to settle."""
    wire = srv.connect()
    await wire.open()
    assert "<success" in await wire.send(plain(user, f"{user}-pw"))
    await wire.open()
    wire.conn.events(
        wire.parser.feed(
            b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            + f"<resource>{resource}</resource></bind></iq><presence/>".encode()
        )
    )
    return wire


async def presence_from(bob: Client, sender: str) -> float:
    """Seconds until a presence from `sender` reached bob (at most 5)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not photos_in(bob.take(), sender):
        assert loop.time() - started < 5, f"no presence from {sender}"
        await asyncio.sleep(0.005)
    return loop.time() - started


async def test_the_initial_presence_sent_with_the_bind_waits_for_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sends its initial presence right after binding (here in the same
    read as the bind): it must carry the hash, though the bind-time read of the
    account's avatar is still under way (slowed down here)."""
    async with pep_server(tmp_path) as srv:
        image = png(6, 6)
        expected = hashlib.sha1(image).hexdigest()
        first = await login(srv, "alice", "first")
        await publish_avatar(first, image)
        first.wire.conn.connection_lost()  # alice's last session: her hash is dropped
        await first.wire.settle()
        bob = await online(srv, "bob")

        hashes = hashes_of(srv)
        original = hashes.hashes.current
        reads = []

        async def slow_current(owner: tuple[str, str]) -> str | None:
            reads.append(owner)
            await asyncio.sleep(0.2)  # a loaded database
            return await original(owner)

        monkeypatch.setattr(hashes.hashes, "current", slow_current)
        alice = await bind_and_present(srv, "alice", "phone")
        await alice.settle()  # her presence waited for the read, then was routed
        assert reads == [("alice", "localhost")]
        assert photos_in(bob.take(), "alice@localhost/phone") == [[expected]]


async def test_a_read_slower_than_read_wait_holds_presence_back_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database too slow for the bind-time read: the initial presence waits
    `READ_WAIT` once and goes out unstamped; the next presence does not wait."""
    monkeypatch.setattr(presence_hash, "READ_WAIT", 0.1)
    async with pep_server(tmp_path) as srv:
        bob = await online(srv, "bob")
        release = asyncio.Event()

        async def stuck(owner: tuple[str, str]) -> str | None:
            await release.wait()
            return None

        monkeypatch.setattr(hashes_of(srv).hashes, "current", stuck)
        try:
            wire = await bind_and_present(srv, "alice")
            waited = await presence_from(bob, "alice@localhost/r")
            assert 0.1 <= waited < 1.0
            wire.conn.events(wire.parser.feed(b"<presence><show>away</show></presence>"))
            assert await presence_from(bob, "alice@localhost/r") < 0.09  # no second wait
        finally:
            release.set()  # the stuck read ends, so the server can stop
