"""A locked account against the real server, with slixmpp: `chatgate user lock` in
another process stops its logins at once (SCRAM and PLAIN: the right password gets
<account-disabled/>, RFC 6120 §6.5.1, a wrong one the usual <not-authorized/>)
while other accounts log in as before, and `chatgate user unlock` lets it in again.
"""

from __future__ import annotations

import pytest

from .conftest import AuthenticationFailed, RunningServer, connect, logged_in

pytestmark = pytest.mark.e2e

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    server.add_user("alice", "correct horse")
    server.add_user("bob", "battery staple")


def user(server: RunningServer, *args: str) -> str:
    result = server.cli("user", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def refused(server: RunningServer, password: str, mechanism: str) -> str:
    with pytest.raises(AuthenticationFailed) as failure:
        await connect(server, "alice@localhost/locked", password, mechanism=mechanism)
    return failure.value.condition


async def test_a_locked_account_cannot_log_in_until_unlocked(server: RunningServer) -> None:
    # Logged in once: the server has alice's keys in memory.
    async with logged_in(server, "alice@localhost/before", "correct horse", mechanism="PLAIN"):
        pass
    # The lock is made by another process; the server learns of it at its next look.
    assert "user alice@localhost locked" in user(server, "lock", "alice")
    assert "alice@localhost (locked)" in user(server, "list").splitlines()

    for mechanism in MECHANISMS:
        assert await refused(server, "correct horse", mechanism) == "account-disabled", mechanism
    assert await refused(server, "wrong horse", "SCRAM-SHA-256") == "not-authorized"
    assert await refused(server, "wrong horse", "PLAIN") == "not-authorized"
    log = server.log_text()
    for mechanism in MECHANISMS:
        assert f"mechanism={mechanism} condition=account-disabled user=alice@localhost" in log
    # Everyone else logs in as before.
    async with logged_in(server, "bob@localhost/e2e", "battery staple") as bob:
        await bob.plugin["xep_0199"].ping(jid="localhost", timeout=5)

    assert "user alice@localhost unlocked" in user(server, "unlock", "alice")
    for mechanism in MECHANISMS:
        async with logged_in(
            server, "alice@localhost/after", "correct horse", mechanism=mechanism
        ) as alice:
            assert str(alice.boundjid) == "alice@localhost/after"
