"""SCRAM-SHA-1 and PLAIN, client side, with the SaltedPassword cache real clients keep.

RFC 5802 section 3: the client derives SaltedPassword = Hi(password, salt, i), the slow PBKDF2
step, then ClientKey, StoredKey and ServerKey from it. A client that logs in again with the same
salt and iteration count may reuse those keys (RFC 5802 section 5.1 suggests caching them), and
real clients do. Without the cache the generator would spend ~1 ms of PBKDF2 per login and become
the bottleneck; with it, the server's work per login is unchanged: it still checks a fresh proof
over fresh nonces. A miss is computed on the spot and counted, so a report can show it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bench import accounts

Key = tuple[str, bytes, int]


@dataclass(frozen=True, slots=True)
class DerivedKeys:
    client_key: bytes
    stored_key: bytes
    server_key: bytes


def derive(salted_password: bytes) -> DerivedKeys:
    client_key = hmac.digest(salted_password, b"Client Key", "sha1")
    return DerivedKeys(
        client_key,
        hashlib.sha1(client_key).digest(),
        hmac.digest(salted_password, b"Server Key", "sha1"),
    )


class ScramCache:
    """(user, salt, iterations) -> derived keys; persisted for salts the harness did not choose."""

    def __init__(self, learned_path: Path | None = None) -> None:
        self._keys: dict[Key, DerivedKeys] = {}
        self._learned: dict[Key, bytes] = {}
        self._learned_path = learned_path
        self.misses = 0

    def preload_accounts(self, count: int) -> None:
        for c in accounts.load(count):
            self._keys[(c.user, c.salt, c.iterations)] = derive(c.salted_password)

    def load_learned(self) -> None:
        if self._learned_path is None or not self._learned_path.exists():
            return
        for user, salt_hex, iterations, salted_hex in json.loads(self._learned_path.read_text()):
            key = (user, bytes.fromhex(salt_hex), int(iterations))
            salted = bytes.fromhex(salted_hex)
            self._learned[key] = salted
            self._keys[key] = derive(salted)

    def get(self, user: str, pw: str, salt: bytes, iterations: int) -> DerivedKeys:
        key = (user, salt, iterations)
        keys = self._keys.get(key)
        if keys is None:
            self.misses += 1
            salted = hashlib.pbkdf2_hmac("sha1", pw.encode(), salt, iterations)
            keys = self._keys[key] = derive(salted)
            self._learned[key] = salted
        return keys

    def has(self, user: str, salt: bytes, iterations: int) -> bool:
        return (user, salt, iterations) in self._keys

    def add(self, user: str, salt: bytes, iterations: int, salted_password: bytes) -> None:
        key = (user, salt, iterations)
        self._keys[key] = derive(salted_password)
        self._learned[key] = salted_password

    def save_learned(self) -> None:
        if self._learned_path is None or not self._learned:
            return
        rows = [[u, s.hex(), i, sp.hex()] for (u, s, i), sp in self._learned.items()]
        self._learned_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._learned_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(self._learned_path)


class ScramError(Exception):
    """The server's SCRAM messages were malformed or its signature did not verify."""


class ScramClient:
    """One SCRAM-SHA-1 exchange (no channel binding: gs2 header "n,,")."""

    __slots__ = ("_auth_message", "_cache", "_client_first_bare", "_keys", "_nonce", "_pw", "_user")

    def __init__(self, cache: ScramCache, user: str, pw: str) -> None:
        self._cache = cache
        self._user = user
        self._pw = pw
        self._nonce = base64.b64encode(os.urandom(18)).decode()
        self._client_first_bare = f"n={user},r={self._nonce}"
        self._auth_message = b""
        self._keys: DerivedKeys | None = None

    def first(self) -> bytes:
        return ("n,," + self._client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(part.split(b"=", 1) for part in server_first.split(b",") if b"=" in part)
        try:
            nonce = attrs[b"r"].decode()
            salt = base64.b64decode(attrs[b"s"])
            iterations = int(attrs[b"i"])
        except (KeyError, ValueError) as e:
            raise ScramError(f"bad server-first-message {server_first!r}") from e
        if not nonce.startswith(self._nonce):
            raise ScramError("server nonce does not extend ours")
        keys = self._keys = self._cache.get(self._user, self._pw, salt, iterations)
        without_proof = f"c=biws,r={nonce}"
        self._auth_message = (
            f"{self._client_first_bare},".encode() + server_first + f",{without_proof}".encode()
        )
        signature = hmac.digest(keys.stored_key, self._auth_message, "sha1")
        proof = bytes(a ^ b for a, b in zip(keys.client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        assert self._keys is not None
        expected = hmac.digest(self._keys.server_key, self._auth_message, "sha1")
        if not server_final.startswith(b"v=") or base64.b64decode(server_final[2:]) != expected:
            raise ScramError("server signature does not verify")


def plain_message(user: str, pw: str) -> bytes:
    return f"\0{user}\0{pw}".encode()
