"""Issue 9 item 7: a password (or a DIGEST-MD5 response) over its size limit is refused
by the mechanism before anything prepares it, as malformed-request (RFC 6120 §6.5.8):
no stored password can be that long, so no credential is evaluated, no guess is
counted, and the answer is the same whether or not the user exists."""

from __future__ import annotations

import base64

import pytest

from chatgate.auth.passwords import (
    MAX_PASSWORD_BYTES,
    TOO_LONG,
    PasswordTooLong,
    check_length,
    password_problem,
    prepare_password,
    too_long,
)
from chatgate.auth.provider import Capability
from chatgate.sasl.base import Challenge, ConnectionFacts, Failure, NeedCredentials
from chatgate.sasl.digest_md5 import DigestMd5Mechanism
from chatgate.sasl.plain import PlainMechanism
from chatgate.vocabulary.errors import SaslFailureCondition as C

from ..xmpp.transcript import HEADER, Harness, settings

FACTS = ConnectionFacts(domain="example.com", tls_active=True)


@pytest.mark.parametrize(
    ("password", "over"),
    [
        ("x" * 1024, False),
        ("x" * 1025, True),
        ("é" * 512, False),  # 1,024 bytes
        ("é" * 513, True),  # 1,026 bytes in 513 characters
        ("😀" * 256, False),
        ("😀" * 257, True),
        ("a" * 200 + "é" * 500, True),
        (b"x" * 1025, True),
        ("\udcff" * 400, True),  # lone surrogates are measured, not refused here
    ],
)
def test_the_limit_is_in_utf8_bytes(password: str | bytes, over: bool) -> None:
    assert too_long(password) is over
    if over:
        with pytest.raises(PasswordTooLong, match="longer than 1024 bytes"):
            check_length(password)
    else:
        check_length(password)


def test_preparation_checks_the_length_first_and_explains_problems() -> None:
    with pytest.raises(PasswordTooLong):
        prepare_password("\u0000" * 2000)  # PRECIS would refuse it too: the length wins
    assert prepare_password("Pässwörd") == "Pässwörd".encode()
    assert password_problem("") == "empty password"
    assert password_problem("p" * 5000) == TOO_LONG
    assert "PRECIS" in (password_problem("bad\u0000") or "")
    assert password_problem("fine password") is None
    assert MAX_PASSWORD_BYTES == 1024


def test_plain_refuses_a_password_over_1024_bytes_as_malformed_request() -> None:
    step = PlainMechanism(FACTS).start(b"\0juliet\0" + b"r" * 1025)
    assert isinstance(step, Failure)
    assert (step.condition, step.text) == (C.MALFORMED_REQUEST, TOO_LONG)


def test_plain_refuses_a_long_password_before_looking_at_the_rest() -> None:
    """Also with bytes that are not UTF-8 and a username PRECIS would refuse: nothing
    is decoded or prepared (the answer cannot depend on the user)."""
    step = PlainMechanism(FACTS).start(b"\0\xff\xfe bad user\0" + b"\xff" * 5000)
    assert isinstance(step, Failure) and step.condition is C.MALFORMED_REQUEST


def test_plain_accepts_exactly_1024_bytes() -> None:
    password = "é" * 512
    step = PlainMechanism(FACTS).start(b"\0juliet\0" + password.encode())
    assert step == NeedCredentials(Capability.VERIFY_PASSWORD, "juliet", password=password)


def test_a_long_plain_password_on_the_wire_is_not_counted_as_a_guess() -> None:
    h = Harness(settings(require_tls=False, allow_plain_without_tls=True))
    h.add_user("alice", "wonderland")
    h.client(HEADER)
    data = base64.b64encode(b"\0alice\0" + b"w" * 90_000).decode()
    out = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>"
    )
    assert out.startswith(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/>"
        "<text xml:lang='en'>the password is longer than 1024 bytes</text></failure>"
    )
    assert h.closed is None  # the client may try again (three failures close the stream)


def test_digest_md5_refuses_a_response_over_4096_bytes() -> None:
    """RFC 2831 §2.1.2: "The size of a digest-response is less than 4096 bytes"."""
    mech = DigestMd5Mechanism(FACTS, b"secret", nonce="abc")
    assert isinstance(mech.start(None), Challenge)
    padding = "x" * 4096
    response = (
        f'username="{padding}",realm="example.com",nonce="abc",cnonce="c",nc=00000001,'
        f'qop=auth,digest-uri="xmpp/example.com",response={"0" * 32}'
    ).encode()
    step = mech.respond(response)
    assert isinstance(step, Failure) and step.condition is C.MALFORMED_REQUEST
    assert "4096" in step.text
