"""Accounts of the internal store, one service for every way in (issue 13).

The command line (`chatgate user`, `invite`, `registration`), in-band registration
(`modules/register.py`) and the admin API create, change, lock and delete accounts
through `AccountService` (`service.py`), and nowhere else, so the rules (the account
policy, who holds a name, what a password stores, what a deletion takes, who must
learn of a change) live in one place.  `notify.py` carries changes to every
process's credential caches; `server.py` is the service's side inside a server.
"""

from __future__ import annotations

from chatgate.accounts.errors import AccountError, NameTaken, NoSuchAccount
from chatgate.accounts.notify import (
    ChangeKind,
    CredentialChange,
    CredentialsChanged,
    LocalCredentialsChanged,
)
from chatgate.accounts.service import (
    AccountInfo,
    AccountRules,
    AccountService,
    Deletion,
    LiveAccounts,
    PasswordRecipe,
    StoredPassword,
)
from chatgate.storage.repositories.accounts import NameHolder
from chatgate.storage.repositories.invitations import InviteUnavailable

__all__ = [
    "AccountError",
    "AccountInfo",
    "AccountRules",
    "AccountService",
    "ChangeKind",
    "CredentialChange",
    "CredentialsChanged",
    "Deletion",
    "InviteUnavailable",
    "LiveAccounts",
    "LocalCredentialsChanged",
    "NameHolder",
    "NameTaken",
    "NoSuchAccount",
    "PasswordRecipe",
    "StoredPassword",
]
