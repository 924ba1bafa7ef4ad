"""Wowza's TEA: XXTEA (Corrected Block TEA) with Wowza's text conventions.

Wowza's third-party token provider sends ``clientid=TEA(username)`` and expects
``{"publisherToken": TEA(password)}`` back, both enciphered with a shared secret
by its class ``com.wowza.encryptionAS3.TEA``.  That class is XXTEA (Wheeler and
Needham, 1998) with these conventions, which this module follows exactly
(`../shared/streaming-contract.md`, "Wowza third-party token provider"):

- key: the first 16 characters of the shared secret, one byte each (latin-1),
  read as 4 little-endian uint32 words; a shorter secret is refused;
- plaintext: one byte per character (latin-1), zero-padded to whole
  little-endian 32-bit words, and to at least 2 words (XXTEA's minimum block);
- the cipher: delta ``0x9E3779B9``, ``6 + 52 // n`` cycles for ``n`` words;
- ciphertext text: lowercase hex of the little-endian ciphertext bytes;
  decryption accepts an optional ``0x`` prefix and strips the trailing NULs the
  padding added.

So a plaintext ending in NUL characters does not survive a round trip (Wowza's
own class behaves the same); user names and stream keys never contain NUL.

Known answer: all-zero key, 8 zero bytes -> ``ab043705808c5d57``; the ``xxtea``
package on PyPI with ``padding=False`` is the independent oracle in the tests.

What it must not be mistaken for: a modern cipher.  XXTEA without a MAC or an IV
is deterministic and malleable; it is here only because Wowza speaks it.

`decrypt` gets peer input (the ``clientid`` a media server forwards) and never
raises for it: anything that does not decode gives ``None``.  A bad *secret* is
our own configuration's fault and raises `ValueError` in both directions.
Pure Python, about 30 microseconds for a short name; never awaits, no clock.
"""

from __future__ import annotations

import re
import struct
from typing import Final

__all__ = ["KEY_LENGTH", "MAX_HEX_LENGTH", "decrypt", "encrypt"]

KEY_LENGTH: Final = 16
"""Characters of the shared secret that form the key (the rest is ignored, as by Wowza)."""

MAX_HEX_LENGTH: Final = 8192
"""Longest ciphertext `decrypt` accepts, in hex digits (4 KiB of plaintext).  A user
name or stream key is far shorter; the bound keeps a hostile ``clientid`` from
costing more than a bounded amount of work."""

_DELTA: Final = 0x9E3779B9
_MASK: Final = 0xFFFFFFFF
_HEX: Final = re.compile(r"[0-9a-fA-F]*")


def _key_words(secret: str) -> tuple[int, int, int, int]:
    if not isinstance(secret, str):
        raise TypeError("the TEA shared secret must be a str")
    if len(secret) < KEY_LENGTH:
        raise ValueError(f"the TEA shared secret must have at least {KEY_LENGTH} characters")
    try:
        raw = secret[:KEY_LENGTH].encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            "the first 16 characters of the TEA shared secret must be latin-1"
        ) from None
    words: tuple[int, int, int, int] = struct.unpack("<4I", raw)
    return words


def _encipher(v: list[int], k: tuple[int, int, int, int]) -> None:
    """XXTEA encryption of ``v`` (at least 2 words) in place."""
    n = len(v)
    rounds = 6 + 52 // n
    total = 0
    z = v[n - 1]
    for _ in range(rounds):
        total = (total + _DELTA) & _MASK
        e = (total >> 2) & 3
        for p in range(n):
            y = v[(p + 1) % n]
            mx = (((z >> 5) ^ ((y << 2) & _MASK)) + ((y >> 3) ^ ((z << 4) & _MASK))) ^ (
                (total ^ y) + (k[(p & 3) ^ e] ^ z)
            )
            z = v[p] = (v[p] + mx) & _MASK


def _decipher(v: list[int], k: tuple[int, int, int, int]) -> None:
    """XXTEA decryption of ``v`` (at least 2 words) in place."""
    n = len(v)
    rounds = 6 + 52 // n
    total = (rounds * _DELTA) & _MASK
    y = v[0]
    for _ in range(rounds):
        e = (total >> 2) & 3
        for p in range(n - 1, -1, -1):
            z = v[p - 1]  # v[-1] is the last word when p == 0
            mx = (((z >> 5) ^ ((y << 2) & _MASK)) + ((y >> 3) ^ ((z << 4) & _MASK))) ^ (
                (total ^ y) + (k[(p & 3) ^ e] ^ z)
            )
            y = v[p] = (v[p] - mx) & _MASK
        total = (total - _DELTA) & _MASK


def encrypt(text: str, secret: str) -> str:
    """``TEA.encrypt(text, secret)`` as Wowza computes it: lowercase hex.

    Raises `ValueError` when ``text`` has a character outside latin-1 (it has no
    one-byte form Wowza would agree on) or ``secret`` is unusable.
    """
    key = _key_words(secret)
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("TEA plaintext must be latin-1 text") from None
    size = max(8, -(-len(data) // 4) * 4)
    data = data.ljust(size, b"\0")
    words = list(struct.unpack(f"<{size // 4}I", data))
    _encipher(words, key)
    return struct.pack(f"<{len(words)}I", *words).hex()


def decrypt(hex_text: str, secret: str) -> str | None:
    """The text Wowza enciphered into ``hex_text``, or ``None`` if it does not decode.

    ``None`` for: anything but a str, a non-hex character (whitespace included),
    an odd number of digits, fewer than 8 bytes, a length that is not whole 32-bit
    words, more than `MAX_HEX_LENGTH` digits.  Every byte is a latin-1 character,
    so a decryption itself cannot fail: a wrong key yields garbage text, which the
    caller finds matches no user.  Raises `ValueError` only for a bad ``secret``.
    """
    key = _key_words(secret)
    if not isinstance(hex_text, str):
        return None
    if hex_text.startswith("0x"):
        hex_text = hex_text[2:]
    size = len(hex_text)
    if size < 16 or size % 8 or size > MAX_HEX_LENGTH or not _HEX.fullmatch(hex_text):
        return None
    words = list(struct.unpack(f"<{size // 8}I", bytes.fromhex(hex_text)))
    _decipher(words, key)
    return struct.pack(f"<{len(words)}I", *words).rstrip(b"\0").decode("latin-1")
