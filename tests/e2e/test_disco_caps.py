"""The server's XEP-0115 caps and XEP-0128/XEP-0157 extended disco#info against
the real `chatgate serve`, checked by slixmpp's xep_0115 (which verifies the
advertised hash against the caps node's disco#info) and xep_0128."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from .conftest import Client, RunningServer, start_server

pytestmark = pytest.mark.e2e

CONTACTS = {"admin": ["mailto:ops@example.org", "xmpp:ops@localhost"], "abuse": ["mailto:a@x.org"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    table = "\n".join(f"{kind} = {values!r}".replace("'", '"') for kind, values in CONTACTS.items())
    extra = f"\n[modules.disco.contacts]\n{table}\n"
    srv = start_server(tmp_path_factory.mktemp("disco"), extra)
    srv.add_user("ann", "ann-password")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


async def test_server_caps_verified_by_slixmpp(server: RunningServer) -> None:
    client = Client("ann@localhost/caps", "ann-password")
    client.register_plugin("xep_0004")
    client.register_plugin("xep_0115")
    client.register_plugin("xep_0128")
    client.ca_certs = server.certificate
    client.enable_plaintext = client.enable_direct_tls = False
    started = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.done() or started.set_result(1))
    client.connect("127.0.0.1", server.starttls_port)
    try:
        await asyncio.wait_for(started, 15)
        assert "caps" in client.features  # the <c/> stream feature was offered
        caps = client.plugin["xep_0115"]
        ver = None
        for _ in range(100):  # slixmpp checks the hash in the background
            ver = await caps.get_verstring("localhost")
            if ver:
                break
            await asyncio.sleep(0.05)
        assert ver, "slixmpp did not accept the server's caps hash"
        cached = await caps.get_caps(verstring=ver)
        assert "http://jabber.org/protocol/commands" in cached["features"]
        info = await client.plugin["xep_0030"].get_info(jid="localhost", cached=False, timeout=5)
        forms = {
            form["values"]["FORM_TYPE"][0]
            if isinstance(form["values"]["FORM_TYPE"], list)
            else form["values"]["FORM_TYPE"]: form["values"]
            for form in info["disco_info"].iterables
        }
        contact = forms["http://jabber.org/network/serverinfo"]
        assert contact["admin-addresses"] == CONTACTS["admin"]
        assert contact["abuse-addresses"] == CONTACTS["abuse"]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)
