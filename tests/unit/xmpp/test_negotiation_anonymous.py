"""ANONYMOUS through the negotiation core, as Strophe.js and converse.js send it.

Strophe.js's ANONYMOUS is not client-first and has no challenge handler: it
sends `<auth mechanism='ANONYMOUS'/>` with no initial response and fails on any
`<challenge/>`.  RFC 4505 §2 makes the trace optional, so the server answers
`<success/>` at once, as Prosody and ejabberd do (issue 10, item 1).
"""

from __future__ import annotations

import base64
import re

import pytest

from chatgate.auth.provider import Capability
from chatgate.sasl.base import CredentialAnswer, NeedCredentials
from chatgate.xmpp import negotiation as neg

from .transcript import HEADER, Harness, settings

GUEST_CAPS = frozenset({Capability.ANONYMOUS})


class AnonymousHarness(Harness):
    """Answers the ANONYMOUS rate-limit question "admitted", like a fresh host limiter."""

    def _answer(self, request: NeedCredentials) -> CredentialAnswer:
        if request.capability is Capability.ANONYMOUS:
            return CredentialAnswer(verified=True, user_exists=True)
        return super()._answer(request)


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def _guest(mode: str) -> AnonymousHarness:
    h = AnonymousHarness(settings(mechanisms=("ANONYMOUS",)), mode)
    h.client(HEADER)
    assert "<proceed" in h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    h.tls_established()
    assert "<mechanism>ANONYMOUS</mechanism>" in h.client(HEADER)
    return h


def _logged_in_as(h: Harness) -> str:
    done = [a for a in h.actions if isinstance(a, neg.Authenticated)]
    assert len(done) == 1 and done[0].mechanism == "ANONYMOUS"
    assert re.fullmatch(r"[a-z2-7]{16}", done[0].username)
    return done[0].username


def test_auth_without_initial_response_succeeds_at_once(mode: str) -> None:
    h = _guest(mode)
    out = h.client("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    assert out == "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
    assert "<challenge" not in out
    _logged_in_as(h)
    assert h.closed is None


def test_an_empty_auth_element_with_an_end_tag_succeeds_at_once(mode: str) -> None:
    h = _guest(mode)
    out = h.client("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'></auth>")
    assert out == "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
    _logged_in_as(h)


@pytest.mark.parametrize("body", ["=", base64.b64encode(b"sirhc").decode()])
def test_an_initial_response_empty_or_with_trace_still_succeeds(mode: str, body: str) -> None:
    h = _guest(mode)
    out = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>{body}</auth>"
    )
    assert out == "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
    _logged_in_as(h)


def test_after_success_the_stream_restarts_and_binds(mode: str) -> None:
    h = _guest(mode)
    h.client("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    out = h.client(HEADER)
    assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in out
    assert "<mechanisms" not in out
