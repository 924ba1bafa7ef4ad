"""Wowza's TEA (`chatgate.streams.xxtea`): XXTEA with Wowza's text conventions.

The oracle is the independent ``xxtea`` package from PyPI (a C implementation)
with ``padding=False``, fed the bytes the contract describes: latin-1, zero-padded
to whole little-endian words, at least 2 words.
"""

from __future__ import annotations

import random

import pytest
import xxtea as oracle
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.streams.xxtea import MAX_HEX_LENGTH, decrypt, encrypt

ZERO_KEY = "\0" * 16
SECRET = "0123456789abcdefTHE-REST-IS-IGNORED"


def _padded(data: bytes) -> bytes:
    return data.ljust(max(8, -(-len(data) // 4) * 4), b"\0")


def _oracle_hex(text: str, secret: str) -> str:
    return oracle.encrypt(
        _padded(text.encode("latin-1")), secret[:16].encode("latin-1"), padding=False
    ).hex()


def test_known_answer_all_zero() -> None:
    assert encrypt("\0" * 8, ZERO_KEY) == "ab043705808c5d57"
    assert encrypt("", ZERO_KEY) == "ab043705808c5d57"  # padded to two zero words
    assert oracle.encrypt(bytes(8), bytes(16), padding=False).hex() == "ab043705808c5d57"
    assert decrypt("ab043705808c5d57", ZERO_KEY) == ""


def test_matches_the_oracle_over_random_inputs() -> None:
    rng = random.Random(12)
    for _ in range(1000):
        size = rng.randint(8, 200)
        # Text without trailing NULs: those are padding, and decryption strips them.
        text = bytes(rng.randrange(256) for _ in range(size)).rstrip(b"\0").decode("latin-1")
        secret = bytes(rng.randrange(256) for _ in range(16)).decode("latin-1")
        ours = encrypt(text, secret)
        assert ours == _oracle_hex(text, secret)
        assert len(ours) == 2 * len(_padded(text.encode("latin-1")))
        assert decrypt(ours, secret) == text
        padded = _padded(text.encode("latin-1"))
        assert (
            oracle.decrypt(bytes.fromhex(ours), secret.encode("latin-1"), padding=False) == padded
        )


def test_decrypts_what_the_oracle_encrypts() -> None:
    rng = random.Random(34)
    for _ in range(500):
        words = rng.randint(2, 50)
        data = bytes(rng.randrange(256) for _ in range(4 * words))
        key = bytes(rng.randrange(256) for _ in range(16))
        cipher = oracle.encrypt(data, key, padding=False).hex()
        assert decrypt(cipher, key.decode("latin-1")) == data.rstrip(b"\0").decode("latin-1")


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(max_codepoint=255), max_size=64).map(lambda t: t.rstrip("\0")),
    secret=st.text(st.characters(max_codepoint=255), min_size=16, max_size=40),
)
def test_property_round_trip_and_oracle(text: str, secret: str) -> None:
    cipher = encrypt(text, secret)
    assert cipher == _oracle_hex(text, secret)
    assert cipher == cipher.lower()
    assert decrypt(cipher, secret) == text
    assert decrypt("0x" + cipher, secret) == text
    assert decrypt(cipher.upper(), secret) == text


def test_wowza_style_username_and_password() -> None:
    assert decrypt(encrypt("alice", SECRET), SECRET) == "alice"
    assert encrypt("alice", SECRET) == _oracle_hex("alice", SECRET)
    assert encrypt("alice", SECRET) == encrypt("alice", SECRET[:16])  # only 16 characters count
    assert encrypt("alice", SECRET) != encrypt("alice", "0123456789abcdeF")
    assert encrypt("caf\u00e9", SECRET) == _oracle_hex("caf\u00e9", SECRET)


def test_the_0x_prefix_is_optional() -> None:
    cipher = encrypt("bob", SECRET)
    assert decrypt("0x" + cipher, SECRET) == "bob"
    assert decrypt("0x0x" + cipher, SECRET) is None


def test_trailing_nuls_are_stripped_and_inner_ones_kept() -> None:
    assert decrypt(encrypt("a\0b", SECRET), SECRET) == "a\0b"
    assert decrypt(encrypt("ab\0\0", SECRET), SECRET) == "ab"


def test_a_wrong_secret_gives_other_text_not_an_error() -> None:
    cipher = encrypt("alice", SECRET)
    other = decrypt(cipher, "fedcba9876543210")
    assert other is not None and other != "alice"


@pytest.mark.parametrize(
    "hex_text",
    [
        "",
        "0x",
        "ab04370580",  # 5 bytes
        "ab043705808c5d5",  # odd
        "ab043705808c5d57ab",  # 9 bytes: not whole words
        "ab043705808c5d57ab04",  # 10 bytes
        "ab043705808c5d5g",  # non-hex
        "ab043705 08c5d57",  # whitespace (bytes.fromhex would skip it)
        " ab043705808c5d57",
        "ab043705808c5d57\n",
        "+b043705808c5d57",
        "ab043705808c5d\u0665\u0667",  # Arabic-Indic digits
        "0X" + "ab043705808c5d57",
        "00" * (MAX_HEX_LENGTH // 2 + 4),  # over the bound
    ],
)
def test_what_does_not_decode_gives_none(hex_text: str) -> None:
    assert decrypt(hex_text, ZERO_KEY) is None


@pytest.mark.parametrize("value", [None, b"ab043705808c5d57", 42])
def test_non_text_gives_none(value: object) -> None:
    assert decrypt(value, ZERO_KEY) is None  # type: ignore[arg-type]


def test_the_longest_accepted_ciphertext() -> None:
    cipher = encrypt("x" * (MAX_HEX_LENGTH // 2), SECRET)
    assert len(cipher) == MAX_HEX_LENGTH
    assert decrypt(cipher, SECRET) == "x" * (MAX_HEX_LENGTH // 2)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_property_any_text_decrypts_to_text_or_none(hex_text: str) -> None:
    result = decrypt(hex_text, SECRET)
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize("secret", ["", "short", "0123456789abcde"])
def test_a_short_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        encrypt("alice", secret)
    with pytest.raises(ValueError, match="at least 16"):
        decrypt("ab043705808c5d57", secret)


def test_a_secret_outside_latin1_is_refused() -> None:
    with pytest.raises(ValueError, match="latin-1"):
        encrypt("alice", "\u20ac" * 16)
    # Beyond the 16th character nothing is read, so anything goes there.
    assert encrypt("alice", SECRET[:16] + "\u20ac") == encrypt("alice", SECRET)


def test_plaintext_outside_latin1_is_refused() -> None:
    with pytest.raises(ValueError, match="latin-1"):
        encrypt("\u20ac", SECRET)
