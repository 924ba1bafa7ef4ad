"""The administrator's commands against a running server: `chatgate registration`
approves what in-band registration held, `chatgate invite` makes the tokens it
asks for, and neither needs a restart.

The server is the real `chatgate serve`; the commands run as separate processes
on the same configuration file, as an operator runs them from another terminal.
Clients are slixmpp (registration and login over STARTTLS) and Debian's
Net::Jabber (registration with a XEP-0445 <preauth/> token).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import AuthenticationFailed, RunningServer, connect, start_server
from .test_register import slixmpp_register

pytestmark = pytest.mark.e2e

PERL = Path(__file__).parent / "perl"


def running(tmp: Path, extra: str) -> Iterator[RunningServer]:
    srv = start_server(tmp, extra)
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def approval_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Held registrations fail their logins, and so do the checks after them: with
    # loopback throttled those failures would soon delay every login of the module.
    extra = (
        "[auth.throttle]\nexempt_loopback = true\n"
        "[modules.register]\nenabled = true\napproval = true\n"
    )
    yield from running(tmp_path_factory.mktemp("approval"), extra)


@pytest.fixture(scope="module")
def invite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    extra = '[modules.register]\nenabled = true\nrequire_tls = false\ninvites = "required"\n'
    yield from running(tmp_path_factory.mktemp("invites"), extra)


def admin(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli(*args)


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


def new_invite(server: RunningServer, *args: str) -> dict[str, str]:
    done = admin(server, "invite", "create", *args)
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"^(\w+):\s+(.*)$", done.stdout, re.M))


async def test_approved_registration_logs_in_without_a_restart(
    approval_server: RunningServer,
) -> None:
    with pytest.raises(AuthenticationFailed):  # registered, but held: the login fails
        await slixmpp_register(approval_server, "newbie@localhost", "newbie-pw-1")
    with pytest.raises(AuthenticationFailed):
        await connect(approval_server, "newbie@localhost", "newbie-pw-1")

    listed = admin(approval_server, "registration", "pending")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "newbie@localhost" in line]
    assert "127.0.0.1" in row  # from where

    approved = admin(approval_server, "registration", "approve", "newbie")
    assert approved.returncode == 0, approved.stderr
    client = await connect(approval_server, "newbie@localhost", "newbie-pw-1")
    await client.disconnect()
    with pytest.raises(AuthenticationFailed):
        await connect(approval_server, "newbie@localhost", "wrong-password")
    assert admin(approval_server, "registration", "approve", "newbie").returncode == 1


async def test_rejected_registration_frees_the_name_at_once(
    approval_server: RunningServer,
) -> None:
    with pytest.raises(AuthenticationFailed):
        await slixmpp_register(approval_server, "spammer@localhost", "spammer-pw-1")
    rejected = admin(approval_server, "registration", "reject", "spammer")
    assert rejected.returncode == 0, rejected.stderr
    with pytest.raises(AuthenticationFailed):
        await connect(approval_server, "spammer@localhost", "spammer-pw-1")
    # Not a conflict: the name was free, so the new attempt is held again.
    with pytest.raises(AuthenticationFailed):
        await slixmpp_register(approval_server, "spammer@localhost", "someone-else-1")
    listed = admin(approval_server, "registration", "pending").stdout
    assert "spammer@localhost" in listed


def test_invitation_from_the_cli_lets_registration_succeed(invite_server: RunningServer) -> None:
    assert reguser(invite_server, "username=juliet", "password=secret-j") == [
        "[Attempt] (juliet) Error: 403 ()"
    ]
    invite = new_invite(invite_server)
    assert invite["uri"] == f"xmpp:localhost?register;preauth={invite['token']}"
    args = ["--preauth", invite["token"], "username=juliet", "password=secret-j"]
    assert reguser(invite_server, *args) == [
        "[Preauth] accepted",
        "[Attempt] (juliet) Successful registration",
    ]
    assert reguser(invite_server, *args)[0] == "[Preauth] Error: 404"  # one use: used up
    listed = admin(invite_server, "invite", "list").stdout
    assert invite["id"] in listed and "used up" in listed


def test_invitation_for_one_name_and_revocation(invite_server: RunningServer) -> None:
    invite = new_invite(invite_server, "--username", "romeo", "--uses", "2", "--expires", "1d")
    token = invite["token"]
    tybalt = reguser(invite_server, "--preauth", token, "username=tybalt", "password=secret-t")
    assert tybalt == ["[Preauth] accepted", "[Attempt] (tybalt) Error: 403 ()"]  # romeo only
    revoked = admin(invite_server, "invite", "revoke", invite["id"])
    assert revoked.returncode == 0, revoked.stderr
    romeo = reguser(invite_server, "--preauth", token, "username=romeo", "password=secret-r")
    assert romeo == ["[Preauth] Error: 404", "[Attempt] (romeo) Error: 403 ()"]
