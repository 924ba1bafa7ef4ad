"""Console logins: the cookie, its session row, the CSRF token and the origin check.

A login makes a random cookie value; only its SHA-256 is stored
(`db.console_sessions`), so a copy of the database cannot be replayed as a
cookie.  The cookie is HttpOnly, SameSite=Strict, Path=/admin/, and Secure when
the request came over TLS.  A session ends at logout, or when it has not been
used for `[admin] session_timeout` seconds (checked on every request; the
site's sweeper deletes what nobody comes back for).

Each session has its own CSRF token, put in every form and compared on every
POST, and a POST must also come from the console's own origin (`Origin`, or
`Referer` when a browser sends no `Origin`): either check alone refuses a
forged form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from chatgate.http.auth.base import Access, Principal
from chatgate.http.console.pending import Pending, seal, sealing_key, unseal
from chatgate.storage.repositories.admin import ConsoleSessionRow

if TYPE_CHECKING:
    from chatgate.storage.database import Database

COOKIE = "chatgate_console"
COOKIE_PATH = "/admin/"
#: the hidden form field carrying the CSRF token
CSRF_FIELD = "csrf"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleLogin:
    """A request's live console session: what its row says when the request came
    (`pending`, sealed), and the key its cookie gives to open that (`pending.py`)."""

    id_hash: str
    principal: Principal
    csrf_token: str
    pending: str | None = field(default=None, repr=False, compare=False)
    sealing_key: bytes = field(default=b"", repr=False, compare=False)

    def allows(self, access: Access) -> bool:
        return self.principal.allows(access)


class ConsoleSessions:
    """Makes, finds and ends console sessions."""

    def __init__(
        self, db: Database, timeout: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.timeout = timeout
        self.clock = clock

    async def create(self, principal: Principal) -> tuple[str, ConsoleLogin]:
        """A new session for `principal`: the cookie value to send, and the login."""
        value = secrets.token_urlsafe(32)
        now = int(self.clock())
        row = ConsoleSessionRow(
            id_hash=digest(value),
            admin=principal.name,
            groups=tuple(sorted(principal.groups)),
            method=principal.method,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
        await self.db.console_sessions.add(row)
        return value, _login(row, value)

    async def find(self, request: web.Request) -> ConsoleLogin | None:
        """The request's session, if its cookie names one that has not timed out
        (an idle one is deleted here); the session's idle clock restarts."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        id_hash = digest(value)
        row = await self.db.console_sessions.get(id_hash)
        if row is None:
            return None
        now = int(self.clock())
        if now - row.last_seen_at > self.timeout:
            await self.db.console_sessions.remove(id_hash)
            return None
        await self.db.console_sessions.seen(id_hash, now)
        return _login(row, value)

    async def end(self, login: ConsoleLogin) -> None:
        await self.db.console_sessions.remove(login.id_hash)

    async def take_pending(self, login: ConsoleLogin) -> Pending:
        """What waits for `login`'s next page, cleared as it is read: shown once,
        whichever worker or node serves the page (`pending.py`)."""
        if login.pending is None:
            return Pending()
        if not await self.db.console_sessions.replace_pending(login.id_hash, login.pending, None):
            return Pending()  # another page of this login took it first
        return unseal(login.pending, login.sealing_key, self.clock())

    async def keep_pending(self, login: ConsoleLogin, new: Pending) -> None:
        """Add `new` to what waits for `login`'s next page."""
        repository = self.db.console_sessions
        stored = login.pending
        for _ in range(_KEEP_TRIES):
            now = self.clock()
            waiting = Pending() if stored is None else unseal(stored, login.sealing_key, now)
            sealed = seal(waiting.merged(new), login.sealing_key, now)
            if await repository.replace_pending(login.id_hash, stored, sealed):
                return
            row = await repository.get(login.id_hash)  # changed meanwhile: again
            if row is None:
                return  # the session ended: nobody will see it
            stored = row.pending


#: attempts of `keep_pending` when other requests of the login change the row meanwhile
_KEEP_TRIES = 5


def _login(row: ConsoleSessionRow, cookie_value: str) -> ConsoleLogin:
    principal = Principal(row.admin, frozenset(row.groups), row.method)
    return ConsoleLogin(
        row.id_hash, principal, row.csrf_token, row.pending, sealing_key(cookie_value)
    )


def set_cookie(response: web.StreamResponse, value: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=secure
    )


def clear_cookie(response: web.StreamResponse, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        "",
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure,
        max_age=0,
        expires="Thu, 01 Jan 1970 00:00:00 GMT",
    )


def same_origin(request: web.Request) -> bool:
    """Whether a POST comes from a page of this host: its `Origin` (or, without
    one, its `Referer`) names the host the request was sent to.  Neither header:
    refused (every browser sends `Origin` with a form POST).  `Origin: null` is
    refused too: an opaque origin (a sandboxed frame, a cross-site redirect, a
    `data:` page) is never one of the console's pages, whatever `Referer` says."""
    source = request.headers.get("Origin")
    if source == "null":
        return False
    if source is None:
        source = request.headers.get("Referer")
    if not source:
        return False
    try:
        netloc = urlsplit(source).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()


def csrf_matches(expected: str, sent: object) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(expected.encode(), sent.encode())
