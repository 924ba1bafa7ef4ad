"""Option models of the credential providers, and `ProviderConfig` (`[auth.provider]`).

This module owns what an operator may write about credential providers and
the checks that can be made without touching the network: URL schemes, a
password that would cross the network unencrypted, a DN template without
`{user}`.  It builds nothing and imports no provider.

Each provider owns its option model; `ProviderConfig` gathers the built-in
ones so that `chatgate check` prints them, and keeps the tables of
third-party providers (entry points) under `plugins` for their own model to
validate.  Only the table of the chosen provider is read.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "ExtauthProviderOptions",
    "HttpProviderOptions",
    "LdapProviderOptions",
    "ProviderConfig",
    "is_loopback_host",
]

Seconds = Annotated[float, Field(gt=0, le=300)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: traffic that never leaves the machine."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpProviderOptions(_Options):
    """`[auth.provider.http]`: ask an operator's HTTP service whether a password is right.

    The service receives `POST url` with the JSON object
    `{"user": "alice", "server": "example.org", "password": "..."}` and answers
    2xx with `{"result": true}` (right) or `{"result": false}` (wrong); 401
    and 403 also mean "wrong".  Anything else (other statuses, a body that is
    not that JSON object, no answer within `timeout`) means the service is
    unavailable, and the client gets temporary-auth-failure.
    """

    url: str
    """Required. The password-check endpoint (`https://...`; `http://` only to a loopback
    address unless `allow_cleartext`)."""
    exists_url: str | None = None
    """Endpoint answering whether an account exists: `POST {"user", "server"}` ->
    `{"result": bool}`. Unset: the provider cannot say, and callers that ask get an error."""
    timeout: Seconds = 5.0
    """Seconds for one request, connection included; slower means unavailable."""
    cache_ttl: Annotated[float, Field(ge=0)] = 300.0
    """Seconds a successful check is remembered (0: never). A password changed at the
    service keeps working here for up to this long. Failures are never remembered."""
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Accounts whose last successful password (a keyed hash of it, never the password)
    is remembered; the least recently used is forgotten first."""
    secret: SecretStr | None = None
    """Sent as `Authorization: Bearer <secret>` so the service knows the caller."""
    headers: dict[str, str] = {}
    """Extra request headers."""
    verify_tls: bool = True
    """Check the service's certificate. Turning this off lets anyone on the path read passwords."""
    ca_file: Path | None = None
    """PEM bundle trusted for the service's certificate instead of the system's
    (relative to the configuration file)."""
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Concurrent connections to the service."""
    allow_cleartext: bool = False
    """Allow `http://` to a host that is not loopback: passwords then cross the network
    unencrypted."""

    @field_validator("url", "exists_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not name or any(c in name + value for c in "\r\n"):
                raise ValueError(f"invalid header {name!r}")
        return headers

    @model_validator(mode="after")
    def _encrypted_unless_loopback(self) -> HttpProviderOptions:
        for url in (self.url, self.exists_url):
            if url is None or self.allow_cleartext:
                continue
            parts = urlsplit(url)
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                raise ValueError(
                    f"{url}: passwords would cross the network unencrypted; use https:// "
                    "(or set allow_cleartext = true)"
                )
        if self.secret is not None and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("set either secret or an Authorization header, not both")
        return self


class ExtauthProviderOptions(_Options):
    """`[auth.provider.extauth]`: ejabberd's external authentication program protocol.

    The program runs as long as the server does; it reads 2-byte big-endian
    length-prefixed requests (`auth:User:Server:Password`,
    `isuser:User:Server`, `setpass:User:Server:Password`) on stdin and
    answers each with `00 02 00 01` (true) or `00 02 00 00` (false) on stdout.
    """

    command: list[str]
    """Required. The program and its arguments (no shell). A relative program path that
    contains `/` is relative to the configuration file."""
    timeout: Seconds = 5.0
    """Seconds for one request, waiting for a free instance included. A program that does
    not answer in time is killed and restarted."""
    instances: Annotated[int, Field(ge=1, le=64)] = 1
    """Copies of the program run at once; each answers one request at a time."""
    restart_delay: Annotated[float, Field(ge=0, le=60)] = 0.5
    """Seconds before restarting a program that died or was killed; doubled after each
    consecutive failure."""
    max_restart_delay: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """Upper bound of the doubling restart delay."""
    environment: dict[str, str] = {}
    """Variables added to the program's environment (which is otherwise the server's)."""

    @field_validator("command")
    @classmethod
    def _non_empty(cls, command: list[str]) -> list[str]:
        if not command or not command[0]:
            raise ValueError("must name a program")
        return command


class LdapProviderOptions(_Options):
    """`[auth.provider.ldap]`: check passwords with an LDAP simple bind.

    Two ways to find the user's entry: `bind_dn_template` builds the DN from
    the username and binds with it directly; or `base_dn` + `user_filter`
    searches for exactly one entry (as the service account `bind_dn`, or
    anonymously) and binds with the DN found.  An empty password never
    succeeds (RFC 4513 §5.1.2: a name with an empty password is an
    unauthenticated bind, which many servers accept).
    """

    uri: str
    """Required. `ldap://host[:port]` or `ldaps://host[:port]`."""
    start_tls: bool = False
    """Upgrade an `ldap://` connection with StartTLS (RFC 4511 §4.14) before binding."""
    verify_tls: bool = True
    """Check the server's certificate (ldaps:// and StartTLS)."""
    ca_file: Path | None = None
    """PEM bundle trusted for the server's certificate (relative to the configuration file)."""
    timeout: Seconds = 5.0
    """Seconds for one check in total; each network operation also times out after this."""
    bind_dn_template: str | None = None
    """Bind as the user with this DN, e.g. `uid={user},ou=people,dc=example,dc=org`
    (`{user}` and `{server}` are escaped per RFC 4514)."""
    base_dn: str | None = None
    """Search under this DN for the user's entry (instead of `bind_dn_template`)."""
    user_filter: str = "(uid={user})"
    """Search filter (RFC 4515); `{user}` and `{server}` are escaped. Must match one entry."""
    scope: Literal["sub", "one"] = "sub"
    """Search the whole subtree under `base_dn`, or only its direct children."""
    bind_dn: str | None = None
    """Service account that searches (unset: search anonymously)."""
    bind_password: SecretStr | None = None
    """Password of `bind_dn`."""
    pool_size: Annotated[int, Field(ge=1, le=256)] = 8
    """Worker threads doing LDAP operations; more concurrent checks wait for one."""
    allow_cleartext: bool = False
    """Allow `ldap://` without StartTLS to a host that is not loopback: passwords then cross
    the network unencrypted."""

    @field_validator("uri")
    @classmethod
    def _ldap_uri(cls, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError("must be an ldap:// or ldaps:// URI with a host")
        if parts.path not in ("", "/"):
            raise ValueError("must not have a path: set base_dn or bind_dn_template")
        return uri

    @model_validator(mode="after")
    def _consistent(self) -> LdapProviderOptions:
        if (self.bind_dn_template is None) == (self.base_dn is None):
            raise ValueError("set exactly one of bind_dn_template and base_dn")
        if self.bind_dn_template is not None and "{user}" not in self.bind_dn_template:
            raise ValueError("bind_dn_template must contain {user}")
        if self.base_dn is not None:
            if "{user}" not in self.user_filter:
                raise ValueError("user_filter must contain {user}")
            if not (self.user_filter.startswith("(") and self.user_filter.endswith(")")):
                raise ValueError("user_filter must be a parenthesized LDAP filter")
        if (self.bind_dn is None) != (self.bind_password is None):
            raise ValueError("bind_dn and bind_password go together")
        if self.bind_password is not None and not self.bind_password.get_secret_value():
            raise ValueError("bind_password must not be empty (that would be an anonymous bind)")
        parts = urlsplit(self.uri)
        if parts.scheme == "ldaps" and self.start_tls:
            raise ValueError("start_tls is for ldap://; ldaps:// is already encrypted")
        if (
            parts.scheme == "ldap"
            and not self.start_tls
            and not self.allow_cleartext
            and not is_loopback_host(parts.hostname)
        ):
            raise ValueError(
                f"{self.uri}: passwords would cross the network unencrypted; use ldaps://, "
                "start_tls = true (or set allow_cleartext = true)"
            )
        return self


class ProviderConfig(_Options):
    """`[auth.provider]`: where authentication gets its answers.

    `name` picks a registered provider: `internal` (this server's
    database), `http`, `extauth`, `ldap`, or one added by a package
    through the `chatgate.credential_providers` entry-point group, whose
    options go in `[auth.provider.plugins.NAME]`.
    """

    name: str = "internal"
    """The credential provider: `internal`, `http`, `extauth`, `ldap` or a plugin's name."""
    http: HttpProviderOptions | None = None
    """Options of the `http` provider (required when it is chosen)."""
    extauth: ExtauthProviderOptions | None = None
    """Options of the `extauth` provider (required when it is chosen)."""
    ldap: LdapProviderOptions | None = None
    """Options of the `ldap` provider (required when it is chosen)."""
    plugins: dict[str, dict[str, Any]] = {}
    """Options of third-party providers, `[auth.provider.plugins.NAME]`; each provider
    validates its own table."""

    @model_validator(mode="after")
    def _chosen_section_present(self) -> ProviderConfig:
        builtin_sections = set(type(self).model_fields) - {"name", "plugins"}
        if self.name in builtin_sections and getattr(self, self.name) is None:
            raise ValueError(
                f"the table auth.provider.{self.name} is required when name = {self.name!r}"
            )
        clash = builtin_sections.intersection(self.plugins)
        if clash:
            raise ValueError(f"plugins.{min(clash)}: a built-in provider's options go elsewhere")
        return self
