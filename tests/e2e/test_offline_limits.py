"""Offline storage under attack (issue 9, items 3 and 12), with slixmpp clients.

A message whose stored (escaped) form is over the stanza limit used to make the
recipient lose every stored message at login; quotas counted messages per
recipient only.  Here: nothing stored is lost, and one sender's share and each
recipient's store are bounded in stored bytes and in count, refused with
`service-unavailable` (RFC 6121 §8.5.2.2.1, XEP-0160 §3).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import slixmpp

from .conftest import Client, RunningServer, logged_in, start_server

pytestmark = pytest.mark.e2e

USERS = ("amy", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ivy")
LIMITS = """
[limits]
max_offline_messages = 8
max_offline_messages_per_sender = 5
max_offline_bytes = 500000
max_offline_bytes_per_sender = 300000
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("offline"), LIMITS)
    for name in USERS:
        srv.add_user(name, f"{name}-password")
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


def send_raw_chat(client: Client, to: str, body: str, msg_id: str) -> None:
    """Send `body` as written: slixmpp itself would escape each '>' as '&gt;'."""
    client.send_raw(
        f"<message to='{to}@localhost' type='chat' id='{msg_id}'><body>{body}</body></message>"
    )


async def sync(client: Client) -> None:
    """A ping answered means the server processed (and bounced) everything sent before."""
    await client.plugin["xep_0199"].ping(jid="localhost", timeout=10)


def drain(client: Client) -> list[slixmpp.Message]:
    got = []
    while not client.messages.empty():
        got.append(client.messages.get_nowait())
    return got


def bounces(client: Client) -> dict[str, str]:
    return {m["id"]: m["error"]["condition"] for m in drain(client) if m["type"] == "error"}


async def receive(server: RunningServer, user: str, count: int) -> list[slixmpp.Message]:
    """Log in, take `count` offline messages, and check that nothing else comes."""
    async with logged_in(server, f"{user}@localhost/in", f"{user}-password") as client:
        got = [await client.next_message(timeout=15) for _ in range(count)]
        await sync(client)
        assert drain(client) == []
    return got


async def nothing_left(server: RunningServer, user: str) -> None:
    async with logged_in(server, f"{user}@localhost/again", f"{user}-password") as client:
        await sync(client)
        assert drain(client) == []


async def test_a_message_larger_when_stored_than_the_stanza_limit_loses_nothing(
    server: RunningServer,
) -> None:
    # 70 KB on the wire; 280 KB stored, over the 262,144-byte stanza limit.
    big = ">" * 70_000
    async with logged_in(server, "amy@localhost/out", "amy-password") as amy:
        send_raw_chat(amy, "ben", "message 1", "m1")
        send_raw_chat(amy, "ben", big, "m2")
        send_raw_chat(amy, "ben", "message 3", "m3")
        await sync(amy)
        assert bounces(amy) == {}
    got = await receive(server, "ben", 3)
    assert [m["body"] for m in got] == ["message 1", big, "message 3"]
    assert all(m["from"] == "amy@localhost/out" for m in got)
    assert all(m["delay"]["stamp"] is not None for m in got)
    await nothing_left(server, "ben")


async def test_one_sender_gets_a_share_counted_in_stored_bytes(server: RunningServer) -> None:
    # 90,000 '>' stored are ~360 KB: over the 300 KB share though 90 KB arrived.
    async with logged_in(server, "dan@localhost/out", "dan-password") as dan:
        send_raw_chat(dan, "cat", ">" * 90_000, "big")
        for i in range(3):
            send_raw_chat(dan, "cat", "x" * 90_000, f"d{i}")  # ~90 KB stored each
        send_raw_chat(dan, "cat", "x" * 90_000, "d3")  # a fourth: over the share
        await sync(dan)
        assert bounces(dan) == {"big": "service-unavailable", "d3": "service-unavailable"}
    # Another sender still reaches cat.
    async with logged_in(server, "eve@localhost/out", "eve-password") as eve:
        send_raw_chat(eve, "cat", "from eve", "e0")
        await sync(eve)
        assert bounces(eve) == {}
    got = await receive(server, "cat", 4)
    assert [m["body"] for m in got] == ["x" * 90_000] * 3 + ["from eve"]
    await nothing_left(server, "cat")


async def test_the_recipients_store_is_bounded_in_bytes_and_count(server: RunningServer) -> None:
    senders = ("fay", "gus", "hal")
    sent: list[str] = []
    for name in senders[:2]:
        async with logged_in(server, f"{name}@localhost/out", f"{name}-password") as client:
            for i in range(2):
                body = f"{name}{i}:" + "y" * 120_000
                send_raw_chat(client, "ivy", body, f"{name}{i}")
                sent.append(body)
            await sync(client)
            assert bounces(client) == {}
    async with logged_in(server, "hal@localhost/out", "hal-password") as hal:
        # 480 KB held: hal's first message is within its share but not ivy's bytes.
        send_raw_chat(hal, "ivy", "z" * 30_000, "h0")
        for i in range(4):
            send_raw_chat(hal, "ivy", f"small {i}", f"s{i}")
        await sync(hal)
        # Four held, so four small ones fit the count of 8; the fifth would not.
        send_raw_chat(hal, "ivy", "one too many", "s4")
        await sync(hal)
        assert bounces(hal) == {"h0": "service-unavailable", "s4": "service-unavailable"}
    got = await receive(server, "ivy", 8)
    assert [m["body"] for m in got] == sent + [f"small {i}" for i in range(4)]
    await nothing_left(server, "ivy")
