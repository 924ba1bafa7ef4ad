"""Virtual hosts with the real server: an anonymous host (RFC 4505) and a host whose
accounts live in an operator's HTTP service, next to the internal main domain.

The clients are slixmpp (ANONYMOUS, PLAIN, SCRAM) and a raw socket where slixmpp
cannot say what is needed (the stream header's `to`, a registration IQ before
authentication).  What "nothing is left behind" means is read from the database
file itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sqlite3
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import slixmpp

from .conftest import AuthenticationFailed, RunningServer, connect, logged_in, start_server
from .providers.support import ALICE, start_service, stop_process

pytestmark = pytest.mark.e2e

GUEST = "guest.localhost"
EXT = "ext.localhost"
BOB = "bob-secret-1"
CAROL = "carol on a virtual host"  # what providers/auth_service.py knows for ext.localhost


def anonymous_host(per_address: int = 3) -> str:
    # `start_server` appends this after the [auth] table's keys.
    return f"""
[hosts."{GUEST}"]
anonymous = true
anonymous_limits = {{ per_address = {per_address}, total = 100, period = 600.0 }}
"""


def rows(server: RunningServer, sql: str, *args: object) -> list[tuple]:
    db = sqlite3.connect(server.data_dir / "chatgate.db")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def guest_accounts(server: RunningServer) -> list[str]:
    return [r[0] for r in rows(server, "SELECT username FROM accounts WHERE domain = ?", GUEST)]


def count(server: RunningServer, table: str) -> int:
    return rows(server, f"SELECT count(*) FROM {table}")[0][0]


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def anonymous(server: RunningServer) -> slixmpp.ClientXMPP:
    return await connect(server, GUEST, "", mechanism="ANONYMOUS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("vhosts"), extra=anonymous_host(per_address=4))
    srv.add_user("bob", BOB)
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


async def test_an_anonymous_session_works_and_leaves_nothing_behind(server: RunningServer) -> None:
    async with logged_in(server, "bob@localhost/desk", BOB) as bob:
        guest = await anonymous(server)
        jid = guest.boundjid
        assert jid.domain == GUEST
        assert re.fullmatch(r"[a-z2-7]{16}", jid.user), jid.user
        assert guest_accounts(server) == [jid.user]

        # A roster item, a vCard and a conversation work like any account's.
        await guest.update_roster("bob@localhost", name="Bob", subscription="none")
        guest.send_message(mto="bob@localhost", mbody="hello from nowhere", mtype="chat")
        got = await bob.next_message()
        assert got["from"] == jid and got["body"] == "hello from nowhere"
        bob.send_message(mto=jid, mbody="hi, stranger", mtype="chat")
        assert (await guest.next_message())["body"] == "hi, stranger"
        vcard = guest.make_iq_set()  # XEP-0054: publish the own vCard
        vcard.append(slixmpp.ET.fromstring("<vCard xmlns='vcard-temp'><FN>Nobody</FN></vCard>"))
        await vcard.send(timeout=5)
        assert count(server, "roster_items") == 1  # bob has none
        assert count(server, "vcards") == 1

        await asyncio.wait_for(guest.disconnect(), 5)
        await wait_until(lambda: not guest_accounts(server))
        assert count(server, "roster_items") == 0
        assert count(server, "vcards") == 0

        # The identity is gone: a message to it bounces instead of waiting offline.
        bob.send_message(mto=jid.bare, mbody="still there?", mtype="chat")
        bounce = await bob.next_message()
        assert bounce["type"] == "error"
        assert bounce["error"]["condition"] == "service-unavailable"
        assert count(server, "offline_messages") == 0


def bobs_roster(server: RunningServer) -> list[tuple]:
    return rows(
        server,
        "SELECT contact_jid, subscription, ask FROM roster_items"
        " JOIN accounts ON accounts.id = roster_items.account_id WHERE username = 'bob'",
    )


async def test_an_anonymous_identity_leaves_no_subscription_behind(server: RunningServer) -> None:
    """Requests both ways stay pending while the guest is here; when it leaves, bob's
    side forgets its request and stops waiting for an answer (RFC 6121 §3.2, §3.3)."""
    async with logged_in(server, "bob@localhost/phone", BOB) as bob:
        bob.auto_authorize = None  # leave the guest's request unanswered
        guest = await anonymous(server)
        guest.auto_authorize = None
        jid = guest.boundjid.bare
        guest.send_presence(pto="bob@localhost", ptype="subscribe")
        bob.send_presence(pto=jid, ptype="subscribe")
        await wait_until(lambda: count(server, "subscription_requests") == 2)
        assert bobs_roster(server) == [(jid, "none", 1)]

        await asyncio.wait_for(guest.disconnect(), 5)
        await wait_until(lambda: not guest_accounts(server))
        await wait_until(lambda: count(server, "subscription_requests") == 0)
        assert bobs_roster(server) == [(jid, "none", 0)]  # bob's own item, no longer asking
        await bob.del_roster_item(jid)
        await wait_until(lambda: count(server, "roster_items") == 0)


async def test_each_anonymous_login_is_a_new_identity(server: RunningServer) -> None:
    guest = await anonymous(server)
    first = guest.boundjid.user
    await asyncio.wait_for(guest.disconnect(), 5)
    guest = await anonymous(server)
    try:
        assert guest.boundjid.user != first
    finally:
        await asyncio.wait_for(guest.disconnect(), 5)


async def test_anonymous_logins_are_rate_limited_per_address(server: RunningServer) -> None:
    """per_address = 4 in this server's configuration: the three tests above used four."""
    with pytest.raises(AuthenticationFailed) as refused:
        await anonymous(server)
    assert refused.value.condition == "temporary-auth-failure"
    assert "anonymous login refused on guest.localhost: rate limit" in server.log_text()
    assert "from SASL ANONYMOUS" in server.log_text()
    assert "from a client certificate" not in server.log_text()
    # Real accounts are not affected.
    async with logged_in(server, "bob@localhost/other", BOB) as bob:
        assert bob.boundjid.bare == "bob@localhost"


def raw_features(server: RunningServer, to: str) -> str:
    """The features a client gets after TLS on a stream to `to` (or the stream error)."""
    context = ssl.create_default_context(cafile=server.certificate)
    with (
        socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=to) as sock,
    ):
        sock.sendall(
            f"<?xml version='1.0'?><stream:stream to='{to}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".encode()
        )
        received = b""
        while b"</stream:features>" not in received and b"</stream:stream>" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        if b"</stream:features>" in received:
            # Before authentication, registration is refused on the anonymous host.
            sock.sendall(b"<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>")
            with contextlib.suppress(TimeoutError):
                while b"id='r1'" not in received and b'id="r1"' not in received:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
        return received.decode()


def test_the_anonymous_host_offers_only_anonymous_and_no_registration(
    server: RunningServer,
) -> None:
    guest = raw_features(server, GUEST)
    assert f"from='{GUEST}'" in guest or f'from="{GUEST}"' in guest
    assert re.findall(r"<mechanism>([^<]+)</mechanism>", guest) == ["ANONYMOUS"]
    assert "jabber:iq:register" not in guest.split("</stream:features>")[0]
    assert "<not-allowed" in guest.split("</stream:features>")[1]
    main = raw_features(server, "localhost")
    assert "ANONYMOUS" not in main
    assert "<mechanism>SCRAM-SHA-256</mechanism>" in main


def test_an_unserved_domain_gets_host_unknown(server: RunningServer) -> None:
    # The certificate does not name it, so skip verification for this one check.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=5) as raw,
        context.wrap_socket(raw) as sock,
    ):
        sock.sendall(
            b"<?xml version='1.0'?><stream:stream to='elsewhere.example' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        received = b""
        while b"</stream:stream>" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert b"<host-unknown" in received


async def test_anonymous_rows_left_by_a_crash_are_deleted_at_start(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra=anonymous_host())
    try:
        server.add_user("bob", BOB)
        guest = await anonymous(server)
        assert guest_accounts(server) == [guest.boundjid.user]
        guest.send_presence(pto="bob@localhost", ptype="subscribe")  # bob is offline
        await wait_until(lambda: count(server, "subscription_requests") == 1)
        server.process.kill()  # no cleanup runs
        server.process.wait()
        assert guest_accounts(server) == [guest.boundjid.user]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(guest.disconnect(), 2)
        server = start_server(tmp_path, extra=anonymous_host())
        assert guest_accounts(server) == []
        assert count(server, "subscription_requests") == 0
        assert "deleted 1 anonymous identities left on guest.localhost" in server.log_text()
        assert "deleted 1 roster items and requests naming guest.localhost" in server.log_text()
    finally:
        server.stop()


def test_a_domain_with_ordinary_accounts_is_not_made_anonymous(tmp_path: Path) -> None:
    """Turning a domain that has password accounts into an anonymous host would hide
    them, and the crash clean-up must never delete them: the start stops, and says why."""
    server = start_server(tmp_path, extra=f'[hosts."{GUEST}"]\n')
    try:
        server.add_user(f"dora@{GUEST}", "dora-secret-1")
    finally:
        assert server.stop() == 0
    with pytest.raises(RuntimeError, match=r"has 1 ordinary\s+account") as refused:
        start_server(tmp_path, extra=anonymous_host())
    assert "Traceback" not in str(refused.value)
    assert guest_accounts(server) == ["dora"]


async def test_an_identity_that_never_binds_is_deleted_too(tmp_path: Path) -> None:
    """SASL ANONYMOUS succeeds, then the client leaves before binding a resource: no
    session ever ends, yet the identity must not stay behind."""
    server = start_server(tmp_path, extra=anonymous_host())
    try:
        context = ssl.create_default_context(cafile=server.certificate)
        with (
            socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=GUEST) as sock,
        ):
            sock.sendall(
                f"<?xml version='1.0'?><stream:stream to='{GUEST}' version='1.0' "
                "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>"
                "dHJhY2U=</auth>".encode()
            )
            received = b""
            while b"<success" not in received:
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
            assert len(guest_accounts(server)) == 1
        await wait_until(lambda: not guest_accounts(server))
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log_text()


# ---------------------------------------------------------------- per-host providers


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    process, base = start_service()
    yield base
    stop_process(process)


async def test_each_host_asks_its_own_provider(service: str, tmp_path: Path) -> None:
    """localhost keeps its internal accounts (SCRAM); ext.localhost asks the HTTP
    service (PLAIN only, since the service gives no SCRAM keys); users of both
    talk to each other."""
    server = start_server(
        tmp_path,
        extra=f"""
[hosts."{EXT}".provider]
name = "http"
http = {{ url = "{service}/auth", timeout = 2.0 }}
""",
    )
    try:
        check = server.cli("check")
        assert check.returncode == 0, check.stderr
        assert f"{EXT}: provider http  sasl: as each listener" in check.stdout
        server.add_user("bob", BOB)
        async with (
            logged_in(server, f"carol@{EXT}/web", CAROL) as carol,
            logged_in(server, "bob@localhost/desk", BOB, mechanism="SCRAM-SHA-256") as bob,
        ):
            assert carol.boundjid.bare == f"carol@{EXT}"
            carol.send_message(mto="bob@localhost", mbody="across hosts", mtype="chat")
            assert (await bob.next_message())["body"] == "across hosts"
            bob.send_message(mto=f"carol@{EXT}", mbody="and back", mtype="chat")
            assert (await carol.next_message())["body"] == "and back"
        # The service answers for the server name it is asked about: its alice of
        # localhost is no one on ext.localhost, and localhost (internal) knows neither.
        with pytest.raises(AuthenticationFailed):
            await connect(server, f"alice@{EXT}/x", ALICE, send_presence=False)
        with pytest.raises(AuthenticationFailed):
            await connect(server, "carol@localhost/x", CAROL, send_presence=False)
        with pytest.raises(AuthenticationFailed):
            await connect(server, f"bob@{EXT}/x", BOB, send_presence=False)
        # SCRAM is not offered on the HTTP host.
        with pytest.raises(AuthenticationFailed):
            await connect(
                server, f"carol@{EXT}/x", CAROL, mechanism="SCRAM-SHA-256", send_presence=False
            )
    finally:
        code = server.stop()
    assert code == 0, server.log_text()
    log = server.log_text()
    assert f"carol@{EXT} authenticated with PLAIN" in log
    assert "bob@localhost authenticated with SCRAM-SHA-256" in log
