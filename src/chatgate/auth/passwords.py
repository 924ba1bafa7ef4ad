"""The one length limit on passwords, checked wherever a password enters.

PRECIS preparation (RFC 8265 OpaqueString) is pure Python and costs time in
proportion to its input: a 90,000-character password took over a second, on
the event loop, in registration, and again in every PLAIN attempt.  So every
entry point measures the password in bytes *before* anything else touches it:
SASL PLAIN (`sasl/plain.py`), XEP-0078 ``<password/>`` (`modules/legacy_auth.py`),
XEP-0077 registration and password change (`modules/register.py`) and the CLI's
``user add``/``passwd``/``import`` (`cli/user.py`).  No password longer than
`MAX_PASSWORD_BYTES` can be stored, so refusing one at login reveals nothing and
never locks anyone out.  (SCRAM and DIGEST-MD5 never send the password.)

RFC 4616 §2 asks servers to accept at least 255 octets; 1,024 is generous (a
64-character passphrase of 4-byte characters is 256 bytes), and preparing 1,024
bytes costs about a millisecond.

Pure functions: nothing here awaits, logs or keeps state.
"""

from __future__ import annotations

from chatgate.auth.credentials import prepare_password as _precis

__all__ = [
    "MAX_PASSWORD_BYTES",
    "TOO_LONG",
    "PasswordTooLong",
    "check_length",
    "password_problem",
    "prepare_password",
    "too_long",
]

#: The longest password accepted anywhere, in UTF-8 bytes, before any preparation.
MAX_PASSWORD_BYTES = 1024

#: What a client or an operator is told (no password is ever echoed).
TOO_LONG = f"the password is longer than {MAX_PASSWORD_BYTES} bytes"


class PasswordTooLong(ValueError):
    """A password over `MAX_PASSWORD_BYTES` bytes (a `ValueError`, as PRECIS refusals are)."""

    def __init__(self) -> None:
        super().__init__(TOO_LONG)


def too_long(password: str | bytes) -> bool:
    """Whether `password` has more than `MAX_PASSWORD_BYTES` bytes in UTF-8 (bytes are
    taken as they are).  Costs nothing for long input: a string of more characters
    than the limit is too long whatever its characters, one of a quarter of it is not."""
    size = len(password)
    if isinstance(password, bytes) or size > MAX_PASSWORD_BYTES:
        return size > MAX_PASSWORD_BYTES
    if size * 4 <= MAX_PASSWORD_BYTES:
        return False
    return len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES


def check_length(password: str | bytes) -> None:
    """Raise `PasswordTooLong` for a password over the limit."""
    if too_long(password):
        raise PasswordTooLong


def prepare_password(password: str) -> bytes:
    """PRECIS OpaqueString preparation of a password within the limit; raises
    `PasswordTooLong` before preparing anything, ValueError when PRECIS refuses."""
    check_length(password)
    return _precis(password)


def password_problem(password: str) -> str | None:
    """Why `password` cannot be set (empty, too long, refused by PRECIS), or None;
    in words for an operator or a client, never quoting the password."""
    if not password:
        return "empty password"
    if too_long(password):
        return TOO_LONG
    try:
        _precis(password)
    except ValueError as exc:
        return f"password refused by PRECIS OpaqueString: {getattr(exc, 'reason', exc)}"
    return None
