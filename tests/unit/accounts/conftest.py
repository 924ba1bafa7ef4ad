"""Fixtures for the account service: a fresh SQLite database file per test, and a
notifier that records what it is told."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chatgate.accounts import (
    AccountRules,
    AccountService,
    CredentialChange,
    LiveAccounts,
    PasswordRecipe,
)
from chatgate.auth.policy import AccountPolicy
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.storage.database import Database

#: few PBKDF2 iterations: these tests are about what is stored, not its cost
RULES = AccountRules(
    AccountPolicy(min_password_length=8),
    PasswordRecipe(4096, LegacyAuthOptions(digest=True, zero_knowledge=True)),
)


@dataclass
class Recorder:
    """A `CredentialsChanged` that remembers every change it was told of."""

    changes: list[CredentialChange] = field(default_factory=list)

    async def credentials_changed(self, change: CredentialChange) -> None:
        self.changes.append(change)

    @property
    def kinds(self) -> list[str]:
        return [c.kind.value for c in self.changes]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_service(
    db: Database, recorder: Recorder, live: LiveAccounts | None = None
) -> AccountService:
    return AccountService(db, RULES, recorder, live=live)


@pytest.fixture
def service(db: Database, recorder: Recorder) -> AccountService:
    return make_service(db, recorder)
