"""The negotiation core with `hold_failures`: a SASL failure comes as one `AuthFailed`
carrying the `<failure/>`, the core waits in FAILURE_PENDING (accepting nothing) until
the driver has sent it (`failure_answered()`), and only then may the client try again.
Driven by transcripts in the three feeding modes, as the other negotiation tests."""

from __future__ import annotations

import base64

import pytest

from chatgate.vocabulary.errors import SaslFailureCondition, StreamErrorCondition
from chatgate.xmpp import negotiation as neg

from .transcript import HEADER, Harness, settings

WRONG = base64.b64encode(b"\0alice\0nope").decode()
RIGHT = base64.b64encode(b"\0alice\0wonderland").decode()
NOT_AUTHORIZED = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def auth(data: str, mechanism: str = "PLAIN") -> str:
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{data}</auth>"


def holding(mode: str) -> Harness:
    h = Harness(settings(require_tls=False, allow_plain_without_tls=True), mode)
    h.core.hold_failures = True
    h.add_user("alice", "wonderland")
    h.client(HEADER)
    return h


def held(h: Harness) -> neg.AuthFailed:
    failed = [a for a in h.actions if isinstance(a, neg.AuthFailed)]
    assert failed, h.actions
    return failed[-1]


def test_a_failure_is_held_for_the_driver_to_send(mode: str) -> None:
    h = holding(mode)
    assert h.client(auth(WRONG)) == ""  # nothing written by the core itself
    failure = held(h)
    assert failure == neg.AuthFailed(
        "PLAIN", SaslFailureCondition.NOT_AUTHORIZED, "alice", NOT_AUTHORIZED
    )
    assert h.core.state is neg.State.FAILURE_PENDING
    assert h.core.failure_answered() == []
    assert h.core.state is neg.State.OPEN
    assert "<success" in h.client(auth(RIGHT))


def test_an_element_while_the_failure_is_held_is_a_policy_violation(mode: str) -> None:
    h = holding(mode)
    h.client(auth(WRONG))
    h.client(auth(RIGHT))
    assert h.closed is not None
    assert h.closed.condition is StreamErrorCondition.POLICY_VIOLATION
    assert not any(isinstance(a, neg.Authenticated) for a in h.actions)


def test_the_last_allowed_failure_closes_once_answered(mode: str) -> None:
    h = holding(mode)
    for _ in range(2):
        h.client(auth(WRONG))
        assert h.core.failure_answered() == []
    h.client(auth(WRONG))
    assert h.closed is None  # not before its <failure/> has been sent
    assert h.core.failure_answered() == [
        neg.CloseStream(
            StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts"
        )
    ]


def test_protocol_failures_are_held_too_and_keep_their_condition(mode: str) -> None:
    h = holding(mode)
    h.client(auth("!!not base64!!"))
    failure = held(h)
    assert failure.condition is SaslFailureCondition.INCORRECT_ENCODING
    assert failure.reply == (
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><incorrect-encoding/></failure>"
    )
    assert h.core.failure_answered() == []


def test_failure_answered_without_a_held_failure_is_a_driver_bug() -> None:
    h = holding("whole")
    with pytest.raises(ValueError):
        h.core.failure_answered()


def test_without_hold_the_failure_is_sent_by_the_core_as_before(mode: str) -> None:
    h = Harness(settings(require_tls=False, allow_plain_without_tls=True), mode)
    h.add_user("alice", "wonderland")
    h.client(HEADER)
    assert h.client(auth(WRONG)) == NOT_AUTHORIZED
    assert held(h).reply == ""
    assert h.core.state is neg.State.OPEN
