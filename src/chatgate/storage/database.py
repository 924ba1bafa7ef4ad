"""The open database: one engine, migrated to the newest schema, and its repositories.

`Database.open(url)` is the only way in: it creates the engine (and the
folder of a SQLite file), upgrades the schema, and builds the repositories,
one per aggregate.  Callers use the repositories; nothing outside `storage/`
sees the engine except tests.  A write that spans aggregates (creating an
account with its secrets and redeeming an invitation, approving a pending
registration) is one method of one repository, which calls the others'
connection-level functions inside its own transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import create_engine, is_postgresql
from chatgate.storage.migrate import migrate, upgrade
from chatgate.storage.repositories import (
    AccountRepository,
    OfflineRepository,
    RosterRepository,
    VCardRepository,
)
from chatgate.storage.repositories.admin import (
    AdminTokenRepository,
    AdminUserRepository,
    AuditRepository,
    ConsoleSessionRepository,
)
from chatgate.storage.repositories.invitations import InvitationRepository
from chatgate.storage.repositories.legacy import LegacyRepository
from chatgate.storage.repositories.legacy_census import LegacyCensusRepository
from chatgate.storage.repositories.pending_registrations import PendingRegistrationRepository
from chatgate.storage.repositories.registration import RegistrationRepository
from chatgate.storage.repositories.secrets import SecretStore, SqlSecretStore
from chatgate.storage.repositories.streams import (
    LiveSessionRepository,
    StreamKeyRepository,
    StreamRuleRepository,
    TokenRevocationRepository,
    TokenUseRepository,
)


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.accounts = AccountRepository(engine)
        self.roster = RosterRepository(engine)
        self.offline = OfflineRepository(engine)
        self.vcards = VCardRepository(engine)
        #: XEP-0078 and DIGEST-MD5 secrets; password changes that replace them
        self.legacy = LegacyRepository(engine)
        self.legacy_census = LegacyCensusRepository(engine)
        #: accounts created as registration does (name claims, invitations redeemed),
        #: and the XEP-0077 fields they gave
        self.registration = RegistrationRepository(engine)
        #: registrations held for approval
        self.pending_registrations = PendingRegistrationRepository(engine)
        #: invitation tokens (XEP-0401/0445)
        self.invitations = InvitationRepository(engine)
        #: installation secrets, the same for every process on this database
        self.secrets: SecretStore = SqlSecretStore(engine)
        #: the stream authority's state (`chatgate.streams.state` builds its stores on these)
        self.stream_keys = StreamKeyRepository(engine)
        self.stream_rules = StreamRuleRepository(engine)
        self.stream_token_uses = TokenUseRepository(engine)
        self.stream_token_revocations = TokenRevocationRepository(engine)
        self.live_sessions = LiveSessionRepository(engine)
        #: administration (`chatgate.http.auth`, `.console`, `.api`)
        self.admin_users = AdminUserRepository(engine)
        self.admin_tokens = AdminTokenRepository(engine)
        self.console_sessions = ConsoleSessionRepository(engine)
        self.audit = AuditRepository(engine)

    @classmethod
    async def open(cls, url: str) -> Database:
        """Connect to `url` and upgrade its schema to the newest migration.

        Raises `StorageUnavailable` when the database server cannot be reached,
        SQLAlchemy's errors when the database cannot be migrated.
        """
        if is_postgresql(url):
            # on a connection of its own, without the statement time limit
            await migrate(url)
            return cls(create_engine(url))
        engine = create_engine(url)
        try:
            await upgrade(engine)  # the same engine: a memory database is per engine
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()
