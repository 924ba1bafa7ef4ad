"""sasl.b64 answers exactly as the `base64` functions it replaces on the login path."""

from __future__ import annotations

import base64
import binascii
import random

import pytest

from chatgate.sasl import b64


def _reference(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


FIXED = [
    "",
    "=",
    "==",
    "a",
    "ab",
    "abc",
    "abcd",
    "ab==",
    "ab=",
    "abc=",
    "a===",
    "====",
    "ab=c",
    "é",
    "YWJj\n",
    "YW Jj",
    "YWJj=",
    "YWJjZA==",
    "-_",
    "+/+/",
    "YQ",
    "YQ=",
    "YQ==x",
    "\x00",
]


@pytest.mark.parametrize("text", FIXED)
def test_decode_matches_base64_on_edge_cases(text: str) -> None:
    assert b64.decode(text) == _reference(text)


def test_decode_matches_base64_on_random_text() -> None:
    rng = random.Random(9)
    alphabet = "AB+/=a\n-é\x00"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        assert b64.decode(text) == _reference(text), text


def test_encoders_match_base64() -> None:
    rng = random.Random(9)
    for _ in range(500):
        data = rng.randbytes(rng.randint(0, 40))
        assert b64.encode(data) == base64.b64encode(data).decode("ascii")
        assert b64.urlsafe_encode(data) == base64.urlsafe_b64encode(data).decode("ascii")
    assert b64.decode("YWJjZA==") == b"abcd"
    assert b64.decode("YWJj ZA==") is None
