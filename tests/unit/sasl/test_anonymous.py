"""ANONYMOUS (RFC 4505) driven step by step, with the answers the connection gives."""

from __future__ import annotations

import re

import pytest

from chatgate.auth.provider import Capability
from chatgate.sasl.anonymous import AnonymousMechanism
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Success,
)
from chatgate.vocabulary.errors import SaslFailureCondition

FACTS = ConnectionFacts(domain="guest.localhost", tls_active=True)
ADMITTED = CredentialAnswer(verified=True, user_exists=True)


def mechanism() -> AnonymousMechanism:
    return AnonymousMechanism(FACTS, b"secret", False)


@pytest.mark.parametrize("trace", [b"", b"sirhc", "trace-\u00e9\u00e8".encode(), b"x" * 255])
def test_a_login_gets_a_fresh_random_localpart(trace: bytes) -> None:
    mech = mechanism()
    step = mech.start(trace)
    assert isinstance(step, NeedCredentials)
    assert step.capability is Capability.ANONYMOUS
    assert re.fullmatch(r"[a-z2-7]{16}", step.username)
    done = mech.resume(ADMITTED)
    assert done == Success(step.username)
    assert mech.trace == (trace.decode() or None)


def test_without_initial_response_it_logs_in_at_once_with_no_challenge() -> None:
    """Strophe.js and converse.js send `<auth mechanism='ANONYMOUS'/>` and cannot answer
    a challenge; RFC 4505 §2 makes the trace optional, so none is asked for."""
    mech = mechanism()
    step = mech.start(None)
    assert not isinstance(step, Challenge)
    assert isinstance(step, NeedCredentials)
    assert step.capability is Capability.ANONYMOUS
    assert mech.resume(ADMITTED) == Success(step.username)
    assert mech.trace is None


def test_without_initial_response_the_rate_limit_still_applies() -> None:
    mech = mechanism()
    mech.start(None)
    failure = mech.resume(CredentialAnswer(temporary_failure=True))
    assert isinstance(failure, Failure)
    assert failure.condition is SaslFailureCondition.TEMPORARY_AUTH_FAILURE


def test_two_logins_never_share_a_localpart() -> None:
    names = set()
    for _ in range(200):
        step = mechanism().start(b"")
        assert isinstance(step, NeedCredentials)
        names.add(step.username)
    assert len(names) == 200


def test_the_rate_limit_refusal_is_temporary_auth_failure() -> None:
    mech = mechanism()
    mech.start(b"")
    failure = mech.resume(CredentialAnswer(temporary_failure=True))
    assert isinstance(failure, Failure)
    assert failure.condition is SaslFailureCondition.TEMPORARY_AUTH_FAILURE


def test_trace_that_is_not_utf8_is_incorrect_encoding() -> None:
    failure = mechanism().start(b"\xff\xfe")
    assert isinstance(failure, Failure)
    assert failure.condition is SaslFailureCondition.INCORRECT_ENCODING


def test_trace_longer_than_255_characters_is_malformed() -> None:
    failure = mechanism().start(b"x" * 256)
    assert isinstance(failure, Failure)
    assert failure.condition is SaslFailureCondition.MALFORMED_REQUEST


def test_a_response_after_the_end_is_malformed_and_misuse_raises() -> None:
    mech = mechanism()
    step = mech.start(b"")
    with pytest.raises(ValueError):
        mech.respond(b"again")  # still waiting for the rate limit's answer
    mech.resume(ADMITTED)
    again = mech.respond(b"more")
    assert isinstance(again, Failure)
    assert again.condition is SaslFailureCondition.MALFORMED_REQUEST
    with pytest.raises(ValueError):
        mech.resume(ADMITTED)
    assert isinstance(step, NeedCredentials)


def test_it_is_offered_only_where_the_provider_offers_anonymous() -> None:
    assert AnonymousMechanism.needs == frozenset({Capability.ANONYMOUS})
    assert not AnonymousMechanism.plaintext
