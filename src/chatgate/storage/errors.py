"""Errors the repositories raise for the caller's mistakes (not for database failures).

Database failures (disk full, locked too long, connection lost) surface as the
driver's SQLAlchemy exceptions; these classes only name the outcomes a caller
is expected to handle.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of the outcomes below."""


class AccountExists(StorageError):
    """`create` was asked for a username@domain that already has an account."""

    def __init__(self, username: str, domain: str) -> None:
        super().__init__(f"{username}@{domain} already exists")
        self.username = username
        self.domain = domain


class AccountNotFound(StorageError):
    """A write named an account that does not exist (reads answer empty instead)."""

    def __init__(self, username: str, domain: str) -> None:
        super().__init__(f"{username}@{domain} does not exist")
        self.username = username
        self.domain = domain
