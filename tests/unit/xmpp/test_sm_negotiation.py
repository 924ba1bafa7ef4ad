"""XEP-0198 in the negotiation core: `<resume/>` instead of binding, and the
`<failed/>` answers before authentication and before binding (three feeding modes)."""

from __future__ import annotations

import base64

import pytest

from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xmpp import negotiation as neg

from .transcript import HEADER, Harness, settings

SM = "urn:xmpp:sm:3"
PLAIN_OK = base64.b64encode(b"\0alice\0wonderland").decode()
UNEXPECTED = (
    "<failed xmlns='urn:xmpp:sm:3'><unexpected-request "
    "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
)


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def opened(mode: str) -> Harness:
    h = Harness(settings(starttls=False, require_tls=False, allow_plain_without_tls=True), mode)
    h.add_user("alice", "wonderland")
    h.client(HEADER)
    return h


def authenticated(mode: str) -> Harness:
    h = opened(mode)
    h.client(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_OK}</auth>")
    h.client(HEADER)
    assert h.core.state is neg.State.BIND
    return h


def test_enable_and_resume_before_authentication_fail_and_the_stream_goes_on(mode: str) -> None:
    h = opened(mode)
    assert h.client(f"<enable xmlns='{SM}' resume='true'/>").startswith(UNEXPECTED)
    assert h.client(f"<resume xmlns='{SM}' previd='abc' h='0'/>").startswith(UNEXPECTED)
    assert h.closed is None and h.core.state is neg.State.OPEN
    assert not any(isinstance(a, neg.ResumeRequested) for a in h.actions)


def test_enable_before_binding_fails_and_binding_still_works(mode: str) -> None:
    h = authenticated(mode)
    assert h.client(f"<enable xmlns='{SM}'/>").startswith(UNEXPECTED)
    assert h.core.state is neg.State.BIND and h.closed is None
    h.client("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert isinstance(h.actions[-1], neg.BindRequested)


def test_resume_is_handed_to_the_driver_with_previd_and_h(mode: str) -> None:
    h = authenticated(mode)
    assert h.client(f"<resume xmlns='{SM}' previd='tok-1' h='42'/>") == ""
    request = h.actions[-1]
    assert isinstance(request, neg.ResumeRequested)
    assert (request.previd, request.h) == ("tok-1", "42")
    assert h.core.state is neg.State.RESUMING
    assert h.core.resumed() == []
    assert h.core.state is neg.State.ESTABLISHED


def test_resume_without_h_passes_none(mode: str) -> None:
    h = authenticated(mode)
    h.client(f"<resume xmlns='{SM}' previd='tok-1'/>")
    request = h.actions[-1]
    assert isinstance(request, neg.ResumeRequested) and request.h is None


def test_resume_without_previd_is_bad_request(mode: str) -> None:
    h = authenticated(mode)
    out = h.client(f"<resume xmlns='{SM}' h='0'/>")
    assert "<bad-request " in out and out.startswith("<failed xmlns='urn:xmpp:sm:3'>")
    assert h.core.state is neg.State.BIND


def test_failed_resumption_lets_the_client_bind(mode: str) -> None:
    h = authenticated(mode)
    h.client(f"<resume xmlns='{SM}' previd='gone' h='0'/>")
    actions = h.core.resume_failed("<failed xmlns='urn:xmpp:sm:3'/>")
    assert isinstance(actions[0], neg.Send) and actions[0].text.startswith("<failed")
    assert h.core.state is neg.State.BIND
    h.client("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert isinstance(h.actions[-1], neg.BindRequested)


def test_an_element_while_resuming_is_a_policy_violation(mode: str) -> None:
    h = authenticated(mode)
    h.client(f"<resume xmlns='{SM}' previd='tok' h='0'/>")
    h.client("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert h.closed is not None
    assert h.closed.condition is StreamErrorCondition.POLICY_VIOLATION


def test_resumed_and_resume_failed_need_a_pending_resumption(mode: str) -> None:
    h = authenticated(mode)
    with pytest.raises(ValueError):
        h.core.resumed()
    with pytest.raises(ValueError):
        h.core.resume_failed("<failed/>")


def test_other_sm_elements_before_binding_are_not_authorized(mode: str) -> None:
    h = authenticated(mode)
    h.client(f"<r xmlns='{SM}'/>")
    assert h.closed is not None and h.closed.condition is StreamErrorCondition.NOT_AUTHORIZED
