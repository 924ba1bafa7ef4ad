"""`basic`: RFC 7617 Basic against the administrators chatgate keeps (Argon2id,
or bcrypt as imported), and, with `[admin] basic_password_file`, the password
file's lines too: bcrypt hashes, digest hashes (H(name:realm:password) under
`[admin] realm`, so a `digestfile` file serves Basic as well) and, only with
`allow_plaintext_passwords` (warned about at start), plaintext passwords.

A password travels with every request: over plain HTTP it is accepted from
loopback clients only, unless `allow_plain_http`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from chatgate.http.auth.admins import AdminAccounts, bounded_check
from chatgate.http.auth.base import AuthRequest, Principal, Refusal
from chatgate.http.auth.digest_core import ha1
from chatgate.http.auth.login import AdminLogin, plain_http_refusal
from chatgate.http.auth.password_file import PasswordFile
from chatgate.http.auth.passwords import MAX_PASSWORD_BYTES, check_password, equal_text

__all__ = ["BasicMethod"]


class BasicMethod:
    name = "basic"
    schemes = frozenset({"basic"})

    def __init__(
        self,
        accounts: AdminAccounts,
        login: AdminLogin,
        *,
        realm: str,
        allow_plain_http: bool,
        file: PasswordFile | None = None,
        file_algorithm: str = "SHA-256",
        allow_plaintext: bool = False,
    ) -> None:
        self.accounts = accounts
        self.login = login
        self.realm = realm
        self.allow_plain_http = allow_plain_http
        self.file = file
        self.file_algorithm = file_algorithm
        self.allow_plaintext = allow_plaintext
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        self._challenge = (f'Basic realm="{escaped}", charset="UTF-8"',)

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        return self._challenge

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        refusal = plain_http_refusal(request, self.allow_plain_http)
        if refusal is not None:
            return refusal
        _, _, encoded = (request.authorization or "").strip().partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return Refusal(401, "malformed basic credentials", self._challenge)
        name, colon, password = decoded.partition(":")
        if not colon or len(password.encode()) > MAX_PASSWORD_BYTES:
            return Refusal(401, "malformed basic credentials", self._challenge)

        warm = await self.accounts.proven(name, password)
        if warm is not None:  # proven before, unchanged since: not a guess
            return Principal(name, frozenset(warm.groups), self.name)

        async def verify() -> Principal | None:
            return await self._verify(name, password)

        async def challenges() -> Sequence[str]:
            return self._challenge

        return await self.login.check(request, name, verify, challenges)

    async def _verify(self, name: str, password: str) -> Principal | None:
        row = await self.accounts.verify(name, password)
        if row is not None:
            return Principal(name, frozenset(row.groups), self.name)
        if self.file is None:
            return None
        entry = self.file.get(name)
        if entry is None or await self.accounts.get(name) is not None:
            return None  # a stored administrator is never also checked against the file
        kind = entry.kind(self.file_algorithm)
        if kind == "bcrypt":
            right = await bounded_check(check_password, entry.secret, password)
        elif kind == "digest":
            right = equal_text(
                ha1(self.file_algorithm, name, self.realm, password), entry.secret.lower()
            )
        else:
            right = self.allow_plaintext and equal_text(entry.secret, password)
        return Principal(name, entry.groups, self.name) if right else None

    async def close(self) -> None:
        return None
