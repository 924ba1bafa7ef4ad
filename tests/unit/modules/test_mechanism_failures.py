"""What the connection driver does when a SASL exchange goes wrong in ways a
mechanism cannot answer itself: the mechanism raises (a plugin's bug), or the
client ends an exchange after the mechanism told it its verdict."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import pytest

from chatgate.auth.provider import Capability
from chatgate.modules.base import IqHandler, Registration, Spec
from chatgate.sasl.base import Challenge, CredentialAnswer, NeedCredentials, Step
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

from .wire import Server


class _Exploding:
    """A mechanism with a bug: it raises on the client's response."""

    name: ClassVar[str] = "PLAIN"
    needs: ClassVar[frozenset[Capability]] = frozenset()
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = False
    plaintext: ClassVar[bool] = False

    def start(self, initial_response: bytes | None) -> Step:
        raise RuntimeError("plugin bug")

    def respond(self, response: bytes) -> Step:  # pragma: no cover - never reached
        raise AssertionError

    def resume(self, answer: CredentialAnswer) -> Step:  # pragma: no cover
        raise AssertionError


class _Revealing(_Exploding):
    """Asks for a password verdict, then tells the client in a challenge."""

    def __init__(self) -> None:
        self.verdict_disclosed = False

    def start(self, initial_response: bytes | None) -> Step:
        return NeedCredentials(Capability.VERIFY_PASSWORD, "alice", password="guess")

    def resume(self, answer: CredentialAnswer) -> Step:
        self.verdict_disclosed = not answer.verified
        return Challenge(b'{"status":"invalid_token"}')


def _auth() -> str:
    data = base64.b64encode(b"x").decode()
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>"


async def test_a_mechanism_that_raises_ends_only_its_stream(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await Server.start(tmp_path, {})
    try:
        await server.add_user("alice", "wonderland")
        wire = server.connect(mode)
        wire.conn.negotiation.settings = dataclasses.replace(
            wire.conn.negotiation.settings, make_mechanism=lambda name, facts: _Exploding()
        )
        await wire.open()
        with caplog.at_level(logging.ERROR, logger="chatgate.xmpp.c2s"):
            out = await wire.send(_auth())
        assert "<internal-server-error" in out
        assert wire.closed
        assert "negotiation failed" in caplog.text
        # Everyone else is served as before.
        other = server.connect(mode)
        assert "<jid>alice@localhost/r</jid>" in await other.login_plain("alice", "wonderland")
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "ending",
    [
        "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>!!</response>",
    ],
)
async def test_ending_the_exchange_after_the_verdict_is_a_counted_guess(
    tmp_path: Path, ending: str
) -> None:
    server = await Server.start(tmp_path, {})
    try:
        wire = server.connect()
        wire.conn.negotiation.settings = dataclasses.replace(
            wire.conn.negotiation.settings, make_mechanism=lambda name, facts: _Revealing()
        )
        await wire.open()
        assert "<challenge" in await wire.send(_auth())
        out = await wire.send(ending)
        assert "<aborted/>" in out or "<incorrect-encoding/>" in out  # what RFC 6120 says
        stats = server.ctx.auth_throttle.stats
        assert stats.failures == 1  # ... but the throttle saw a wrong password for alice
        assert wire.conn.negotiation.failures == 1
    finally:
        await server.stop()


class _Broken:
    """A module whose IQ handler has a bug that shows only after an await."""

    name: ClassVar[str] = "broken"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: object) -> Iterable[Registration]:
        yield IqHandler("urn:example:broken", "get", self._handle)

    async def _handle(self, session: C2SSession, iq: Element) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("handler bug")


async def test_a_handler_that_fails_after_waiting_answers_internal_server_error(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 6120 §8.3.3.6: a stanza whose handler raised gets an error, whether the
    handler failed at once or after awaiting something (a database, a provider)."""

    server = await Server.start(tmp_path, {})
    try:
        server.ctx.load(_Broken())
        await server.add_user("alice", "wonderland")
        wire = server.connect(mode)
        await wire.login_plain("alice", "wonderland")
        with caplog.at_level(logging.ERROR, logger="chatgate.xmpp.c2s"):
            out = await wire.send("<iq type='get' id='b1'><q xmlns='urn:example:broken'/></iq>")
        assert '<iq type="error"' in out and 'id="b1"' in out, out
        assert "<internal-server-error" in out
        assert "stanza handling failed" in caplog.text
        out = await wire.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert '<iq type="result" id="p1"' in out, out  # the stream goes on
    finally:
        await server.stop()


async def test_failed_background_work_is_logged_and_forgotten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def clean_up() -> None:
        raise RuntimeError("database is locked")

    server = await Server.start(tmp_path, {})
    try:
        with caplog.at_level(logging.ERROR, logger="chatgate.context"):
            server.ctx.spawn(clean_up())
            await server.ctx.drain()
        assert "background work failed" in caplog.text
        assert "database is locked" in caplog.text
    finally:
        await server.stop()
