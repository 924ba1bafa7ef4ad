"""`[admin]`: the REST API (`/api/v1`), the web console (`/admin/`) and
`/metrics`, on the HTTP listener, and how their users authenticate.

Methods are those of Wowza's `AuthenticationMethod` (seed 003) plus bearer
tokens: `basic` and `digest` check administrators chatgate keeps (`chatgate
admin user ...`), `digestfile` an `admin.password` file, `remotehttp` relays
the client's digest exchange to the operator's service, `bearer` tokens for
automation, and `none` (explicit flag, loopback listener only).  A route set
takes the methods listed; a request's `Authorization` scheme picks the one that
answers it, and a request without one is challenged by each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

Method = Literal["basic", "digest", "digestfile", "remotehttp", "bearer", "none"]
Group = Literal["admin", "advUser", "readOnly"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RemoteHttpOptions(_Model):
    """`remotehttp`: the seed's `AuthenticationURL*` properties."""

    url: str | None = None
    """The operator's service (`AuthenticationURL`), http or https."""
    shared_secret: SecretStr | None = None
    """`AuthenticationURLSharedSecret`: hashed into `WowzaRemoteAuthHash`."""
    identity: str | None = None
    """`AuthenticationURLIdentity`: sent as `WowzaStreamingEngineIdentity`."""
    hash: Literal["md5", "sha256"] = "md5"
    """Hash of `WowzaRemoteAuthHash` = H(username + response + secret + URI)."""
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Seconds to wait for the service."""
    backup_file: bool = False
    """`AuthenticationURLBackupFile`: fall back to the digest file (`password_file`)
    on the conditions below."""
    backup_conditions: list[Literal["connect"] | Annotated[int, Field(ge=100, le=599)]] = [
        "connect"
    ]
    """`AuthenticationURLBackupFileConditions`: `connect` (the service cannot be
    reached) and/or HTTP statuses that send logins to the file."""
    backup_retry: Annotated[float, Field(ge=10)] = 30.0
    """`AuthenticationURLBackupFileRetry`, in seconds (≥ 10): how long the file is
    used before the service is asked again."""


class AdminOptions(_Model):
    enabled: bool = True
    """Serve the API, the console and `/metrics` on the HTTP listener (nobody can
    log in until an administrator exists: the setup wizard, or `chatgate admin user add`)."""
    auth: list[Method] = ["basic", "bearer"]
    """Authentication methods of every admin route, in the order challenges are sent."""
    api_auth: list[Method] | None = None
    """Methods of `/api/v1` only; unset: `auth`."""
    console_auth: list[Method] | None = None
    """Methods of the console's login (`/admin/login`); unset: `auth`."""
    metrics_auth: list[Method] | None = None
    """Methods of `/metrics`; unset: `auth`."""
    metrics_open_on_loopback: bool = False
    """Serve `/metrics` without authentication to loopback clients (a local Prometheus)."""
    realm: str = "chatgate"
    """Realm of challenges (`basic`, `digest`, `digestfile`); an imported Wowza
    `admin.password` was hashed with realm `Wowza`."""
    digest_algorithms: list[Literal["SHA-256", "MD5"]] = ["SHA-256", "MD5"]
    """RFC 7616 algorithms offered by `digest`, one challenge each, in this order."""
    nonce_lifetime: Annotated[float, Field(ge=10, le=86400)] = 300.0
    """Seconds a digest nonce is good for; after it the client is told `stale=true`."""
    password_file: Path = Path("admin.password")
    """`digestfile` (and `remotehttp`'s fallback): `username hash groups` per line,
    relative to the config file's folder."""
    password_encoding: Literal["md5", "sha256"] = "sha256"
    """Hash of the file's entries (Wowza's `PasswordEncodingScheme`)."""
    basic_password_file: bool = False
    """`basic`: also check the password file's lines (bcrypt hashes, digest hashes
    under `realm`; plaintext with `allow_plaintext_passwords`) for names chatgate
    does not keep."""
    allow_plaintext_passwords: bool = False
    """`basic`: accept plaintext entries of the password file (logged as a warning)."""
    allow_none: bool = False
    """Allow method `none` at all (and only on a loopback listener)."""
    allow_plain_http: bool = False
    """Accept credentials over plain HTTP from other than loopback clients (else 403:
    use HTTPS)."""
    remotehttp: RemoteHttpOptions = RemoteHttpOptions()
    """`[admin.remotehttp]`."""
    session_timeout: Annotated[float, Field(ge=60)] = 1800.0
    """Seconds a console login lasts without a request."""
    audit_retention_days: Annotated[int, Field(ge=1)] = 365
    """Days the audit log keeps an entry."""
    setup_wizard: Literal["loopback", "off"] = "loopback"
    """The first-run wizard (no administrator yet): served to loopback clients, or not at all."""

    @field_validator("auth", "api_auth", "console_auth", "metrics_auth")
    @classmethod
    def _one_digest(cls, methods: list[Method] | None) -> list[Method] | None:
        if methods is None:
            return None
        if not methods:
            raise ValueError("name at least one method")
        if len(set(methods)) != len(methods):
            raise ValueError("a method is listed twice")
        digests = [m for m in methods if m in ("digest", "digestfile", "remotehttp")]
        if len(digests) > 1:
            raise ValueError(f"{' and '.join(digests)} both answer Digest: choose one")
        return methods

    def methods_for(self, route_set: Literal["api", "console", "metrics"]) -> list[Method]:
        chosen = {"api": self.api_auth, "console": self.console_auth, "metrics": self.metrics_auth}
        return chosen[route_set] or self.auth
