"""XEP-0077 in-band registration against the real server, with slixmpp and Net::Jabber.

slixmpp registers over STARTTLS with its xep_0077 plugin (the `register` stream
feature, before SASL, on the same stream), changes its password, removes its
account; Net::Jabber runs the inquiries and attempts of Programming Jabber's
`reguser` script on the plain listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from chatgate.storage.database import Database

from .conftest import AuthenticationFailed, Client, RunningServer, connect, logged_in, start_server

pytestmark = pytest.mark.e2e

PERL = Path(__file__).parent / "perl"


def reguser(server: RunningServer, *args: str) -> list[str]:
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed")
    if subprocess.run(["perl", "-MNet::Jabber", "-e", "1"], capture_output=True).returncode:
        pytest.skip("Net::Jabber is missing (tests/install-system-deps.sh installs it)")
    done = subprocess.run(
        ["perl", str(PERL / "reguser.pl"), f"127.0.0.1:{server.plain_port}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def running(tmp: Path, extra: str) -> Iterator[RunningServer]:
    srv = start_server(tmp, extra)
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from running(tmp_path_factory.mktemp("register"), "[modules.register]\nenabled = true\n")


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    extra = """
[modules.register]
enabled = true
require_tls = false
fields = ["name", "email"]
"""
    yield from running(tmp_path_factory.mktemp("plain"), extra)


async def slixmpp_register(server: RunningServer, jid: str, password: str) -> Client:
    """Register with slixmpp's xep_0077 plugin over STARTTLS, then log in on the same
    stream; returns the logged-in client or raises IqError/AuthenticationFailed."""
    client = Client(jid, password)
    client.register_plugin("xep_0077")
    client.ca_certs = server.certificate
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[object] = loop.create_future()

    def done(value: object) -> None:
        if not outcome.done():
            outcome.set_result(value)

    async def fill_in(form: object) -> None:
        iq = client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = client.boundjid.user
        iq["register"]["password"] = client.password
        try:
            await iq.send()
        except IqError as exc:
            done(exc)
            client.disconnect()

    client.add_event_handler("register", fill_in)
    client.add_event_handler("session_start", lambda _e: done("ok"))
    client.add_event_handler("failed_all_auth", lambda _e: done(AuthenticationFailed("failed")))
    client.add_event_handler("disconnected", lambda _e: done(AuthenticationFailed("gone")))
    client.connect("127.0.0.1", server.starttls_port)
    result = await asyncio.wait_for(outcome, 20)
    if isinstance(result, Exception):
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise result
    return client


async def test_slixmpp_registers_changes_password_and_removes_the_account(
    server: RunningServer,
) -> None:
    client = await slixmpp_register(server, "romeo@localhost", "montague-1")
    await client.plugin["xep_0077"].change_password("montague-2")
    await client.disconnect()

    with pytest.raises(AuthenticationFailed):
        await connect(server, "romeo@localhost", "montague-1")
    client = await connect(server, "romeo@localhost", "montague-2")
    client.register_plugin("xep_0077")
    gone = asyncio.get_running_loop().create_future()
    client.add_event_handler("disconnected", lambda _e: gone.done() or gone.set_result(True))
    reply = await client.plugin["xep_0077"].cancel_registration()
    assert reply["type"] == "result"
    error = await asyncio.wait_for(client.stream_errors.get(), 10)
    assert error["condition"] == "not-authorized"  # XEP-0077 §3.2
    await asyncio.wait_for(gone, 10)

    with pytest.raises(AuthenticationFailed):
        await connect(server, "romeo@localhost", "montague-2")
    # The name is free again at once.
    client = await slixmpp_register(server, "romeo@localhost", "montague-3")
    await client.disconnect()


async def test_slixmpp_registration_of_a_taken_name_is_conflict(server: RunningServer) -> None:
    server.add_user("juliet", "capulet-12")
    with pytest.raises(IqError) as caught:
        await slixmpp_register(server, "juliet@localhost", "someone-else")
    assert caught.value.iq["error"]["condition"] == "conflict"
    assert caught.value.iq["error"]["code"] == "409"


def test_net_jabber_inquiry_and_attempts(plain_server: RunningServer) -> None:
    assert reguser(plain_server) == ["[Inquiry] Fields: email, name, password, username"]
    fields = ["username=joseph", "password=spinach-12", "name=Joseph Adams", "email=joseph@yak"]
    assert reguser(plain_server, *fields) == ["[Attempt] (joseph) Successful registration"]
    assert reguser(plain_server, *fields) == ["[Attempt] (joseph) Error: 409 ()"]
    # The book's missing field: 406, even when the name is free.
    assert reguser(plain_server, "username=leslie", "password=secret-leslie") == [
        "[Attempt] (leslie) Error: 406 ()"
    ]


def test_registration_off_is_405_for_inquiry_and_attempt(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        assert reguser(srv) == ["[Inquiry] Error: 405 ()"]
        assert reguser(srv, "username=dj", "password=secret-dj") == ["[Attempt] (dj) Error: 405 ()"]
    finally:
        assert srv.stop() == 0


def test_per_address_throttle(tmp_path: Path) -> None:
    extra = (
        "[auth.throttle.registration]\nper_address = 1\n"
        "[modules.register]\nenabled = true\nrequire_tls = false\n"
    )
    srv = start_server(tmp_path, extra)
    try:
        assert reguser(srv, "username=one", "password=secret-one")[0].endswith("registration")
        assert reguser(srv, "username=two", "password=secret-two") == [
            "[Attempt] (two) Error: 500 ()"
        ]
    finally:
        assert srv.stop() == 0


def test_invitation_required(tmp_path: Path) -> None:
    extra = """
[modules.register]
enabled = true
require_tls = false
invites = "required"
invite_tokens = [{ token = "welcome-juliet-0401", uses = 1 }]
"""
    srv = start_server(tmp_path, extra)
    try:
        assert reguser(srv, "username=juliet", "password=secret-j") == [
            "[Attempt] (juliet) Error: 403 ()"
        ]
        args = ["--preauth", "welcome-juliet-0401", "username=juliet", "password=secret-j"]
        assert reguser(srv, *args) == [
            "[Preauth] accepted",
            "[Attempt] (juliet) Successful registration",
        ]
        assert reguser(srv, *args)[0] == "[Preauth] Error: 404"  # used up
    finally:
        assert srv.stop() == 0


async def test_approval_holds_logins_until_an_administrator_approves(tmp_path: Path) -> None:
    extra = "[modules.register]\nenabled = true\napproval = true\n"
    srv = start_server(tmp_path, extra)
    try:
        with pytest.raises(AuthenticationFailed):
            await slixmpp_register(srv, "newbie@localhost", "newbie-pw-1")
        with pytest.raises(AuthenticationFailed):
            await connect(srv, "newbie@localhost", "newbie-pw-1")
        db = await Database.open(f"sqlite+aiosqlite:///{srv.data_dir / 'chatgate.db'}")
        try:
            assert [p.username for p in await db.pending_registrations.pending()] == ["newbie"]
        finally:
            await db.close()
        approved = srv.cli("registration", "approve", "newbie")  # from another process
        assert approved.returncode == 0, approved.stderr
        client = await connect(srv, "newbie@localhost", "newbie-pw-1")
        await client.disconnect()
    finally:
        assert srv.stop() == 0


def test_digest_md5_login_after_registration_when_its_secret_is_stored(tmp_path: Path) -> None:
    """DIGEST-MD5 (deprecated, opt-in): offered only with `digest_md5` storage on; slixmpp
    logs in with it once in-band registration stored H(user:realm:password)."""
    extra = (
        'mechanisms = ["SCRAM-SHA-256", "DIGEST-MD5"]\n'
        "[modules.register]\nenabled = true\n"
        "[modules.legacy_auth]\nenabled = true\ndigest_md5 = true\n"
    )

    async def scenario(srv: RunningServer) -> None:
        client = await slixmpp_register(srv, "mercutio@localhost", "queen-mab-1")
        await client.disconnect()
        async with logged_in(srv, "mercutio@localhost/d", "queen-mab-1", mechanism="DIGEST-MD5"):
            pass
        with pytest.raises(AuthenticationFailed):
            await connect(srv, "mercutio@localhost/d", "wrong", mechanism="DIGEST-MD5")

    for srv in running(tmp_path, extra):
        asyncio.run(scenario(srv))
    assert "mercutio@localhost authenticated with DIGEST-MD5" in srv.log_text()
