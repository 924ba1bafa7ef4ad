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
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from chatgate.http.auth.base import Access, Principal
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
    """A request's live console session."""

    id_hash: str
    principal: Principal
    csrf_token: str

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
        return value, _login(row)

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
        return _login(row)

    async def end(self, login: ConsoleLogin) -> None:
        await self.db.console_sessions.remove(login.id_hash)


def _login(row: ConsoleSessionRow) -> ConsoleLogin:
    principal = Principal(row.admin, frozenset(row.groups), row.method)
    return ConsoleLogin(row.id_hash, principal, row.csrf_token)


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
