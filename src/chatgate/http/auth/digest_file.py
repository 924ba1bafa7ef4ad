"""`digestfile`: Digest against an `admin.password` file (Wowza's format, see
`password_file.py`), whose hashes are H(username:realm:password) in the file's
`password_encoding`: the challenge offers that one algorithm (MD5 or SHA-256).

The file is re-read when it changes.  Lines that hold no digest hash (bcrypt,
plaintext: `basic`'s) cannot log in here; trying is refused and logged.
"""

from __future__ import annotations

import logging

from chatgate.http.auth.password_file import PasswordFile

__all__ = ["FileSecrets"]

log = logging.getLogger("chatgate.http.auth")


class FileSecrets:
    """`DigestSecrets` of a password file hashed with `algorithm` under its realm."""

    def __init__(self, file: PasswordFile, algorithm: str) -> None:
        self.file = file
        self.algorithm = algorithm

    async def secret(self, username: str, algorithm: str) -> tuple[str, frozenset[str]] | None:
        entry = self.file.get(username)
        if entry is None or algorithm != self.algorithm:
            return None
        kind = entry.kind(self.algorithm)
        if kind != "digest":
            log.warning(
                "admin: digest login of %s refused: %s:%d holds a %s password, not a %s"
                " digest hash ([admin] password_encoding)",
                username,
                self.file.path,
                entry.line,
                kind,
                self.algorithm,
            )
            return None
        return entry.secret.lower(), entry.groups
