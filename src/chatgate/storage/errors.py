"""Errors the repositories raise: the caller's mistakes, and the database out of reach.

`StorageUnavailable` is raised (by the engine's error hook, `chatgate.storage.engine`)
for every failure to reach the database server or to keep talking to it:
connection refused or timed out, the server shutting down or restarting, a
connection lost mid-transaction, a statement past its time limit.  What was not
committed is rolled back by the server; the pool replaces its connections when the
server is back.  Other database failures (disk full, a constraint nobody expected)
surface as the driver's SQLAlchemy exceptions.
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


class StorageUnavailable(StorageError):
    """The database server cannot be reached now.  The failed call's transaction
    was not committed (the server rolls it back), unless the connection broke
    during COMMIT itself, when no client can know.  A login answers
    temporary-auth-failure; a later call may succeed."""
