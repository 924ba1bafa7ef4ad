"""Password hashes of administrators: Argon2id for new ones, bcrypt as Wowza wrote them.

Only hashing and checking, in the caller's thread: both cost tens of
milliseconds of CPU by design, so async callers run them with
`asyncio.to_thread` (the event loop must not wait for them).  A check of a
name nobody has still costs one Argon2id verification (`check_dummy`), so the
answer's timing does not tell which administrators exist.
"""

from __future__ import annotations

import functools
import hmac

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "BCRYPT_PREFIXES",
    "MAX_PASSWORD_BYTES",
    "check_dummy",
    "check_password",
    "hash_password",
]

#: bcrypt hashes as Wowza's `admin.password` may hold them
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
#: longer passwords are refused before any hashing (a hash of megabytes is a DoS)
MAX_PASSWORD_BYTES = 1024

#: argon2-cffi's defaults: Argon2id, RFC 9106's low-memory profile (t=3, 64 MiB, p=4)
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """An Argon2id hash of `password` (PHC string).  Raises ValueError when too long."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password is at most {MAX_PASSWORD_BYTES} bytes")
    return _HASHER.hash(password)


def check_password(stored: str, password: str) -> bool:
    """Whether `password` matches `stored`: an Argon2 PHC string or a bcrypt hash.
    Anything else (plaintext, a digest hash) is never a match here."""
    data = password.encode()
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    if stored.startswith("$argon2"):
        try:
            return _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if stored.startswith(BCRYPT_PREFIXES):
        try:
            return bcrypt.checkpw(data, stored.encode())
        except ValueError:  # over bcrypt's 72 bytes, or a malformed hash
            return False
    return False


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("chatgate: no such administrator")


def check_dummy(password: str) -> bool:
    """Spend what checking a real administrator's Argon2id hash spends; always False."""
    check_password(_dummy_hash(), password)
    return False


def equal_text(a: str, b: str) -> bool:
    """Constant-time comparison of two strings (plaintext entries, hex digests)."""
    return hmac.compare_digest(a.encode(), b.encode())
