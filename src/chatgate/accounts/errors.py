"""What the account service refuses, named for who is at fault (the caller asked for
a name that is taken, or for an account that does not exist).  Transports map them
to their own answers: an exit code, an XMPP stanza error, an HTTP status."""

from __future__ import annotations

from chatgate.storage.repositories.accounts import NameHolder


class AccountError(Exception):
    """Base class of the account service's refusals."""

    def __init__(self, message: str, username: str, domain: str) -> None:
        super().__init__(message)
        self.username = username
        self.domain = domain


class NameTaken(AccountError):
    """A new account (or a registration awaiting approval) was asked for a name that
    something holds: `holder` says what (None: it was held when the write ran and
    is free again now)."""

    def __init__(self, username: str, domain: str, holder: NameHolder | None) -> None:
        what = "taken" if holder is None else f"held by {holder.value}"
        super().__init__(f"{username}@{domain} is {what}", username, domain)
        self.holder = holder


class NoSuchAccount(AccountError):
    """A change named an account that does not exist (deleted meanwhile, perhaps)."""

    def __init__(self, username: str, domain: str) -> None:
        super().__init__(f"no such account {username}@{domain}", username, domain)
