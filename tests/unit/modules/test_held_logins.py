"""Logins of registrations awaiting approval, through the real connection: the right
password is refused with a text saying so (SASL: <not-authorized/> with <text/>;
jabber:iq:auth: 401 with <text/>), and not counted by brute-force protection; a
wrong one gets exactly what an unknown name gets.  After approval the same
password logs in.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

from scramp import ScramClient

from chatgate.auth.internal import AWAITING_APPROVAL, InternalProvider

from .wire import HEADER, Server, Wire, plain

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
HELD_401 = (
    f'<iq type="error" id="auth2"><error type="auth" code="401">'
    f'<not-authorized xmlns="{STANZAS}"/><text xmlns="{STANZAS}">{AWAITING_APPROVAL}</text>'
    "</error></iq>"
)
BARE_401 = (
    f'<iq type="error" id="auth2"><error type="auth" code="401">'
    f'<not-authorized xmlns="{STANZAS}"/></error></iq>'
)


SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
HELD_FAILURE = (
    f"<failure xmlns='{SASL}'><not-authorized/>"
    f"<text xml:lang='en'>{AWAITING_APPROVAL}</text></failure>"
)
BARE_FAILURE = f"<failure xmlns='{SASL}'><not-authorized/></failure>"


def register(username: str, password: str) -> str:
    return (
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
        f"<username>{username}</username><password>{password}</password></query></iq>"
    )


def legacy_login(username: str, password: str) -> str:
    return (
        "<iq type='set' id='auth2'><query xmlns='jabber:iq:auth'>"
        f"<username>{username}</username><password>{password}</password>"
        "<resource>globe</resource></query></iq>"
    )


@contextlib.asynccontextmanager
async def approval_server(tmp: Path) -> AsyncIterator[Server]:
    modules = {
        "register": {"enabled": True, "approval": True},
        "legacy_auth": {"enabled": True},
    }
    srv = await Server.start(tmp, modules)
    try:
        yield srv
    finally:
        await srv.stop()


async def held(srv: Server, mode: str, username: str, password: str) -> Wire:
    """Register `username` in-band (held for approval); returns the open stream."""
    wire = srv.connect(mode)
    await wire.send(HEADER)
    assert await wire.send(register(username, password)) == '<iq type="result" id="reg"/>'
    return wire


def failures(srv: Server) -> int:
    return srv.ctx.auth_throttle.stats.failures


async def test_legacy_plaintext_login_of_a_held_registration(tmp_path: Path, mode: str) -> None:
    async with approval_server(tmp_path) as srv:
        wire = await held(srv, mode, "newbie", "newbie-pw-1")
        assert await wire.send(legacy_login("newbie", "newbie-pw-1")) == HELD_401
        assert failures(srv) == 0  # the password was right: no guess
        assert not srv.ctx.router.directory.bound_here("newbie@localhost")
        # A wrong password, and a name nobody registered, get the same bare 401.
        assert await wire.send(legacy_login("newbie", "wrong-pw-1")) == BARE_401
        other = srv.connect(mode)
        await other.send(HEADER)
        assert await other.send(legacy_login("nobody", "wrong-pw-1")) == BARE_401
        assert failures(srv) == 2
        # Like any failed attempt, a held one counts toward the stream's own limit.
        out = await wire.send(legacy_login("newbie", "newbie-pw-1"))
        assert out.startswith(HELD_401) and "<policy-violation " in out
        assert wire.closed

        assert await srv.db.pending_registrations.approve("newbie", "localhost")
        provider = srv.ctx.provider
        assert isinstance(provider, InternalProvider)
        provider.pending_resolved("newbie", "localhost")
        again = srv.connect(mode)
        await again.send(HEADER)
        ok = await again.send(legacy_login("newbie", "newbie-pw-1"))
        assert ok == '<iq type="result" id="auth2"/>'


async def scram(wire: Wire, username: str, password: str) -> str:
    """SCRAM-SHA-256 with scramp; returns what the server wrote after the proof."""
    client = ScramClient(["SCRAM-SHA-256"], username, password)
    first = base64.b64encode(client.get_client_first().encode()).decode()
    out = await wire.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
    challenge = re.search(r"<challenge[^>]*>([^<]+)</challenge>", out)
    assert challenge is not None, out
    client.set_server_first(base64.b64decode(challenge.group(1)).decode())
    final = base64.b64encode(client.get_client_final().encode()).decode()
    return await wire.send(f"<response xmlns='{SASL}'>{final}</response>")


async def test_sasl_logins_of_a_held_registration(tmp_path: Path, mode: str) -> None:
    async with approval_server(tmp_path) as srv:
        wire = await held(srv, mode, "newbie", "newbie-pw-1")
        assert await wire.send(plain("newbie", "newbie-pw-1")) == HELD_FAILURE
        assert await scram(wire, "newbie", "newbie-pw-1") == HELD_FAILURE
        assert failures(srv) == 0  # the password was right: no guess
        # A wrong password, and a name nobody registered, get the same bare failure
        # (on another stream: each stream allows three failed attempts of any kind).
        other = srv.connect(mode)
        await other.send(HEADER)
        assert await other.send(plain("newbie", "wrong-pw-1")) == BARE_FAILURE
        assert await scram(other, "newbie", "wrong-pw-1") == BARE_FAILURE
        third = srv.connect(mode)
        await third.send(HEADER)
        assert await scram(third, "nobody", "wrong-pw-1") == BARE_FAILURE
        assert failures(srv) == 3

        assert await srv.db.pending_registrations.approve("newbie", "localhost")
        provider = srv.ctx.provider
        assert isinstance(provider, InternalProvider)
        provider.pending_resolved("newbie", "localhost")
        for login in (plain, scram):
            again = srv.connect(mode)
            await again.send(HEADER)
            if login is plain:
                assert "<success" in await again.send(plain("newbie", "newbie-pw-1"))
            else:
                assert "<success" in await scram(again, "newbie", "newbie-pw-1")
