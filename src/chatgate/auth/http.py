"""The http credential provider: an operator's HTTP service says whether a password is right.

Wire contract (documented for operators in `HttpProviderOptions`)::

    POST <url>   {"user": "alice", "server": "example.org", "password": "..."}
    2xx          {"result": true}    -> right password
    2xx          {"result": false}   -> wrong password or unknown user
    401 / 403                        -> wrong password or unknown user
    anything else                    -> ProviderUnavailable

Anything else includes a 2xx whose body is not that JSON object, in
particular an empty 200: a success must be said explicitly, so a URL that
points at the wrong web server locks everybody out instead of letting
everybody in.  Redirects are not followed (the password would be re-sent
somewhere the operator did not name).  Timeouts, refused connections and
5xx are `ProviderUnavailable`, which the SASL driver turns into
temporary-auth-failure (RFC 6120 §6.5.11).

The provider serves VERIFY_PASSWORD only, so SCRAM is never offered with it
(it would need the stored keys, which the service does not give out).

Successes are cached (`SuccessCache`): per account, a keyed hash of the last
accepted password (HMAC-SHA-256 under a random key made per process and
never written anywhere), with a TTL and an LRU bound; comparisons are
constant-time.  The password itself is never stored.  Failures are never
cached, so a wrong guess always reaches the service (and its own throttling).

Never logs or puts into an exception message a password or the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp

from chatgate.auth.credentials import ScramKeys
from chatgate.auth.options import HttpProviderOptions
from chatgate.auth.provider import Capability, ProviderUnavailable, UnsupportedQuestion
from chatgate.lru import ENTRY_OVERHEAD, LruCache
from chatgate.vocabulary.errors import ConfigError

__all__ = ["HttpProvider", "SuccessCache", "interpret_reply"]

#: Largest reply body read; a bigger one is not an answer.
MAX_REPLY_BYTES = 65_536

_Owner = tuple[str, str]
_getsizeof = sys.getsizeof
#: An entry's value: a 32-byte digest and a float deadline, in a tuple.
_SUCCESS_BYTES: Final = _getsizeof((b"", 0.0)) + _getsizeof(b"\0" * 32) + _getsizeof(0.0)
#: The heaviest (user, server) key: two 1,023-byte JID parts of the widest characters.
_MAX_OWNER_BYTES: Final = _getsizeof(("", "")) + 2 * _getsizeof("\U0010ffff" * 1023)


def _weigh(owner: _Owner, _entry: tuple[bytes, float]) -> int:
    return _getsizeof(owner) + _getsizeof(owner[0]) + _getsizeof(owner[1]) + _SUCCESS_BYTES


class SuccessCache:
    """Remembers, per (user, server), a keyed hash of the last accepted password until a deadline.

    Bounded: at most `size` accounts, least recently used evicted first (a
    `chatgate.lru.LruCache`, whose byte bound follows from `size` and the
    heaviest possible entry, so `size` is the bound that binds).  Only a hit
    refreshes an entry's recency.  `clock` is monotonic seconds (injected so
    tests need not sleep).  Size 0 or TTL 0 disables it.
    """

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 0 or ttl < 0:
            raise ValueError("size and ttl must be >= 0")
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._key = os.urandom(32)
        entries = max(1, size)  # size 0: nothing is ever stored
        self._entries: LruCache[_Owner, tuple[bytes, float]] = LruCache(
            entries, entries * (ENTRY_OVERHEAD + _MAX_OWNER_BYTES + _SUCCESS_BYTES), _weigh
        )

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()

    def hit(self, user: str, server: str, password: str) -> bool:
        """True when `password` was accepted for this account less than TTL seconds ago."""
        key = (user, server)
        entry = self._entries.peek(key)
        if entry is None:
            return False
        digest, expires = entry
        if self._clock() >= expires:
            self._entries.pop(key)
            return False
        if not hmac.compare_digest(digest, self._digest(password)):
            return False
        self._entries.get(key)  # a success refreshes recency, a mismatch does not
        return True

    def store(self, user: str, server: str, password: str) -> None:
        if not self._size or not self._ttl:
            return
        self._entries.put((user, server), (self._digest(password), self._clock() + self._ttl))

    def forget(self, user: str, server: str) -> None:
        self._entries.pop((user, server))

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def interpret_reply(status: int, body: bytes) -> bool:
    """The verdict in an HTTP reply (see the module docstring); raises `ProviderUnavailable`."""
    if status in (401, 403):
        return False
    if not 200 <= status < 300:
        raise ProviderUnavailable(f"the service answered HTTP {status}")
    try:
        reply: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProviderUnavailable(
            f'HTTP {status} without a JSON body (expected {{"result": true|false}})'
        ) from None
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, bool):
        raise ProviderUnavailable(f'HTTP {status} with JSON that is not {{"result": true|false}}')
    return result


class HttpProvider:
    """`CredentialProvider` asking an HTTP service; see the module docstring.

    Call `start()` (inside the event loop) before the first question, and
    `close()` at the end.  `start()` raises `ConfigError` for an unreadable
    `ca_file`.
    """

    offers: frozenset[Capability] = frozenset({Capability.VERIFY_PASSWORD})

    def __init__(
        self,
        options: HttpProviderOptions,
        *,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`ca_file` is `options.ca_file` resolved against the configuration folder."""
        self._options = options
        self._ca_file = ca_file
        self.cache = SuccessCache(options.cache_size, options.cache_ttl, clock)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        options = self._options
        tls: ssl.SSLContext | bool
        if options.verify_tls:
            try:
                tls = ssl.create_default_context(
                    cafile=None if self._ca_file is None else str(self._ca_file)
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"auth.provider.http.ca_file: cannot load {self._ca_file}: {exc}"
                ) from None
        else:
            tls = False
        headers = dict(options.headers)
        if options.secret is not None:
            headers["Authorization"] = f"Bearer {options.secret.get_secret_value()}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=options.max_connections, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=options.timeout),
            headers=headers,
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ------------------------------------------------------- CredentialProvider

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        """Always None: the service checks passwords and gives out nothing to check them with."""
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        """Ask the service (or the cache of recent successes); raises `ProviderUnavailable`."""
        if not password:
            return False
        if self.cache.hit(username, domain, password):
            return True
        body = {"user": username, "server": domain, "password": password}
        verified = await self._ask(self._options.url, body)
        if verified:
            self.cache.store(username, domain, password)
        return verified

    async def user_exists(self, username: str, domain: str) -> bool:
        """Ask ``exists_url``.  Raises `UnsupportedQuestion` when none is configured,
        `ProviderUnavailable` when the service cannot answer."""
        url = self._options.exists_url
        if url is None:
            raise UnsupportedQuestion("the http provider has no exists_url configured")
        return await self._ask(url, {"user": username, "server": domain})

    def invalidate(self, username: str, domain: str) -> None:
        """Forget a cached success (e.g. after the account was changed)."""
        self.cache.forget(username, domain)

    # ---------------------------------------------------------------- internals

    async def _ask(self, url: str, body: dict[str, str]) -> bool:
        session = self._session
        if session is None:
            raise RuntimeError("HttpProvider.start() was not called")
        try:
            async with session.post(url, json=body, allow_redirects=False) as response:
                status = response.status
                data = await response.content.read(MAX_REPLY_BYTES + 1)
        except TimeoutError:
            raise ProviderUnavailable(
                f"{url}: no answer within {self._options.timeout:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
        if len(data) > MAX_REPLY_BYTES:
            raise ProviderUnavailable(f"{url}: reply larger than {MAX_REPLY_BYTES} bytes")
        try:
            return interpret_reply(status, data)
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(f"{url}: {exc}") from None
