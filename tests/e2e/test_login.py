"""Logging in with slixmpp over STARTTLS and direct TLS, and what a wrong password gets."""

from __future__ import annotations

import sqlite3

import pytest

from .conftest import AuthenticationFailed, RunningServer, connect, logged_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    server.add_user("alice", "correct horse")
    server.add_user("bob", "battery staple")


@pytest.mark.parametrize("transport", ["starttls", "direct"])
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_login_with_each_mechanism(
    server: RunningServer, transport: str, mechanism: str
) -> None:
    async with logged_in(
        server, "alice@localhost/e2e", "correct horse", transport=transport, mechanism=mechanism
    ) as client:
        assert str(client.boundjid) == "alice@localhost/e2e"
        # A round trip proves the session is usable: ping the server (XEP-0199).
        await client.plugin["xep_0199"].ping(jid="localhost", timeout=5)


async def test_wrong_password_fails_with_not_authorized(server: RunningServer) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        await connect(server, "alice@localhost/x", "wrong", mechanism="SCRAM-SHA-256")
    assert failure.value.condition == "not-authorized"


async def test_unknown_user_fails_with_not_authorized(server: RunningServer) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        await connect(server, "nobody@localhost/x", "whatever", mechanism="PLAIN")
    assert failure.value.condition == "not-authorized"


async def test_server_generated_resource(server: RunningServer) -> None:
    async with logged_in(server, "bob@localhost", "battery staple") as client:
        assert client.boundjid.bare == "bob@localhost"
        assert client.boundjid.resource  # the server chose one


def test_database_holds_no_plaintext_password(server: RunningServer) -> None:
    db = sqlite3.connect(server.data_dir / "chatgate.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "scram_credentials" in tables
        for password in (b"correct horse", b"battery staple"):
            for table in tables:
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        raw = value.encode() if isinstance(value, str) else value
                        if isinstance(raw, bytes):
                            assert password not in raw, f"plaintext password in table {table}"
    finally:
        db.close()


async def test_the_requested_mechanism_is_the_one_used(server: RunningServer) -> None:
    async with logged_in(server, "bob@localhost/m", "battery staple", mechanism="SCRAM-SHA-512"):
        pass
    assert "bob@localhost authenticated with SCRAM-SHA-512 over TLSv1.3" in server.log_text()
