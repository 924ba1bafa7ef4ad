"""XEP-0398 §4's presence hash: the rules for stamping a presence (each case of
§4 and XEP-0153 §3.2), and the hash an account advertises, read through the real
pep module after real publishes (a XEP-0084 avatar, a vCard photo, an empty
metadata), compared with hashlib's SHA-1 of the image."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chatgate.modules.pep.presence_hash import PhotoHashes, stamp
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize

from .client import login, pep_server, publish
from .test_avatars import META, avatar
from .test_vcard_to_avatar import png, vcard_set

UPDATE = "vcard-temp:x:update"
HASH = "a" * 40


def presence(inner: str = "", attrs: str = "") -> object:
    data = f"<presence xmlns='jabber:client'{attrs}>{inner}</presence>".encode()
    return parse_fragment(data, "jabber:client", max_stanza_bytes=len(data) + 1)


def photos(el) -> list[str]:  # type: ignore[no-untyped-def]
    tree = ET.fromstring(serialize(el))
    return [p.text or "" for p in tree.iter(f"{{{UPDATE}}}photo")]


@pytest.mark.parametrize(
    ("inner", "photo", "changed", "after"),
    [
        ("", HASH, True, [HASH]),  # no <x/>: added
        ("", "", True, [""]),  # no avatar: an empty <photo/> says so
        ("", None, False, []),  # unknown: untouched
        (f"<x xmlns='{UPDATE}'/>", HASH, True, [HASH]),  # "not ready": overwritten
        (f"<x xmlns='{UPDATE}'><photo/></x>", HASH, False, [""]),  # client says none: kept
        (f"<x xmlns='{UPDATE}'><photo>{'b' * 40}</photo></x>", HASH, True, [HASH]),
        (f"<x xmlns='{UPDATE}'><photo>{HASH}</photo></x>", HASH, False, [HASH]),
        # we know of no avatar, the client of one (a vCard photo PEP could not take):
        # its hash is kept, not replaced by an empty <photo/> (seen with slixmpp's
        # test_vcard_avatar after test_user_avatar, on the same account)
        (f"<x xmlns='{UPDATE}'><photo>{HASH}</photo></x>", "", False, [HASH]),
        (f"<x xmlns='{UPDATE}'/>", "", True, [""]),  # "not ready": overwritten (§4 MUST)
        (f"<x xmlns='{UPDATE}'><photo>{HASH}</photo><photo>x</photo></x>", HASH, True, [HASH]),
    ],
)
def test_stamp_follows_xep_0398_section_4(
    inner: str, photo: str | None, changed: bool, after: list[str]
) -> None:
    el = presence(inner + "<show>away</show>")
    assert stamp(el, photo) is changed  # type: ignore[arg-type]
    assert photos(el) == after
    assert ET.fromstring(serialize(el)).findtext("show") == "away"


@pytest.mark.parametrize("kind", ["unavailable", "subscribe", "probe", "error"])
def test_stamp_leaves_presence_with_a_type_alone(kind: str) -> None:
    el = presence("", f" type='{kind}'")
    assert stamp(el, HASH) is False  # type: ignore[arg-type]
    assert photos(el) == []


async def test_the_advertised_hash_follows_both_directions(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        hashes = PhotoHashes(srv.module("pep").service)
        owner = ("alice", "localhost")
        alice = await login(srv, "alice")
        await alice.available([])
        assert await hashes.current(owner) is None  # no metadata node yet

        image = png(8, 8)
        _, data, meta = avatar(image)
        await alice.iq("set", data, iq_id="d")
        await alice.iq("set", meta, iq_id="m")
        assert await hashes.current(owner) == hashlib.sha1(image).hexdigest()

        other = png(5, 5)
        await alice.iq("set", vcard_set(other), iq_id="v")
        assert await hashes.current(owner) == hashlib.sha1(other).hexdigest()
        el = presence()
        assert await hashes.stamp(owner, el) is True  # type: ignore[arg-type]
        assert photos(el) == [hashlib.sha1(other).hexdigest()]

        await alice.iq("set", publish(META, f"<metadata xmlns='{META}'/>", "off"), iq_id="e")
        assert await hashes.current(owner) == ""
