"""Base64 as SASL uses it (RFC 6120 §6.4.2, RFC 5802 §7), straight from binascii.

`base64.b64decode(text, validate=True)` and `b64encode` are Python wrappers (two
calls to decode, one to encode) around binascii; a login decodes four payloads and
encodes about eight.  These call binascii directly, with the arguments the
wrappers pass (strict mode for decoding), so the answers are the same.
"""

from __future__ import annotations

import binascii

_URLSAFE = bytes.maketrans(b"+/", b"-_")


def decode(text: str) -> bytes | None:
    """Strict base64 (`base64.b64decode(text, validate=True)`); None where that raises
    (characters outside the alphabet, bad padding, non-ASCII text)."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def encode(data: bytes) -> str:
    """`base64.b64encode(data).decode("ascii")`."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def urlsafe_encode(data: bytes) -> str:
    """`base64.urlsafe_b64encode(data).decode("ascii")`."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).decode("ascii")
