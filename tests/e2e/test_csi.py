"""XEP-0352 client state indication end to end: the real server, raw-socket clients
(`Raw` from the stream-management tests) seeing exactly what an inactive client
is sent, and when."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import RunningServer, start_server
from .test_stream_management import SM, Raw

pytestmark = pytest.mark.e2e

CSI = "urn:xmpp:csi:0"
COMPOSING = (
    "<message to='{to}' type='chat'>"
    "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("csi"), "allow_plain_without_tls = true\n")
    for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
        srv.add_user(name, f"{name}-password")
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


def online(server: RunningServer, user: str, resource: str) -> Raw:
    raw = Raw(server.plain_port)
    features = raw.login(user, f"{user}-password")
    assert f"<csi xmlns='{CSI}'/>" in features
    raw.bind(resource)
    raw.send("<presence/>")
    raw.quiet(0.3)
    return raw


def test_inactive_client_gets_presence_and_chat_states_on_active(server: RunningServer) -> None:
    alice = online(server, "alice", "phone")
    bob = online(server, "bob", "desk")
    alice.send(f"<inactive xmlns='{CSI}'/>")
    bob.send(COMPOSING.format(to="alice@localhost/phone"))
    for status in ("one", "two", "three"):
        bob.send(f"<presence to='alice@localhost/phone'><status>{status}</status></presence>")
    # Held: nothing reaches the inactive client.
    assert alice.quiet(0.8) == ""
    alice.send(f"<active xmlns='{CSI}'/>")
    flushed = alice.quiet(0.8)
    # In order, and only the latest presence of bob's resource.
    assert flushed.index("<composing") < flushed.index("<presence")
    assert re.findall(r"<status>([^<]*)</status>", flushed) == ["three"]
    # Active again: delivered at once.
    bob.send(COMPOSING.format(to="alice@localhost/phone"))
    assert "<composing" in alice.expect(r"<message.*?</message>").group(0)
    alice.close()
    bob.close()


def test_a_message_with_a_body_is_delivered_at_once_after_what_was_held(
    server: RunningServer,
) -> None:
    carol = online(server, "carol", "phone")
    dave = online(server, "dave", "desk")
    carol.send(f"<inactive xmlns='{CSI}'/>")
    dave.send(COMPOSING.format(to="carol@localhost/phone"))
    assert carol.quiet(0.5) == ""
    dave.send("<message to='carol@localhost/phone' type='chat'><body>urgent</body></message>")
    got = carol.expect(r"<body>urgent</body>", timeout=5)
    # The held chat state came first, in the same burst (one wake-up, in order).
    assert "<composing" in got.string[: got.start()]
    # IQs are never held either.
    carol.send(f"<inactive xmlns='{CSI}'/>")
    dave.send(
        "<iq type='get' id='v1' to='carol@localhost/phone'><query xmlns='jabber:iq:version'/></iq>"
    )
    carol.expect(r"<iq [^>]*>", timeout=5)
    carol.close()
    dave.close()


def test_held_stanzas_are_counted_when_they_leave(server: RunningServer) -> None:
    """With stream management, what CSI holds is not sent yet, so not counted: an
    ack of everything sent so far is not 'too high' after <active/>."""
    erin = Raw(server.plain_port)
    erin.session("erin", "phone")
    frank = online(server, "frank", "desk")
    erin.send(f"<inactive xmlns='{CSI}'/>")
    frank.send(COMPOSING.format(to="erin@localhost/phone"))
    assert "<composing" not in erin.quiet(0.5)
    erin.send(f"<a xmlns='{SM}' h='{erin.received}'/>")  # nothing more was sent
    erin.send(f"<active xmlns='{CSI}'/>")
    erin.expect(r"<composing")
    erin.send(f"<a xmlns='{SM}' h='{erin.received + 1}'/>")
    erin.send(f"<r xmlns='{SM}'/>")
    erin.expect(r"<a xmlns='urn:xmpp:sm:3' h='\d+'/>")
    assert "stream:error" not in erin.quiet(0.3)
    erin.close()
    frank.close()
