"""XEP-0363 against the real `chatgate serve` with aioxmpp 0.13 (a second
independent client library): the service found by disco, a slot requested
with `aioxmpp.httpupload.request_slot`, the file PUT and fetched back, and the
file-too-large error as aioxmpp reads it."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import aioxmpp
import aioxmpp.disco
import aioxmpp.httpupload
import pytest

from .aioxmpp_support import aioxmpp_client
from .conftest import RunningServer
from .web import start_web_server

pytestmark = pytest.mark.e2e

UPLOAD = "urn:xmpp:http:upload:0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_web_server(
        tmp_path_factory.mktemp("upload-aioxmpp"), "\n[modules.upload]\nmax_file_size = 1000\n"
    )
    srv.add_user("ann", "ann-password")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


async def test_slot_put_and_get_with_aioxmpp(server: RunningServer) -> None:
    async with aioxmpp_client(server, "ann@localhost/a", "ann-password") as ann:
        disco = ann.summon(aioxmpp.disco.DiscoClient)
        items = await disco.query_items(aioxmpp.JID.fromstr("localhost"))
        services = []
        for item in items.items:
            info = await disco.query_info(item.jid)
            if UPLOAD in info.features:
                services.append(item.jid)
        assert services == [aioxmpp.JID.fromstr("upload.localhost")]
        data = "grüße\n".encode() * 50
        slot = await aioxmpp.httpupload.request_slot(
            ann, services[0], "notes.txt", len(data), "text/plain"
        )
        headers = {"Content-Type": "text/plain", **dict(slot.put.headers.items())}
        async with aiohttp.ClientSession() as http:
            async with http.put(slot.put.url, data=data, headers=headers) as put:
                assert put.status == 201
            async with http.get(slot.get.url) as got:
                assert got.status == 200 and await got.read() == data
        with pytest.raises(aioxmpp.errors.XMPPModifyError) as too_big:
            await aioxmpp.httpupload.request_slot(ann, services[0], "big", 1001, "text/plain")
        assert too_big.value.condition == aioxmpp.errors.ErrorCondition.NOT_ACCEPTABLE
