"""PLAIN (RFC 4616): message parsing, the provider's verdict, authzid, and misuse."""

from __future__ import annotations

import pytest

from chatgate.auth.provider import Capability
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Step,
    Success,
)
from chatgate.sasl.plain import PlainMechanism
from chatgate.vocabulary.errors import SaslFailureCondition as C

FACTS = ConnectionFacts(domain="example.com", tls_active=True)
VERIFIED = CredentialAnswer(verified=True, user_exists=True)
REFUSED = CredentialAnswer(verified=False)


def _plain() -> PlainMechanism:
    return PlainMechanism(FACTS, b"secret", False)


def _assert_failure(step: Step, condition: C) -> Failure:
    assert isinstance(step, Failure), step
    assert step.condition is condition, step
    return step


def test_plain_asks_provider_to_verify_password() -> None:
    step = _plain().start(b"\0user\0pencil")
    assert step == NeedCredentials(Capability.VERIFY_PASSWORD, "user", password="pencil")


def test_plain_succeeds_when_provider_verifies() -> None:
    mech = _plain()
    mech.start(b"\0user\0pencil")
    assert mech.resume(VERIFIED) == Success("user")


def test_plain_rejects_wrong_password() -> None:
    mech = _plain()
    mech.start(b"\0user\0wrong")
    failure = _assert_failure(mech.resume(REFUSED), C.NOT_AUTHORIZED)
    assert failure.username == "user"


def test_plain_prepares_username_and_passes_password_unchanged() -> None:
    step = _plain().start("\0J\uff35liet\0P\u00e4ss Word".encode())
    assert step == NeedCredentials(Capability.VERIFY_PASSWORD, "juliet", password="P\u00e4ss Word")


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    # RFC 6120 §6.4.2: the message then arrives as the response.
    mech = _plain()
    assert mech.start(None) == Challenge(b"")
    assert isinstance(mech.respond(b"\0user\0pencil"), NeedCredentials)
    assert mech.resume(VERIFIED) == Success("user")


@pytest.mark.parametrize(
    "message",
    [
        b"",  # empty initial response ("=" on the wire)
        b"user\0pencil",  # one NUL
        b"\0user\0pencil\0",  # three NULs
        b"\0\0pencil",  # empty authcid
        b"\0user\0",  # empty password
        b"\0a b\0pencil",  # authcid fails UsernameCaseMapped
        b"\0a@b\0pencil",  # forbidden localpart character
    ],
)
def test_plain_rejects_malformed_message(message: bytes) -> None:
    _assert_failure(_plain().start(message), C.MALFORMED_REQUEST)


@pytest.mark.parametrize("message", [b"\0us\xffer\0pencil", b"\0user\0\xc3", b"\xff\0user\0pw"])
def test_plain_rejects_invalid_utf8(message: bytes) -> None:
    _assert_failure(_plain().start(message), C.INCORRECT_ENCODING)


def test_plain_accepts_255_octet_fields() -> None:
    # RFC 4616 §2: authcid, authzid and passwd "MUST accept up to 255 octets".
    authzid = "u" * 243 + "@example.com"
    message = f"{authzid}\0{'u' * 255}\0{'p' * 255}".encode()
    assert len(authzid) == 255
    step = _plain().start(message)
    assert step == NeedCredentials(Capability.VERIFY_PASSWORD, "u" * 255, password="p" * 255)


@pytest.mark.parametrize("authzid", [b"user@example.com", b"User@EXAMPLE.com"])
def test_plain_accepts_authzid_of_own_bare_jid(authzid: bytes) -> None:
    mech = _plain()
    mech.start(authzid + b"\0user\0pencil")
    assert mech.resume(VERIFIED) == Success("user", authzid="user@example.com")


@pytest.mark.parametrize(
    "authzid", [b"admin@example.com", b"user@example.org", b"user@example.com/r", b"bad jid"]
)
def test_plain_rejects_authzid_mismatch(authzid: bytes) -> None:
    mech = _plain()
    mech.start(authzid + b"\0user\0pencil")
    _assert_failure(mech.resume(VERIFIED), C.INVALID_AUTHZID)


def test_plain_checks_password_before_authzid() -> None:
    mech = _plain()
    mech.start(b"admin@example.com\0user\0wrong")
    _assert_failure(mech.resume(REFUSED), C.NOT_AUTHORIZED)


def test_plain_provider_unavailable_fails_temporarily() -> None:
    mech = _plain()
    mech.start(b"\0user\0pencil")
    _assert_failure(mech.resume(CredentialAnswer(temporary_failure=True)), C.TEMPORARY_AUTH_FAILURE)


def test_plain_rejects_message_after_completion() -> None:
    mech = _plain()
    mech.start(b"\0user\0pencil")
    mech.resume(VERIFIED)
    _assert_failure(mech.respond(b"\0user\0pencil"), C.MALFORMED_REQUEST)


def test_plain_resume_without_request_is_a_programming_error() -> None:
    mech = _plain()
    mech.start(None)
    with pytest.raises(ValueError):
        mech.resume(VERIFIED)


def test_plain_declares_itself_plaintext() -> None:
    assert PlainMechanism.name == "PLAIN"
    assert PlainMechanism.plaintext is True
    assert PlainMechanism.requires_channel_binding is False
    assert PlainMechanism.needs == frozenset({Capability.VERIFY_PASSWORD})
