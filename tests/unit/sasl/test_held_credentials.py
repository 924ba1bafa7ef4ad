"""Credentials that are right but may not log in yet (`CredentialAnswer.held`: a
registration awaiting approval): SCRAM and PLAIN tell a client that proves them
why it is refused, and answer everyone else exactly as for an unknown name.

The text is RFC 6120 §6.5's optional <text/> of a <not-authorized/> failure; the
failure is no guess (`Failure.guess` False), so brute-force protection neither
counts nor holds it.
"""

from __future__ import annotations

import pytest
from scramp import ScramClient

from chatgate.auth.credentials import ScramKeys, derive_scram_keys
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Step,
)
from chatgate.sasl.plain import PlainMechanism
from chatgate.sasl.scram import ScramMechanism, ScramSha1Mechanism, ScramSha256Mechanism
from chatgate.vocabulary.errors import SaslFailureCondition as C

FACTS = ConnectionFacts(domain="example.com", tls_active=True)
SECRET = b"server secret for tests"
HELD = "your registration is awaiting approval by an administrator"
SALT = b"0123456789abcdef"


def _keys(password: str, hash_name: str = "sha256") -> ScramKeys:
    return derive_scram_keys(password, hash_name, salt=SALT, iterations=4096)


def _held(password: str, hash_name: str = "sha256") -> CredentialAnswer:
    return CredentialAnswer(held=HELD, held_keys=_keys(password, hash_name))


def _scram(
    mech: ScramMechanism, answer: CredentialAnswer, password: str, username: str = "newbie"
) -> tuple[str, Step]:
    """Run scramp against `mech`; returns the server-first message and the last step."""
    client = ScramClient([mech.name], username, password)
    step = mech.start(client.get_client_first().encode())
    assert isinstance(step, NeedCredentials), step
    challenge = mech.resume(answer)
    assert isinstance(challenge, Challenge), challenge
    server_first = challenge.data.decode()
    client.set_server_first(server_first)
    return server_first, mech.respond(client.get_client_final().encode())


def _failure(step: Step) -> Failure:
    assert isinstance(step, Failure), step
    return step


@pytest.mark.parametrize("mechanism", [ScramSha1Mechanism, ScramSha256Mechanism])
def test_scram_right_proof_of_a_held_registration_gets_not_authorized_with_the_text(
    mechanism: type[ScramMechanism],
) -> None:
    mech = mechanism(FACTS, SECRET)
    server_first, step = _scram(mech, _held("pencil-1", mech.hash_name), "pencil-1")
    failure = _failure(step)
    assert (failure.condition, failure.text) == (C.NOT_AUTHORIZED, HELD)
    assert failure.username == "newbie"
    assert failure.guess is False  # the password was right: no guess to count or hold
    # The registration's own salt and count: the client derives the right proof.
    assert f"s={'MDEyMzQ1Njc4OWFiY2RlZg=='},i=4096" in server_first


def test_scram_tells_only_the_right_proof_and_a_wrong_one_is_bare_as_for_unknown() -> None:
    right = _failure(_scram(ScramSha256Mechanism(FACTS, SECRET), _held("pencil-1"), "pencil-1")[1])
    held = _failure(_scram(ScramSha256Mechanism(FACTS, SECRET), _held("pencil-1"), "wrong")[1])
    unknown = _failure(_scram(ScramSha256Mechanism(FACTS, SECRET), CredentialAnswer(), "x")[1])
    assert right.text == HELD
    assert (held.condition, held.text, held.guess) == (C.NOT_AUTHORIZED, "", True)
    assert (unknown.condition, unknown.text, unknown.guess) == (held.condition, "", True)
    # A held answer without keys cannot be proved: as for an unknown name, bare.
    keyless = _scram(ScramSha256Mechanism(FACTS, SECRET), CredentialAnswer(held=HELD), "pencil-1")
    assert (_failure(keyless[1]).text, _failure(keyless[1]).guess) == ("", True)


def test_plain_right_password_of_a_held_registration_gets_not_authorized_with_the_text() -> None:
    mech = PlainMechanism(FACTS)
    mech.start(b"\0newbie\0pencil-1")
    # VERIFY_PASSWORD: `held` is set only when the password was right.
    failure = _failure(mech.resume(CredentialAnswer(held=HELD)))
    assert (failure.condition, failure.text, failure.guess) == (C.NOT_AUTHORIZED, HELD, False)
    assert failure.username == "newbie"
    # A wrong password is answered without `held` (the provider checks it): bare.
    wrong = PlainMechanism(FACTS)
    wrong.start(b"\0newbie\0wrong")
    bare = _failure(wrong.resume(CredentialAnswer()))
    assert (bare.condition, bare.text, bare.guess) == (C.NOT_AUTHORIZED, "", True)


def test_plain_held_answer_never_logs_in_even_with_an_authzid() -> None:
    mech = PlainMechanism(FACTS)
    mech.start(b"newbie@example.com\0newbie\0pencil-1")
    failure = _failure(mech.resume(CredentialAnswer(held=HELD)))
    assert (failure.condition, failure.text) == (C.NOT_AUTHORIZED, HELD)


# A locked account (`InternalProvider`): the account exists, so a right proof gets
# account-disabled (RFC 6120 §6.5.1), carried by `CredentialAnswer.held_condition`.
LOCKED = "this account is locked by an administrator"


def test_scram_right_proof_of_a_locked_account_gets_account_disabled() -> None:
    answer = CredentialAnswer(
        held=LOCKED, held_keys=_keys("pencil-1"), held_condition=C.ACCOUNT_DISABLED
    )
    right = _failure(_scram(ScramSha256Mechanism(FACTS, SECRET), answer, "pencil-1")[1])
    assert (right.condition, right.text, right.guess) == (C.ACCOUNT_DISABLED, LOCKED, False)
    wrong = _failure(_scram(ScramSha256Mechanism(FACTS, SECRET), answer, "pencil-2")[1])
    assert (wrong.condition, wrong.text, wrong.guess) == (C.NOT_AUTHORIZED, "", True)


def test_plain_right_password_of_a_locked_account_gets_account_disabled() -> None:
    mech = PlainMechanism(FACTS)
    mech.start(b"\0alice\0pencil-1")
    failure = _failure(
        mech.resume(CredentialAnswer(held=LOCKED, held_condition=C.ACCOUNT_DISABLED))
    )
    assert (failure.condition, failure.text, failure.guess) == (C.ACCOUNT_DISABLED, LOCKED, False)
