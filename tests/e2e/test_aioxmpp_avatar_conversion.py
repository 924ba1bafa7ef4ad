"""XEP-0398, vCard to PEP, with aioxmpp 0.13 as the client: a vCard photo set
with aioxmpp's `VCardService` reaches a contact's `AvatarService` as a XEP-0084
avatar (a `PubsubAvatarDescriptor` whose id is the SHA-1 of the image, whose
bytes it fetches from PEP); a vCard without photo disables it; the account's
disco#info lists urn:xmpp:pep-vcard-conversion:0."""

from __future__ import annotations

import hashlib
from contextlib import AbstractAsyncContextManager
from typing import Any

import aioxmpp
import aioxmpp.avatar
import aioxmpp.disco
import aioxmpp.vcard
import pytest
from aioxmpp.vcard.xso import VCard

from tests.e2e.aioxmpp_support import Emissions, add_users, aioxmpp_client_with, befriend
from tests.e2e.conftest import RunningServer
from tests.e2e.test_aioxmpp_pep import png

pytestmark = pytest.mark.e2e

PASSWORD = "aioxmpp-conversion-pass"
SERVICES = (aioxmpp.RosterClient, aioxmpp.PEPClient, aioxmpp.avatar.AvatarService)
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    add_users(server, ("cv-frank", "cv-grace"), PASSWORD)


def client(server: RunningServer, name: str) -> AbstractAsyncContextManager[Any]:
    return aioxmpp_client_with(server, f"{name}@localhost/aio", PASSWORD, SERVICES)


async def pep_descriptors(changes: Emissions, jid: aioxmpp.JID) -> list[Any]:
    """The next metadata change of `jid` that comes from PEP (aioxmpp also reports
    XEP-0153 presence hashes as changes)."""
    while True:
        (who, descriptors), _ = await changes.next()
        if who != jid:
            continue
        if not descriptors or any(
            isinstance(d, aioxmpp.avatar.service.PubsubAvatarDescriptor) for d in descriptors
        ):
            return list(descriptors)


async def test_a_vcard_photo_reaches_an_aioxmpp_avatar_service(server: RunningServer) -> None:
    image = png(10, 120, 240)
    async with client(server, "cv-frank") as frank, client(server, "cv-grace") as grace:
        await befriend(frank, grace)
        info = await grace.summon(aioxmpp.DiscoClient).query_info(frank.local_jid.bare())
        assert CONVERSION in info.features

        changes = Emissions(grace.summon(aioxmpp.avatar.AvatarService).on_metadata_changed)
        card = VCard()
        card.set_photo_data("image/png", image)
        await frank.summon(aioxmpp.vcard.VCardService).set_vcard(card)

        (descriptor,) = await pep_descriptors(changes, frank.local_jid.bare())
        assert isinstance(descriptor, aioxmpp.avatar.service.PubsubAvatarDescriptor)
        assert descriptor.id_ == hashlib.sha1(image).hexdigest()
        assert descriptor.mime_type == "image/png" and descriptor.nbytes == len(image)
        assert (descriptor.width, descriptor.height) == (1, 1)
        assert await descriptor.get_image_bytes() == image

        await frank.summon(aioxmpp.vcard.VCardService).set_vcard(VCard())
        assert await pep_descriptors(changes, frank.local_jid.bare()) == []
