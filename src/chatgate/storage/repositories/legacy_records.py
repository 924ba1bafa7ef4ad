"""The plain records of `LegacyRepository` and their (de)serialization.

Pure code: no SQL, no clock (expiry checks take `now`).  `legacy.py` re-exports
every public name, so callers import from there.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.errors import StorageError

# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ZeroKnowledgeChain:
    """XEP-0078 (pre-2.0) / jabberd ``mod_auth_0k`` state: `hash` is SHA-1 applied
    `sequence` times to hash0 = SHA1(SHA1(password) + token), all in lowercase hex."""

    token: str
    sequence: int
    hash: str


@dataclass(frozen=True, slots=True)
class DigestMd5Secret:
    """RFC 2831 §2.1.2.1: H({ username-value, ":", realm-value, ":", passwd }) (16 bytes)."""

    realm: str
    ha1: bytes


@dataclass(frozen=True, slots=True)
class LegacySecrets:
    """The legacy secrets of one account; None where not stored."""

    digest_password: str | None = None
    digest_md5: DigestMd5Secret | None = None
    zero_knowledge: ZeroKnowledgeChain | None = None


@dataclass(frozen=True, slots=True)
class PendingAccount:
    """A registration waiting for approval (what an administrator sees)."""

    username: str
    domain: str
    fields: dict[str, str]
    address: str | None
    created: datetime


@dataclass(frozen=True, slots=True)
class Invite:
    """A usable invitation: `username` is the name it reserves, if any."""

    domain: str
    username: str | None
    uses_left: int
    expires: datetime | None


@dataclass(frozen=True, slots=True)
class StoredInvite:
    """An invitation as an administrator sees it, usable or not.  The token itself
    is not stored: `token_hash` (hex SHA-256) identifies it."""

    token_hash: str
    domain: str
    username: str | None
    uses_left: int
    expires: datetime | None
    created: datetime

    def usable(self, now: datetime) -> bool:
        return invite_usable(Invite(self.domain, self.username, self.uses_left, self.expires), now)


#: one account to create or update in bulk, with the legacy secrets of its password
AccountWithSecrets = tuple[str, str, Mapping[str, ScramKeys], LegacySecrets]


class InviteUnavailable(StorageError):
    """The invitation is unknown, used up or expired (it may have been used meanwhile)."""


def invite_hash(token: str) -> str:
    """How a token is stored and looked up: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- (de)serialization


def secret_values(secrets: LegacySecrets) -> dict[str, Any]:
    md5, zk = secrets.digest_md5, secrets.zero_knowledge
    return {
        "digest_password": secrets.digest_password,
        "digest_md5_realm": None if md5 is None else md5.realm,
        "digest_md5_ha1": None if md5 is None else md5.ha1,
        "zk_token": None if zk is None else zk.token,
        "zk_sequence": None if zk is None else zk.sequence,
        "zk_hash": None if zk is None else zk.hash,
    }


def secrets_from_row(row: Any) -> LegacySecrets:
    digest_password, realm, ha1, token, sequence, zk_hash = row
    md5 = None if realm is None or ha1 is None else DigestMd5Secret(realm, bytes(ha1))
    zk = None
    if token is not None and sequence is not None and zk_hash is not None:
        zk = ZeroKnowledgeChain(token, sequence, zk_hash)
    return LegacySecrets(digest_password, md5, zk)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pending_json(credentials: Mapping[str, ScramKeys], secrets: LegacySecrets) -> str:
    values = secret_values(secrets)
    if values["digest_md5_ha1"] is not None:
        values["digest_md5_ha1"] = _b64(values["digest_md5_ha1"])
    return json.dumps(
        {
            "scram": {
                name: {
                    "salt": _b64(k.salt),
                    "iterations": k.iterations,
                    "stored_key": _b64(k.stored_key),
                    "server_key": _b64(k.server_key),
                }
                for name, k in credentials.items()
            },
            "legacy": values,
        }
    )


def from_pending_json(text: str) -> tuple[dict[str, ScramKeys], LegacySecrets]:
    data = json.loads(text)
    credentials = {
        name: ScramKeys(
            name,
            base64.b64decode(k["salt"]),
            int(k["iterations"]),
            base64.b64decode(k["stored_key"]),
            base64.b64decode(k["server_key"]),
        )
        for name, k in data["scram"].items()
    }
    legacy = data["legacy"]
    ha1 = legacy["digest_md5_ha1"]
    row = (
        legacy["digest_password"],
        legacy["digest_md5_realm"],
        None if ha1 is None else base64.b64decode(ha1),
        legacy["zk_token"],
        legacy["zk_sequence"],
        legacy["zk_hash"],
    )
    return credentials, secrets_from_row(row)


def binding_digest(salts: Iterable[tuple[str, bytes]]) -> str:
    """What a legacy-secrets row is bound to: SHA-256 over the (hash name, salt) pairs
    of the account's SCRAM keys, in hash-name order.  Every password set draws new
    salts, so a row written for an earlier password no longer matches."""
    digest = hashlib.sha256()
    for hash_name, salt in sorted(salts):
        digest.update(f"{hash_name}:{len(salt)}:".encode() + bytes(salt))
    return digest.hexdigest()


def invite_usable(invite: Invite, now: datetime) -> bool:
    """Uses left and not expired at `now`."""
    return invite.uses_left > 0 and (invite.expires is None or invite.expires > now)
