"""Build a route set's `AuthChain` from the method names `[admin]` lists.

One builder per method name, listed in `builtin_methods()`; each checks its own
configuration and raises ConfigError naming what is wrong, so a bad combination
stops the server at start, never at the first request.  Methods that need a
secret shared by every process (digest nonces) take it from the installation
secrets (`db.secrets`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chatgate.http.auth.admins import AdminAccounts
from chatgate.http.auth.base import AuthChain, HttpAuthenticator
from chatgate.http.auth.basic import BasicMethod
from chatgate.http.auth.bearer import BearerMethod
from chatgate.http.auth.digest import NONCE_SECRET, AdminStoreSecrets, DigestMethod
from chatgate.http.auth.digest_core import ENCODINGS, NonceCodec
from chatgate.http.auth.digest_file import FileSecrets
from chatgate.http.auth.login import AdminLogin
from chatgate.http.auth.nonces import LocalNonceCounts, NonceCounts
from chatgate.http.auth.none import NoneMethod
from chatgate.http.auth.password_file import PasswordFile
from chatgate.http.auth.remote import RemoteHttpMethod
from chatgate.http.auth.tokens import BearerTokens
from chatgate.vocabulary.errors import ConfigError

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.http.admin_options import AdminOptions

__all__ = ["build_chain", "builtin_methods", "is_loopback_host", "password_file_path"]

log = logging.getLogger("chatgate.http.auth")

#: The domain administrators' logins are counted under by the login gate: not a
#: served domain (RFC 2606 reserves `.invalid`), so guesses at the administrator
#: "alice" never hold the XMPP account alice@DOMAIN's logins, nor her success
#: trust an address for the administrator.
ADMIN_DOMAIN = "admin.invalid"


@dataclass(frozen=True)
class _Build:
    ctx: ServerContext
    options: AdminOptions

    def login(self, method: str) -> AdminLogin:
        return AdminLogin(self.ctx.login_gate, ADMIN_DOMAIN, method)

    def nonce_counts(self, lifetime: float) -> NonceCounts:
        """Digest nonce counts: this process's table, or on a cluster node the
        cluster's (a replayed nc is refused on every node)."""
        if self.ctx.cluster is None:
            return LocalNonceCounts(lifetime)
        from chatgate.cluster.http_state import nonce_counts

        return nonce_counts(self.ctx.cluster, lifetime)

    async def codec(self, realm: str) -> NonceCodec:
        secret = await self.ctx.db.secrets.get_or_create(NONCE_SECRET, os.urandom(32))
        return NonceCodec(secret, realm)

    def password_file(self, method: str) -> PasswordFile:
        """The loaded password file.  Raises ConfigError naming the path."""
        path = password_file_path(self.ctx, self.options)
        file = PasswordFile(path)
        try:
            entries = file.load()
        except OSError as exc:
            raise ConfigError(
                f"[admin] password_file: {path} cannot be read ({exc.strerror or exc}); {method}"
                " needs it (`chatgate admin-password add NAME` creates it)"
            ) from None
        log.info("admin: %s: %s read (%d entries)", method, path, len(entries))
        return file


Builder = Callable[[_Build], Awaitable[HttpAuthenticator]]


def password_file_path(ctx: ServerContext, options: AdminOptions) -> Path:
    return ctx.config.path(options.password_file)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _digest_over_file(b: _Build, name: str, file: PasswordFile) -> DigestMethod:
    options = b.options
    algorithm = ENCODINGS[options.password_encoding]
    return DigestMethod(
        name,
        realm=options.realm,
        algorithms=(algorithm,),
        codec=await b.codec(options.realm),
        counts=b.nonce_counts(options.nonce_lifetime),
        lifetime=options.nonce_lifetime,
        login=b.login(name),
        secrets=FileSecrets(file, algorithm),
        allow_plain_http=options.allow_plain_http,
    )


async def _basic(b: _Build) -> HttpAuthenticator:
    options = b.options
    file = b.password_file("basic (basic_password_file)") if options.basic_password_file else None
    if options.allow_plaintext_passwords:
        log.warning(
            "admin: basic accepts PLAINTEXT passwords of %s ([admin] allow_plaintext_passwords):"
            " anyone who reads the file has them; store bcrypt or digest hashes instead",
            password_file_path(b.ctx, options),
        )
    return BasicMethod(
        AdminAccounts(b.ctx.db, options),
        b.login("basic"),
        realm=options.realm,
        allow_plain_http=options.allow_plain_http,
        file=file,
        file_algorithm=ENCODINGS[options.password_encoding],
        allow_plaintext=options.allow_plaintext_passwords,
    )


async def _digest(b: _Build) -> HttpAuthenticator:
    options = b.options
    return DigestMethod(
        "digest",
        realm=options.realm,
        algorithms=options.digest_algorithms,
        codec=await b.codec(options.realm),
        counts=b.nonce_counts(options.nonce_lifetime),
        lifetime=options.nonce_lifetime,
        login=b.login("digest"),
        secrets=AdminStoreSecrets(AdminAccounts(b.ctx.db, options)),
        allow_plain_http=options.allow_plain_http,
    )


async def _digestfile(b: _Build) -> HttpAuthenticator:
    return await _digest_over_file(b, "digestfile", b.password_file("digestfile"))


async def _remotehttp(b: _Build) -> HttpAuthenticator:
    options = b.options
    remote = options.remotehttp
    missing = [
        name
        for name, value in (("url", remote.url), ("shared_secret", remote.shared_secret))
        if value is None
    ]
    if missing:
        raise ConfigError(f"[admin.remotehttp] {' and '.join(missing)} must be set for remotehttp")
    assert remote.url is not None
    if not remote.url.startswith(("http://", "https://")):
        raise ConfigError(f"[admin.remotehttp] url {remote.url!r} is not an http(s) URL")
    fallback = None
    if remote.backup_file:
        file = b.password_file("remotehttp (backup_file)")
        fallback = await _digest_over_file(b, "remotehttp", file)
    elif remote.backup_conditions != ["connect"]:
        log.warning("admin: [admin.remotehttp] backup_conditions is ignored: backup_file is off")
    return RemoteHttpMethod(
        remote,
        b.login("remotehttp"),
        b.nonce_counts(options.nonce_lifetime),
        lifetime=options.nonce_lifetime,
        allow_plain_http=options.allow_plain_http,
        fallback=fallback,
    )


async def _bearer(b: _Build) -> HttpAuthenticator:
    options = b.options
    return BearerMethod(
        BearerTokens(b.ctx.db),
        b.login("bearer"),
        realm=options.realm,
        allow_plain_http=options.allow_plain_http,
    )


async def _none(b: _Build) -> HttpAuthenticator:
    if not b.options.allow_none:
        raise ConfigError(
            "[admin] method none lets anyone administer this server: set [admin] allow_none"
            " = true to mean it (loopback listeners only)"
        )
    host = b.ctx.config.http.host
    if not is_loopback_host(host):
        raise ConfigError(
            f"[admin] method none is only allowed on a loopback HTTP listener; [http] host"
            f" is {host}"
        )
    log.warning(
        "admin: AUTHENTICATION IS OFF (method none): every request to the admin routes on"
        " %s is an administrator",
        host,
    )
    return NoneMethod()


def builtin_methods() -> Mapping[str, Builder]:
    return {
        "basic": _basic,
        "digest": _digest,
        "digestfile": _digestfile,
        "remotehttp": _remotehttp,
        "bearer": _bearer,
        "none": _none,
    }


async def build_chain(
    ctx: ServerContext,
    options: AdminOptions,
    names: Sequence[str],
    built: dict[str, HttpAuthenticator] | None = None,
) -> AuthChain:
    """The chain of `names`, in order.  Raises ConfigError on a bad combination.

    `built` (shared by the route sets of one site) holds the methods made so far:
    a method named by several route sets is one object, so a digest nonce's
    counts are one table and a response replayed on another route set is
    refused too.  The caller closes what `built` holds; a failure here closes
    only what this call made."""
    builders = builtin_methods()
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ConfigError(f"[admin] unknown authentication method {unknown[0]!r}")
    build = _Build(ctx, options)
    built = {} if built is None else built
    made: list[HttpAuthenticator] = []
    methods: list[HttpAuthenticator] = []
    try:
        for name in names:
            method = built.get(name)
            if method is None:
                method = built[name] = await builders[name](build)
                made.append(method)
            methods.append(method)
    except BaseException:
        for method in made:
            await method.close()
        raise
    return AuthChain(methods)
