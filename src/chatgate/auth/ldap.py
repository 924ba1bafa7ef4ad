"""The ldap credential provider: a password is right when an LDAP simple bind with it succeeds.

Two ways to reach the user's entry (chosen by `LdapProviderOptions`):

* bind as the user: the DN comes from ``bind_dn_template`` with the username
  escaped per RFC 4514 (``uid={user},ou=people,dc=example,dc=org``);
* search, then bind: as the service account ``bind_dn`` (or anonymously),
  search ``base_dn`` with ``user_filter`` (the username escaped per RFC 4515,
  so ``*)(uid=*`` is a literal, not a wildcard), require exactly one entry,
  then bind with its DN on a fresh connection.

An empty password is refused before any network traffic: RFC 4513 §5.1.2
makes a name with an empty password an *unauthenticated* bind, and servers
that allow it answer success while the client proved nothing.

ldap3's synchronous strategy runs in a bounded thread pool (ldap3 has no
asyncio strategy; its "ASYNC" one is thread based too).  Each check opens
its own connection(s): a bind changes a connection's identity, so sharing
them would mix users.  Network failures, timeouts, a broken service account
and results other than invalidCredentials (49) / inappropriateAuthentication
(48) raise `ProviderUnavailable`; the client then gets temporary-auth-failure
(RFC 6120 §6.5.11), never a claim that its password is wrong.

Passwords are never logged nor put into exception messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPSASLPrepError
from ldap3.core.results import (
    RESULT_INAPPROPRIATE_AUTHENTICATION,
    RESULT_INVALID_CREDENTIALS,
    RESULT_NO_SUCH_OBJECT,
    RESULT_SIZE_LIMIT_EXCEEDED,
    RESULT_SUCCESS,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from chatgate.auth.credentials import ScramKeys
from chatgate.auth.options import LdapProviderOptions
from chatgate.auth.provider import Capability, ProviderUnavailable
from chatgate.vocabulary.errors import ConfigError

__all__ = ["LdapProvider", "search_filter", "user_dn"]

T = TypeVar("T")

_PLACEHOLDER = re.compile(r"\{(user|server)\}")
_WRONG_PASSWORD = frozenset({RESULT_INVALID_CREDENTIALS, RESULT_INAPPROPRIATE_AUTHENTICATION})


def _substitute(template: str, escape: Callable[[str], str], user: str, server: str) -> str:
    # One pass, so a username containing "{server}" stays a literal.
    values = {"user": escape(user), "server": escape(server)}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def search_filter(template: str, user: str, server: str) -> str:
    """`template` with ``{user}``/``{server}`` replaced by RFC 4515-escaped values."""
    return _substitute(template, escape_filter_chars, user, server)


def user_dn(template: str, user: str, server: str) -> str:
    """`template` with ``{user}``/``{server}`` replaced by RFC 4514-escaped values."""
    if not user or not server:
        raise ValueError("empty user or server")
    return _substitute(template, escape_rdn, user, server)


def _dispose(conn: ldap3.Connection) -> None:
    """Unbind and close, also after a failed open (ldap3 then leaves its socket open)."""
    with contextlib.suppress(Exception):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()


def _describe(conn: ldap3.Connection) -> str:
    result = conn.result or {}
    return f"{result.get('description', 'no result')} ({result.get('result')})"


class LdapProvider:
    """`CredentialProvider` over an LDAP directory; see the module docstring.

    `start()` creates the thread pool; `close()` shuts it down.
    """

    offers: frozenset[Capability] = frozenset({Capability.VERIFY_PASSWORD})

    def __init__(self, options: LdapProviderOptions, *, ca_file: Path | None = None) -> None:
        """`ca_file` is `options.ca_file` resolved against the configuration folder."""
        self._options = options
        self._ca_file = ca_file
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Create the thread pool; raises `ConfigError` for an unreadable `ca_file`."""
        if self._ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self._ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"auth.provider.ldap.ca_file: cannot load {self._ca_file}: {exc}"
                ) from None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._options.pool_size, thread_name_prefix="chatgate-ldap"
            )

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # Threads blocked on the network end at their own socket timeouts.
            executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------- CredentialProvider

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        """Always None: a directory does not hand out SCRAM keys through a bind."""
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        """True when a simple bind as this user with `password` succeeds."""
        if not password:
            return False  # RFC 4513 §5.1.2: that would be an unauthenticated bind
        return await self._run(self._verify, username, domain, password)

    async def user_exists(self, username: str, domain: str) -> bool:
        """True when the user's entry exists (searched, or read at the templated DN)."""
        return await self._run(self._exists, username, domain)

    # ----------------------------------------------------------- thread hand-off

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        executor = self._executor
        if executor is None:
            raise RuntimeError("LdapProvider.start() was not called")
        timeout = self._options.timeout
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except TimeoutError:
            raise ProviderUnavailable(
                f"the LDAP server did not answer within {timeout:g}s"
            ) from None
        except LDAPException as exc:
            raise ProviderUnavailable(f"LDAP: {type(exc).__name__}: {exc}") from None

    # ------------------------------------------- blocking code (worker threads)

    def _server(self) -> ldap3.Server:
        options = self._options
        tls = None
        if options.uri.startswith("ldaps:") or options.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED if options.verify_tls else ssl.CERT_NONE,
                ca_certs_file=None if self._ca_file is None else str(self._ca_file),
            )
        return ldap3.Server(
            options.uri, tls=tls, connect_timeout=options.timeout, get_info=ldap3.NONE
        )

    def _connect(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """An open (StartTLS'd if configured) connection, not yet bound."""
        conn = ldap3.Connection(
            self._server(),
            user=user,
            password=password,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            client_strategy=ldap3.SYNC,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds on Linux: an int.
            receive_timeout=max(1, math.ceil(self._options.timeout)),
            raise_exceptions=False,
            read_only=True,
            auto_referrals=False,
        )
        try:
            conn.open(read_server_info=False)
            if self._options.start_tls and not conn.start_tls(read_server_info=False):
                raise ProviderUnavailable(f"LDAP StartTLS refused: {_describe(conn)}")
        except BaseException:
            _dispose(conn)
            raise
        return conn

    def _service_connection(self) -> ldap3.Connection:
        options = self._options
        if options.bind_dn is None:
            return self._connect()  # anonymous
        assert options.bind_password is not None
        conn = self._connect(options.bind_dn, options.bind_password.get_secret_value())
        if not conn.bind(read_server_info=False):
            _dispose(conn)
            raise ProviderUnavailable(f"LDAP service account bind failed: {_describe(conn)}")
        return conn

    def _find_dn(self, conn: ldap3.Connection, user: str, server: str) -> str | None:
        options = self._options
        assert options.base_dn is not None
        conn.search(
            options.base_dn,
            search_filter(options.user_filter, user, server),
            search_scope=ldap3.SUBTREE if options.scope == "sub" else ldap3.LEVEL,
            dereference_aliases=ldap3.DEREF_NEVER,
            attributes=[],
            size_limit=2,
            time_limit=max(1, math.ceil(options.timeout)),
        )
        code = (conn.result or {}).get("result")
        if code not in (RESULT_SUCCESS, RESULT_SIZE_LIMIT_EXCEEDED):
            raise ProviderUnavailable(f"LDAP search failed: {_describe(conn)}")
        found = [r["dn"] for r in conn.response or () if r.get("type") == "searchResEntry"]
        if len(found) > 1:
            raise ProviderUnavailable(
                "LDAP user_filter matched more than one entry: the filter is ambiguous"
            )
        return found[0] if found else None

    def _bind_as(self, dn: str, password: str) -> bool:
        conn = self._connect(dn, password)
        try:
            if conn.bind(read_server_info=False):
                return True
            code = (conn.result or {}).get("result")
            if code in _WRONG_PASSWORD:
                return False
            raise ProviderUnavailable(f"LDAP bind failed: {_describe(conn)}")
        except LDAPSASLPrepError:
            return False  # SASLprep (RFC 4013) prohibits a character in it: nobody's password
        finally:
            _dispose(conn)

    def _verify(self, user: str, server: str, password: str) -> bool:
        options = self._options
        if options.bind_dn_template is not None:
            return self._bind_as(user_dn(options.bind_dn_template, user, server), password)
        conn = self._service_connection()
        try:
            dn = self._find_dn(conn, user, server)
        finally:
            _dispose(conn)
        return dn is not None and self._bind_as(dn, password)

    def _exists(self, user: str, server: str) -> bool:
        options = self._options
        conn = self._service_connection()
        try:
            if options.bind_dn_template is None:
                return self._find_dn(conn, user, server) is not None
            conn.search(
                user_dn(options.bind_dn_template, user, server),
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=[],
            )
            code = (conn.result or {}).get("result")
            if code == RESULT_NO_SUCH_OBJECT:
                return False
            if code != RESULT_SUCCESS:
                raise ProviderUnavailable(f"LDAP read failed: {_describe(conn)}")
            return any(r.get("type") == "searchResEntry" for r in conn.response or ())
        finally:
            _dispose(conn)
