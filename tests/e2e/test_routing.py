"""RFC 6121 §8.5 delivery rules seen by slixmpp clients: bare-JID messages go to the
highest non-negative priority, directed presence, keepalives, and the offline bound."""

from __future__ import annotations

import asyncio
import socket

import pytest

from .conftest import RunningServer, logged_in, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("mallory", "niaj", "olivia", "peggy"):
        server.add_user(name, f"{name}-password")


async def test_bare_jid_message_goes_to_the_highest_priority_resource(
    server: RunningServer,
) -> None:
    async with (
        logged_in(server, "mallory@localhost/low", "mallory-password", send_presence=False) as low,
        logged_in(
            server, "mallory@localhost/high", "mallory-password", send_presence=False
        ) as high,
        logged_in(server, "niaj@localhost/x", "niaj-password") as niaj,
    ):
        low.send_presence(ppriority=1)
        high.send_presence(ppriority=5)
        await low.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        await high.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        niaj.send_message(mto="mallory@localhost", mbody="to the best one", mtype="chat")
        got = await high.next_message()
        assert got["body"] == "to the best one"
        await low.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        assert low.messages.empty()


async def test_negative_priority_resource_gets_no_bare_jid_messages(server: RunningServer) -> None:
    async with logged_in(server, "olivia@localhost/x", "olivia-password") as olivia:
        async with logged_in(
            server, "peggy@localhost/shy", "peggy-password", send_presence=False
        ) as peggy:
            peggy.send_presence(ppriority=-1)
            await peggy.plugin["xep_0199"].ping(jid="localhost", timeout=5)
            olivia.send_message(mto="peggy@localhost", mbody="stored, not delivered", mtype="chat")
            await olivia.plugin["xep_0199"].ping(jid="localhost", timeout=5)
            await asyncio.sleep(0.2)
            assert peggy.messages.empty()
        # RFC 6121 §8.5.2.2: with no non-negative resource the message was stored offline.
        async with logged_in(server, "peggy@localhost/later", "peggy-password") as peggy:
            got = await peggy.next_message()
            assert got["body"] == "stored, not delivered"


async def test_directed_presence_reaches_a_non_contact_and_unavailable_follows(
    server: RunningServer,
) -> None:
    async with logged_in(server, "niaj@localhost/d", "niaj-password") as niaj:
        async with logged_in(server, "olivia@localhost/d", "olivia-password") as olivia:
            olivia.send_presence(pto="niaj@localhost/d", pstatus="hello, stranger")
            got = await niaj.next_presence("available", sender="olivia@localhost/d")
            assert got["status"] == "hello, stranger"
        # RFC 6121 §4.6.3: the server sends unavailable to directed-presence recipients.
        await niaj.next_presence("unavailable", sender="olivia@localhost/d")


async def test_whitespace_keepalives_are_harmless(server: RunningServer) -> None:
    async with logged_in(server, "mallory@localhost/ka", "mallory-password") as mallory:
        for _ in range(5):
            mallory.send_raw(" ")
        await mallory.plugin["xep_0199"].ping(jid="localhost", timeout=5)


def test_offline_store_is_bounded_and_overflow_bounces(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path)
    try:
        srv.cli("check")
        srv.config.write_text(srv.config.read_text() + "\n[limits]\nmax_offline_messages = 2\n")
        srv.stop()
        srv2 = start_server_from(srv)
        try:
            srv2.add_user("sender", "sender-pass")
            srv2.add_user("away", "away-pass1")

            async def scenario() -> list[str]:
                async with logged_in(srv2, "sender@localhost/s", "sender-pass") as sender:
                    for i in range(3):
                        sender.send_message(mto="away@localhost", mbody=f"m{i}", mtype="chat")
                    bounce = await sender.next_message()
                    return [bounce["type"], bounce["error"]["condition"], bounce["body"]]

            assert asyncio.run(scenario()) == ["error", "service-unavailable", "m2"]
        finally:
            srv2.stop()
    finally:
        srv.stop()


def start_server_from(previous: RunningServer) -> RunningServer:
    """Restart a stopped server from the same config file and data directory."""
    import os
    import subprocess
    import sys
    import time

    log = previous.log.with_name("server2.log")
    with log.open("wb") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatgate", "serve", "--config", str(previous.config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    srv = RunningServer(
        process,
        previous.config,
        previous.data_dir,
        previous.starttls_port,
        previous.direct_tls_port,
        previous.plain_port,
        log,
    )
    deadline = time.monotonic() + 30
    while srv.log_text().count("listening:") < 3:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(srv.log_text())
        time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", srv.plain_port), timeout=5):
        pass
    return srv


async def test_sessions_idle_past_the_sweep_keep_working(server: RunningServer) -> None:
    """Idle connections free their parser after two quiet sweeps (2 s each); the next
    stanza must wake it up transparently, in both directions."""
    async with (
        logged_in(server, "olivia@localhost/idle", "olivia-password") as olivia,
        logged_in(server, "peggy@localhost/idle", "peggy-password") as peggy,
    ):
        await asyncio.sleep(5)
        olivia.send_message(mto="peggy@localhost/idle", mbody="still there?", mtype="chat")
        assert (await peggy.next_message())["body"] == "still there?"
        await asyncio.sleep(5)
        peggy.send_message(mto="olivia@localhost/idle", mbody="yes", mtype="chat")
        assert (await olivia.next_message())["body"] == "yes"
