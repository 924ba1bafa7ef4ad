"""Server services seen by slixmpp (disco, version, time, vCard), graceful shutdown,
the authentication time limit, and `chatgate check`."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0054 import VCardTemp

from .conftest import RunningServer, connect, logged_in, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    server.add_user("ivan", "ivan-password")
    server.add_user("judy", "judy-password")


async def test_disco_info_lists_identity_and_features(server: RunningServer) -> None:
    async with logged_in(server, "ivan@localhost/d", "ivan-password") as ivan:
        info = await ivan.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
        identities = info["disco_info"]["identities"]
        assert ("server", "im", None, "chatgate") in identities
        features = info["disco_info"]["features"]
        for var in (
            "urn:xmpp:ping",
            "jabber:iq:version",
            "urn:xmpp:time",
            "vcard-temp",
            "msgoffline",
        ):
            assert var in features


async def test_software_version_and_entity_time(server: RunningServer) -> None:
    async with logged_in(server, "ivan@localhost/v", "ivan-password") as ivan:
        ivan.register_plugin("xep_0092")
        ivan.register_plugin("xep_0202")
        version = await ivan.plugin["xep_0092"].get_version("localhost", timeout=5)
        assert version["software_version"]["name"] == "chatgate"
        assert version["software_version"]["version"]
        when = await ivan.plugin["xep_0202"].get_entity_time("localhost", timeout=5)
        # XEP-0202 §4: <utc/> is an XEP-0082 DateTime ending in Z (slixmpp's own accessor
        # appends a second Z, so read the element).
        utc = when.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc").text
        stamp = datetime.datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.UTC
        )
        assert abs(stamp.timestamp() - time.time()) < 60
        assert when.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}tzo").text == "+00:00"


async def test_vcard_set_then_read_by_another_user(server: RunningServer) -> None:
    async with logged_in(server, "ivan@localhost/c", "ivan-password") as ivan:
        ivan.register_plugin("xep_0054")
        card = VCardTemp()
        card["FN"] = "Ivan Ivanov"
        card["NICKNAME"] = "ivan"
        await ivan.plugin["xep_0054"].publish_vcard(card, timeout=5)
    async with logged_in(server, "judy@localhost/c", "judy-password") as judy:
        judy.register_plugin("xep_0054")
        result = await judy.plugin["xep_0054"].get_vcard("ivan@localhost", cached=False, timeout=5)
        assert result["vcard_temp"]["FN"] == "Ivan Ivanov"


async def test_unknown_iq_gets_service_unavailable(server: RunningServer) -> None:
    async with logged_in(server, "ivan@localhost/u", "ivan-password") as ivan:
        iq = ivan.Iq(stype="get", sto="localhost")
        iq.append(ElementTree.Element("{urn:example:nothing}query"))
        with pytest.raises(IqError) as error:
            await iq.send(timeout=5)
        assert error.value.iq["error"]["condition"] == "service-unavailable"


async def test_sigterm_sends_system_shutdown_to_every_session(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        srv.add_user("kim", "kim-password")
        one = await connect(srv, "kim@localhost/1", "kim-password")
        two = await connect(srv, "kim@localhost/2", "kim-password", transport="direct")
        srv.process.terminate()
        for client in (one, two):
            error = await asyncio.wait_for(client.stream_errors.get(), 10)
            assert error["condition"] == "system-shutdown"
        assert await asyncio.get_running_loop().run_in_executor(None, srv.process.wait, 20) == 0
    finally:
        srv.stop()


def test_idle_unauthenticated_connection_is_closed_after_the_auth_time_limit(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path, extra="auth_timeout = 1.0")
    try:
        with socket.create_connection(("127.0.0.1", srv.plain_port), timeout=10) as sock:
            sock.sendall(
                b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
                b" to='localhost' version='1.0'>"
            )
            started = time.monotonic()
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert b"<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in data
            assert 0.8 < time.monotonic() - started < 8
    finally:
        srv.stop()


def test_check_prints_listeners_and_mechanisms(server: RunningServer) -> None:
    result = server.cli("check")
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{server.starttls_port}" in result.stdout
    assert "starttls (required)" in result.stdout
    assert "SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN" in result.stdout
    assert "configuration OK" in result.stdout


def test_check_names_the_bad_option_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "bad.toml"
    config.write_text('[auth]\nmechanisms = ["SCRAM-SHA-1", "X-BOGUS"]\n[server]\nbogus = 1\n')
    result = subprocess.run(
        [sys.executable, "-m", "chatgate", "check", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "server.bogus" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text('[auth]\nmechanisms = ["SCRAM-SHA-1", "X-BOGUS"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "chatgate", "check", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "X-BOGUS" in result.stderr
