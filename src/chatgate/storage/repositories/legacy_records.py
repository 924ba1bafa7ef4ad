"""The plain records of `LegacyRepository` and their (de)serialization.

Pure code: no SQL, no clock.  `legacy.py` re-exports the records, so callers
import from there; the serialization is for the repositories that store
secrets (`legacy.py`, and `pending_registrations.py` until approval).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chatgate.auth.credentials import ScramKeys

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


#: one account to create or update in bulk, with the legacy secrets of its password
AccountWithSecrets = tuple[str, str, Mapping[str, ScramKeys], LegacySecrets]


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


def binding_digest(salts: Iterable[tuple[str, bytes]]) -> str:
    """What a legacy-secrets row is bound to: SHA-256 over the (hash name, salt) pairs
    of the account's SCRAM keys, in hash-name order.  Every password set draws new
    salts, so a row written for an earlier password no longer matches."""
    digest = hashlib.sha256()
    for hash_name, salt in sorted(salts):
        digest.update(f"{hash_name}:{len(salt)}:".encode() + bytes(salt))
    return digest.hexdigest()
