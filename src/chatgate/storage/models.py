"""SQLAlchemy declarative models: the tables, and nothing else.

The schema is owned by the Alembic migrations in `migrations/versions`; these
models must describe exactly what the migrations create (a unit test compares
them).  No ORM object leaves `storage/`: repositories return `records`.

Every per-account table references `accounts.id` with ON DELETE CASCADE, so
deleting an account removes its credentials, roster, pending requests, offline
messages and vCard in the same statement.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.storage.declarative import (
    NAMING_CONVENTION,
    Base,
    RowId,
    UTCDateTime,
    _account_fk,
    utcnow,
)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("username", "domain"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(1023))  # PRECIS-enforced localpart
    domain: Mapped[str] = mapped_column(String(1023))
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: made by an ANONYMOUS login: deleted with its last session, or at the next start
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: locked by an administrator (migration 0007): it keeps everything it owns, but
    #: no login succeeds (`auth/internal.py`) until it is unlocked
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ScramCredential(Base):
    """One hash's SCRAM keys (RFC 5802 §3) for an account; never a password."""

    __tablename__ = "scram_credentials"
    __table_args__ = (UniqueConstraint("account_id", "hash_name"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, _account_fk())
    hash_name: Mapped[str] = mapped_column(String(16))  # hashlib name: sha1, sha256, sha512
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    iterations: Mapped[int] = mapped_column(Integer)
    stored_key: Mapped[bytes] = mapped_column(LargeBinary)
    server_key: Mapped[bytes] = mapped_column(LargeBinary)


class RosterEntry(Base):
    """One contact in an account's roster (RFC 6121 §2.1.2)."""

    __tablename__ = "roster_items"
    __table_args__ = (UniqueConstraint("account_id", "contact_jid"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, _account_fk())
    contact_jid: Mapped[str] = mapped_column(String(3071))
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    subscription: Mapped[str] = mapped_column(String(8))  # Subscription value
    ask: Mapped[bool] = mapped_column(Boolean)
    approved: Mapped[bool] = mapped_column(Boolean)
    groups: Mapped[str] = mapped_column(Text)  # JSON array of group names


class SubscriptionRequest(Base):
    """A pending inbound subscription request ("pending in", RFC 6121 §3.1.3)."""

    __tablename__ = "subscription_requests"
    __table_args__ = (UniqueConstraint("account_id", "contact_jid"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, _account_fk())
    contact_jid: Mapped[str] = mapped_column(String(3071))
    status: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RosterVersion(Base):
    """The account's roster version (RFC 6121 §2.6), bumped by every roster change."""

    __tablename__ = "roster_versions"

    account_id: Mapped[int] = mapped_column(RowId, _account_fk(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class OfflineStanza(Base):
    """A message stored for an account with no available resource (XEP-0160)."""

    __tablename__ = "offline_messages"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, _account_fk(), index=True)
    #: bare JID of the sender, for its share of the quota ("" when stored before 0005)
    sender: Mapped[str] = mapped_column(String(3071), server_default="")
    #: UTF-8 bytes of `stanza`, what the byte quotas count (escaping makes it
    #: larger than the stanza as it arrived)
    size: Mapped[int] = mapped_column(Integer, server_default="0")
    stanza: Mapped[str] = mapped_column(Text)
    stamp: Mapped[datetime] = mapped_column(UTCDateTime())


class VCardDocument(Base):
    """The account's vcard-temp document (XEP-0054), serialized."""

    __tablename__ = "vcards"

    account_id: Mapped[int] = mapped_column(RowId, _account_fk(), primary_key=True)
    xml: Mapped[str] = mapped_column(Text)


# ---------------------------------------------------------------- in-band registration
# and legacy authentication (XEP-0077, XEP-0078, DIGEST-MD5); see repositories/registration.py,
# pending_registrations.py, invitations.py and legacy.py


class LegacySecret(Base):
    """Secrets that only legacy methods need, each stored only when configured.

    `digest_password` (XEP-0078 digest) and `digest_md5_ha1` (DIGEST-MD5's
    H(user:realm:password)) are plaintext-equivalent: whoever reads them can log
    in.  The zero-knowledge columns hold a hash chain, not a password.
    """

    __tablename__ = "legacy_secrets"

    account_id: Mapped[int] = mapped_column(RowId, _account_fk(), primary_key=True)
    digest_password: Mapped[str | None] = mapped_column(Text, nullable=True)
    digest_md5_realm: Mapped[str | None] = mapped_column(String(1023), nullable=True)
    digest_md5_ha1: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    zk_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    zk_sequence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    zk_hash: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: SHA-256 over the account's SCRAM salts when these secrets were stored: a
    #: password set elsewhere (CLI, admin API) gives new salts, and stale secrets
    #: are then ignored instead of letting the old password in
    scram_binding: Mapped[str] = mapped_column(String(64))


class RegistrationField(Base):
    """One XEP-0077 registration field (name, email, ...) the account gave."""

    __tablename__ = "registration_fields"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, _account_fk())
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)


class PendingRegistration(Base):
    """A registration waiting for an administrator's approval (no account yet)."""

    __tablename__ = "pending_registrations"
    __table_args__ = (UniqueConstraint("username", "domain"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(1023))
    domain: Mapped[str] = mapped_column(String(1023))
    secrets: Mapped[str] = mapped_column(Text)  # JSON: SCRAM keys and legacy secrets
    fields: Mapped[str] = mapped_column(Text)  # JSON object of registration fields
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RegistrationInvite(Base):
    """An invitation token (XEP-0401/0445), kept as its SHA-256, never in clear."""

    __tablename__ = "registration_invites"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(1023))
    username: Mapped[str | None] = mapped_column(String(1023), nullable=True)
    uses_left: Mapped[int] = mapped_column(Integer)
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InstallationSecret(Base):
    """A secret of the whole installation (e.g. the key of unknown users' decoy
    answers), made once and shared by every server process on this database
    (migration 0004; see repositories/secrets.py)."""

    __tablename__ = "installation_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# ---------------------------------------------------------------- the stream authority
# (migration 0006; see repositories/streams.py and chatgate.streams.stores)


class StreamKey(Base):
    """An account's stream key: found by its keyed hash, kept encrypted for the one
    adapter that must send it back (Wowza's token provider); never in clear."""

    __tablename__ = "stream_keys"

    account_id: Mapped[int] = mapped_column(RowId, _account_fk(), primary_key=True)
    #: HMAC-SHA-256 of the key under the installation's pepper: the look-up index
    digest: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    #: the digest's first 9 bytes in hex: logged, recorded with live sessions
    key_id: Mapped[str] = mapped_column(String(18))
    #: AES-256-GCM nonce (12 bytes) + ciphertext + tag, the account as associated data
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StreamRule(Base):
    """A stream rule added at run time, in its text form; ids keep the order added."""

    __tablename__ = "stream_rules"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(1024), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StreamTokenUse(Base):
    """A one-time token already used, by whom, kept until the token expires."""

    __tablename__ = "stream_token_uses"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    #: Unix seconds (uint32 in the token: wider than PostgreSQL's integer)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class StreamTokenRevocation(Base):
    """A stream token revoked before it expires, kept until it would have expired."""

    __tablename__ = "stream_token_revocations"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class LiveSession(Base):
    """A live publication or viewing as last saved from the live registry (its
    snapshot), so a restart does not forget who is publishing."""

    __tablename__ = "live_sessions"
    __table_args__ = (UniqueConstraint("kind", "stream", "node", "client_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))  # "publish" or "play"
    stream: Mapped[str] = mapped_column(String(255))
    #: the publisher or viewer (bare JID or a token's user); None when unknown
    identity: Mapped[str | None] = mapped_column(String(2047), nullable=True)
    client_id: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    credential: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[float] = mapped_column(Float)  # Unix seconds
    last_seen: Mapped[float] = mapped_column(Float)
    confirmed: Mapped[bool] = mapped_column(Boolean)


class AdminUser(Base):
    """An administrator chatgate keeps for the API and console (`basic`, `digest`)."""

    __tablename__ = "admin_users"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    digest_realm: Mapped[str | None] = mapped_column(String(255), nullable=True)
    digest_md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    digest_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    groups: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)


class AdminToken(Base):
    """A bearer token for automation: only the hash of its secret is kept."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(String(64))
    groups: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AdminConsoleSession(Base):
    """A web console login (its cookie's hash), ended by logout or idle timeout."""

    __tablename__ = "admin_console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin: Mapped[str] = mapped_column(String(255))
    groups: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(32))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[int] = mapped_column(BigInteger, index=True)
    #: what the login is shown once on its next page, sealed (migration 0011)
    pending: Mapped[str | None] = mapped_column(Text, nullable=True)


class AdminAuditEntry(Base):
    """One change made through the API, the console or the admin CLI."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


# Features' tables live in modules of their own, on the same `Base`; importing them
# here puts them in the metadata the migrations are compared with.
import chatgate.storage.tables_archive  # noqa: E402
import chatgate.storage.tables_blocking  # noqa: E402
import chatgate.storage.tables_pubsub  # noqa: E402
import chatgate.storage.tables_rooms  # noqa: E402
import chatgate.storage.tables_uploads  # noqa: E402, F401

#: what this module offers besides its tables (the base and column types, from
#: `declarative.py`, where the feature modules take them)
__all__ = ["NAMING_CONVENTION", "Base", "RowId", "UTCDateTime", "utcnow"]
