"""Stored secrets: SCRAM salted keys per hash (RFC 5802 §3), never the password.

A stored credential is what the server keeps so that it can verify a SCRAM
exchange (StoredKey, ServerKey) and a PLAIN password (by re-deriving StoredKey
with the stored salt and iteration count) without ever holding the password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from precis_i18n import get_profile

#: The hash names we support, as hashlib names, keyed by the SCRAM mechanism suffix.
SCRAM_HASHES: dict[str, str] = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}

DEFAULT_ITERATIONS = 4096
_opaque = get_profile("OpaqueString")


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """One hash's SCRAM credential (RFC 5802 §3): all a server needs, nothing reversible."""

    hash_name: str  # hashlib name: "sha1", "sha256", "sha512"
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def prepare_password(password: str) -> bytes:
    """PRECIS OpaqueString (RFC 8265 §4.2), the successor of SASLprep; raises ValueError."""
    return _opaque.enforce(password).encode("utf-8")


def salted_password(password: bytes, hash_name: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)


def keys_from_salted_password(
    salted: bytes, hash_name: str, salt: bytes, iterations: int
) -> ScramKeys:
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return ScramKeys(hash_name, salt, iterations, stored_key, server_key)


def derive_scram_keys(
    password: str,
    hash_name: str,
    *,
    salt: bytes | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> ScramKeys:
    """Derive one hash's SCRAM keys from a password; a fresh 16-byte salt unless given."""
    salt = os.urandom(16) if salt is None else salt
    salted = salted_password(prepare_password(password), hash_name, salt, iterations)
    return keys_from_salted_password(salted, hash_name, salt, iterations)


def derive_all(
    password: str,
    *,
    hashes: tuple[str, ...] = ("sha1", "sha256", "sha512"),
    iterations: int = DEFAULT_ITERATIONS,
) -> dict[str, ScramKeys]:
    """SCRAM keys for every supported hash, each with its own salt."""
    return {h: derive_scram_keys(password, h, iterations=iterations) for h in hashes}


def verify_password(password: str, keys: ScramKeys) -> bool:
    """Check a plaintext password (e.g. from PLAIN) against stored SCRAM keys, in constant time."""
    try:
        prepared = prepare_password(password)
    except ValueError:
        return False
    salted = salted_password(prepared, keys.hash_name, keys.salt, keys.iterations)
    candidate = keys_from_salted_password(salted, keys.hash_name, keys.salt, keys.iterations)
    return hmac.compare_digest(candidate.stored_key, keys.stored_key)
