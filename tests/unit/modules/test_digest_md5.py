"""DIGEST-MD5 (RFC 2831): the RFC's own example, and slixmpp's client as the peer.

(Here rather than in tests/unit/sasl/ because the stored secret belongs to the
legacy-secrets work; the mechanism is registered nowhere yet.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from slixmpp.util.sasl.mechanisms import DIGEST

from chatgate.auth.provider import Capability
from chatgate.sasl.base import Challenge, ConnectionFacts, Failure, NeedCredentials, Success
from chatgate.sasl.digest_md5 import (
    DigestMd5Mechanism,
    digest_md5_ha1,
    digest_responses,
    parse_directives,
)
from chatgate.vocabulary.errors import SaslFailureCondition as C

FACTS = ConnectionFacts(domain="localhost", tls_active=True)


@dataclass(frozen=True)
class Answer:
    """`CredentialAnswer` plus the field DIGEST-MD5 needs (see the module docstring)."""

    digest_md5_ha1: bytes | None = None
    temporary_failure: bool = False


def test_rfc_2831_example() -> None:
    # RFC 2831 §4, example 1 (IMAP): user chris, password secret.
    ha1 = digest_md5_ha1("chris", "elwood.innosoft.com", "secret")
    directives = parse_directives(
        'charset=utf-8,username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",'
        'nc=00000001,cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",'
        "response=d388dad90d4bbd760a152321f2143af7,qop=auth"
    )
    response, rspauth = digest_responses(ha1, directives)
    assert response == b"d388dad90d4bbd760a152321f2143af7"
    assert rspauth == b"ea40f60335c427b5527b84dbabcdfffd"


def test_ha1_uses_iso_8859_1_when_possible() -> None:
    assert (
        digest_md5_ha1("jürgen", "localhost", "pw")
        == hashlib.md5("jürgen:localhost:pw".encode("iso-8859-1")).digest()
    )
    assert digest_md5_ha1("ŝ", "localhost", "pw") == hashlib.md5("ŝ:localhost:pw".encode()).digest()


def test_directives_refuse_repeats_and_garbage() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_directives('nonce="a",nonce="b"')
    with pytest.raises(ValueError):
        parse_directives('nonce="unterminated')
    assert parse_directives('realm="a\\"b" , qop=auth') == {"realm": 'a"b', "qop": "auth"}


def client(password: str, authzid: bytes = b"") -> DIGEST:
    credentials = {
        "username": b"bill",
        "password": password.encode(),
        "realm": b"",
        "service": b"xmpp",
        "host": b"localhost",
        "authzid": authzid,
        "service-name": b"",
    }
    return DIGEST("DIGEST-MD5", credentials, {"encrypted": True, "unencrypted_digest": True})


def run(peer: DIGEST, stored_password: str | None, answer: Answer | None = None):  # type: ignore[no-untyped-def]
    mech = DigestMd5Mechanism(FACTS, b"secret")
    challenge = mech.start(None)
    assert isinstance(challenge, Challenge)
    step = mech.respond(peer.process(challenge.data))
    if not isinstance(step, NeedCredentials):
        return step
    assert step == NeedCredentials(Capability.DIGEST_MD5_HA1, "bill")
    if answer is None:
        ha1 = (
            None
            if stored_password is None
            else digest_md5_ha1("bill", "localhost", stored_password)
        )
        answer = Answer(ha1)
    return mech.resume(answer)  # type: ignore[arg-type]


def test_slixmpp_client_authenticates_and_checks_rspauth() -> None:
    peer = client("Calli0pe")
    result = run(peer, "Calli0pe")
    assert isinstance(result, Success) and result.username == "bill"
    assert result.additional_data is not None
    assert peer.process(result.additional_data) is None  # slixmpp verified rspauth


def test_wrong_password_and_unknown_user_fail_alike() -> None:
    assert run(client("wrong"), "Calli0pe") == Failure(C.NOT_AUTHORIZED, "", "bill")
    assert run(client("Calli0pe"), None) == Failure(C.NOT_AUTHORIZED, "", "bill")


def test_provider_outage_is_temporary() -> None:
    result = run(client("Calli0pe"), None, Answer(temporary_failure=True))
    assert isinstance(result, Failure) and result.condition is C.TEMPORARY_AUTH_FAILURE


def test_authzid_must_be_the_users_own_jid() -> None:
    result = run(client("Calli0pe", b"bill@localhost"), "Calli0pe")
    assert isinstance(result, Success) and result.authzid == "bill@localhost"
    result = run(client("Calli0pe", b"admin@localhost"), "Calli0pe")
    assert isinstance(result, Failure) and result.condition is C.INVALID_AUTHZID


@pytest.mark.parametrize(
    ("response", "condition"),
    [
        (b'username="bill",nonce="N",cnonce="c",nc=00000001,response=00', C.MALFORMED_REQUEST),
        (
            b'username="bill",realm="localhost",nonce="N",cnonce="c",nc=00000001,qop=auth,'
            b'digest-uri="imap/localhost",response=' + b"0" * 32,
            C.MALFORMED_REQUEST,
        ),
        (
            b'username="bill",realm="localhost",nonce="other",cnonce="c",nc=00000001,qop=auth,'
            b'digest-uri="xmpp/localhost",response=' + b"0" * 32,
            C.NOT_AUTHORIZED,
        ),
        (
            b'username="bill",realm="localhost",nonce="N",cnonce="c",nc=00000002,qop=auth,'
            b'digest-uri="xmpp/localhost",response=' + b"0" * 32,
            C.NOT_AUTHORIZED,
        ),
        (b"\xff", C.INCORRECT_ENCODING),
    ],
    ids=["missing-uri", "foreign-uri", "stale-nonce", "replayed-nc", "not-utf8"],
)
def test_bad_responses(response: bytes, condition: C) -> None:
    mech = DigestMd5Mechanism(FACTS, nonce="N")
    mech.start(None)
    result = mech.respond(response)
    assert isinstance(result, Failure) and result.condition is condition


def test_initial_response_is_refused() -> None:
    result = DigestMd5Mechanism(FACTS).start(b"username=x")
    assert isinstance(result, Failure) and result.condition is C.MALFORMED_REQUEST
