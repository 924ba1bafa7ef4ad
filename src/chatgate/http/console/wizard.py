"""The first-run setup wizard (`/admin/setup`): domain, certificate, database, and
the first administrator, for a server that has no administrator yet.

Served only while no administrator exists, with `[admin] setup_wizard =
"loopback"`, and only to loopback clients: whoever can open a page on the
server's own machine may make the first administrator, nobody else (`off`: no
wizard; make the first administrator on the command line).  Its choices are kept
in memory per browser (a random `chatgate_setup` cookie; its forms carry that
browser's token, and POSTs must come from the console's own origin) until the
last step, which creates the administrator at once, writes the settings into
the configuration file (`config_file.py`: only `[server] domain`, `[tls]
certificate`/`private_key` and `[storage] url`, the old file kept as `.bak`)
and says which of them take effect at the next start.  After that the wizard
is gone: its URLs send to the login.

Hostile cases it answers: another site's page in a browser on this machine
(DNS rebinding: refused unless `Host` names this machine, `local_names.py`),
two browsers finishing at once (one lock; the second finds an administrator
and makes none), form values beyond any real path or URL (`MAX_FIELD`), and a
form that does not decode (400).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from chatgate.http.admin import is_loopback
from chatgate.http.auth.admins import AdminAccounts, AdminNameTaken, InvalidAdmin
from chatgate.http.auth.base import Principal
from chatgate.http.auth.login import valid_name
from chatgate.http.console.config_file import ConfigEditError, toml_string, write_config
from chatgate.http.console.local_names import names_this_machine
from chatgate.http.console.render import see_other
from chatgate.http.console.session import CSRF_FIELD, csrf_matches, digest, same_origin
from chatgate.http.console.setup_checks import (
    Check,
    check_certificate,
    postgres_url,
    safe_url,
    test_database,
)
from chatgate.http.console.site import BASE, Console
from chatgate.jid import InvalidJID, prepare_domain

log = logging.getLogger(__name__)

COOKIE = "chatgate_setup"
STEPS = ("domain", "certificate", "database", "administrator")
TITLES = {
    "domain": "Domain",
    "certificate": "Certificate",
    "database": "Database",
    "administrator": "First administrator",
}
MIN_PASSWORD = 8
#: drafts kept at most (loopback browsers only: a few)
MAX_DRAFTS = 16
#: longest form value (a path, a URL, a name): longer ones are refused, never
#: written into the configuration file
MAX_FIELD = 4096


@dataclass
class Draft:
    """One browser's choices so far."""

    csrf: str
    domain: str
    cert_mode: str = "generate"
    cert_path: str = ""
    key_path: str = ""
    db_kind: str = "sqlite"
    sqlite_path: str = ""
    postgres_url: str = ""
    done: set[str] = field(default_factory=set)

    def storage_url(self) -> str:
        if self.db_kind == "postgresql":
            return postgres_url(self.postgres_url)
        return f"sqlite+aiosqlite:///{self.sqlite_path}"


class SetupWizard:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.drafts: dict[str, Draft] = {}
        #: held while an administrator is made and the file written: two browsers
        #: finishing at once must not make two first administrators
        self._finishing = asyncio.Lock()

    # ------------------------------------------------------------ gatekeeping

    async def _closed(self, request: web.Request) -> web.StreamResponse | None:
        """Why this request gets no wizard (a response), or None: it does."""
        console = self.console
        if console.options.setup_wizard == "off":
            raise web.HTTPNotFound()
        if await console.site.admins.count() > 0:
            return see_other(f"{BASE}/login")
        if not is_loopback(console.site.facts(request).remote_address):
            return console.refused(
                request,
                403,
                "The setup wizard is served only to a browser on the server's own machine"
                " (a loopback address). Open it there, or create the first administrator on"
                " the command line.",
            )
        if not names_this_machine(request.host, console.ctx.hosts):
            log.warning(
                "setup wizard refused to a request for host %r: not a name of this machine",
                request.host,
            )
            return console.refused(
                request,
                403,
                "The setup wizard answers only under a name of this machine (open it as"
                " http://localhost:PORT/admin/setup): this request named another host,"
                " which may be another site's page in this browser.",
            )
        return None

    def _draft(self, request: web.Request) -> tuple[Draft, str | None]:
        """This browser's draft, and a new cookie value when it had none."""
        value = request.cookies.get(COOKIE)
        if value:
            draft = self.drafts.get(digest(value))
            if draft is not None:
                return draft, None
        value = secrets.token_urlsafe(32)
        config = self.console.ctx.config
        draft = Draft(csrf=secrets.token_urlsafe(32), domain=config.server.domain)
        if config.tls.certificate is not None and config.tls.private_key is not None:
            draft.cert_mode = "files"
            draft.cert_path = str(config.path(config.tls.certificate))
            draft.key_path = str(config.path(config.tls.private_key))
        url = config.storage.url
        if url.startswith("sqlite"):
            draft.sqlite_path = url.partition(":///")[2] or "var/chatgate.db"
        else:
            draft.db_kind = "postgresql"
            draft.postgres_url = url
        while len(self.drafts) >= MAX_DRAFTS:
            self.drafts.pop(next(iter(self.drafts)))
        self.drafts[digest(value)] = draft
        return draft, value

    def _page(
        self,
        request: web.Request,
        step: str,
        draft: Draft,
        cookie: str | None,
        values: dict[str, Any] | None = None,
        status: int = 200,
    ) -> web.Response:
        response = self.console.renderer.page(
            f"setup/{step}.html",
            {
                "step": step,
                "steps": [(s, TITLES[s], s in draft.done) for s in STEPS],
                "draft": draft,
                "csrf_field": CSRF_FIELD,
                "csrf": draft.csrf,
                "error": None,
                "check": None,
                "min_password": MIN_PASSWORD,
                **(values or {}),
            },
            status=status,
        )
        if cookie is not None:
            response.set_cookie(
                COOKIE,
                cookie,
                path=f"{BASE}/setup",
                httponly=True,
                samesite="Strict",
                secure=self.console.secure(request),
            )
        return response

    # ------------------------------------------------------------------ routes

    async def start(self, request: web.Request) -> web.StreamResponse:
        closed = await self._closed(request)
        if closed is not None:
            return closed
        draft, cookie = self._draft(request)
        step = next((s for s in STEPS if s not in draft.done), STEPS[-1])
        if cookie is None:
            return see_other(f"{BASE}/setup/{step}")
        return self._page(request, step, draft, cookie)

    async def show(self, request: web.Request) -> web.StreamResponse:
        closed = await self._closed(request)
        if closed is not None:
            return closed
        step = request.match_info["step"]
        if step not in STEPS:
            raise web.HTTPNotFound()
        draft, cookie = self._draft(request)
        return self._page(request, step, draft, cookie)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        closed = await self._closed(request)
        if closed is not None:
            return closed
        step = request.match_info["step"]
        if step not in STEPS:
            raise web.HTTPNotFound()
        value = request.cookies.get(COOKIE)
        draft = self.drafts.get(digest(value)) if value else None
        if draft is None:
            return see_other(f"{BASE}/setup")
        if not same_origin(request):
            return self.console.refused(
                request, 403, "Refused: the form was not sent from this console's own pages."
            )
        try:
            posted = await request.post()
        except ValueError:  # undecodable text, a broken multipart body
            return self.console.refused(request, 400, "Refused: the form could not be read.")
        form = {k: v.strip() for k, v in posted.items() if isinstance(v, str)}
        if not csrf_matches(draft.csrf, form.get(CSRF_FIELD)):
            return self.console.refused(
                request, 403, "Refused: the form's security token did not match."
            )
        too_long = next((k for k, v in form.items() if len(v) > MAX_FIELD), None)
        if too_long is not None:
            error = f"The {too_long} field is over {MAX_FIELD} characters."
            return self._page(request, step, draft, None, {"error": error}, 422)
        if step == "domain":
            return self._domain(request, draft, form)
        if step == "certificate":
            return self._certificate(request, draft, form)
        if step == "database":
            return await self._database(request, draft, form)
        return await self._administrator(request, draft, form, value or "")

    # ------------------------------------------------------------------- steps

    def _next(self, draft: Draft, step: str) -> web.Response:
        draft.done.add(step)
        following = STEPS[STEPS.index(step) + 1]
        return see_other(f"{BASE}/setup/{following}")

    def _domain(self, request: web.Request, draft: Draft, form: dict[str, str]) -> web.Response:
        try:
            draft.domain = prepare_domain(form.get("domain", ""))
        except InvalidJID as exc:
            draft.domain = form.get("domain", "")
            return self._page(request, "domain", draft, None, {"error": str(exc)}, 422)
        return self._next(draft, "domain")

    def _certificate(
        self, request: web.Request, draft: Draft, form: dict[str, str]
    ) -> web.Response:
        draft.cert_mode = "files" if form.get("mode") == "files" else "generate"
        draft.cert_path, draft.key_path = form.get("certificate", ""), form.get("private_key", "")
        if draft.cert_mode == "generate":
            return self._next(draft, "certificate")
        if not draft.cert_path or not draft.key_path:
            error = "Give the paths of both the certificate and its private key."
            return self._page(request, "certificate", draft, None, {"error": error}, 422)
        check = check_certificate(Path(draft.cert_path), Path(draft.key_path), draft.domain)
        if not check.ok:
            return self._page(request, "certificate", draft, None, {"check": check}, 422)
        return self._next(draft, "certificate")

    async def _database(
        self, request: web.Request, draft: Draft, form: dict[str, str]
    ) -> web.Response:
        draft.db_kind = "postgresql" if form.get("kind") == "postgresql" else "sqlite"
        draft.sqlite_path = form.get("sqlite_path", "") or draft.sqlite_path
        draft.postgres_url = form.get("postgres_url", "")
        if draft.db_kind == "sqlite":
            check = self._sqlite_check(draft.sqlite_path)
        elif not draft.postgres_url:
            check = Check(False, "Give the PostgreSQL URL: postgresql://user:password@host/name.")
        else:
            check = await test_database(draft.storage_url())
        if form.get("action") == "test" or not check.ok:
            return self._page(
                request, "database", draft, None, {"check": check}, 200 if check.ok else 422
            )
        return self._next(draft, "database")

    def _sqlite_check(self, text: str) -> Check:
        if not text:
            return Check(False, "Give the path of the SQLite database file.")
        path = self.console.ctx.config.path(Path(text))
        folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
        if path.exists() and not path.is_file():
            return Check(False, f"{path} exists and is not a file.")
        if folder is None or not folder.is_dir():
            return Check(False, f"No folder for {path}.")
        return Check(True, f"The database will be kept in {path}.")

    async def _administrator(
        self, request: web.Request, draft: Draft, form: dict[str, str], cookie: str
    ) -> web.Response:
        missing = [s for s in STEPS[:-1] if s not in draft.done]
        if missing:
            first = f"Complete the {TITLES[missing[0]].lower()} step first."
            return self._page(request, "administrator", draft, None, {"error": first}, 422)
        name, password = form.get("name", ""), form.get("password", "")
        error: str | None = None
        if not valid_name(name):
            error = "The name must be 1 to 64 characters, without spaces or colons."
        elif len(password) < MIN_PASSWORD:
            error = f"The password must have at least {MIN_PASSWORD} characters."
        elif password != form.get("password2", ""):
            error = "The two passwords differ."
        if error is not None:
            return self._page(
                request, "administrator", draft, None, {"error": error, "name": name}, 422
            )
        return await self._finish(request, draft, name, password, cookie)

    async def _finish(
        self, request: web.Request, draft: Draft, name: str, password: str, cookie: str
    ) -> web.Response:
        async with self._finishing:
            if await self.console.site.admins.count() > 0:
                # another browser finished first (the check at the request's start
                # ran before that): this one makes nothing and writes nothing
                self.drafts.pop(digest(cookie), None)
                return see_other(f"{BASE}/login")
            return await self._complete(request, draft, name, password, cookie)

    async def _complete(
        self, request: web.Request, draft: Draft, name: str, password: str, cookie: str
    ) -> web.Response:
        console = self.console
        site = console.site
        try:
            first = await site.admins.add_first(name, password, groups=["admin"])
        except InvalidAdmin as exc:
            return self._page(request, "administrator", draft, None, {"error": str(exc)}, 422)
        self.drafts.pop(digest(cookie), None)
        if not first:  # another process's wizard finished first: nothing is written
            return see_other(f"{BASE}/login")
        config = console.ctx.config
        notes: list[str] = []
        url = draft.storage_url()
        chosen_url = url
        if draft.db_kind == "sqlite":
            chosen_url = f"sqlite+aiosqlite:///{config.path(Path(draft.sqlite_path)).resolve()}"
        if chosen_url != config.storage_url:
            notes.append(await self._admin_in(chosen_url, name, password))
        edits: dict[tuple[str, str], str | None] = {
            ("server", "domain"): draft.domain,
            ("storage", "url"): url,
            ("tls", "certificate"): draft.cert_path if draft.cert_mode == "files" else None,
            ("tls", "private_key"): draft.key_path if draft.cert_mode == "files" else None,
        }
        written, backup, write_error = False, None, None
        source = config.source_path
        if source is None:
            write_error = "this server was not started from a configuration file"
        else:
            try:
                backup = write_config(source, edits)
                written = True
            except (ConfigEditError, OSError) as exc:
                write_error = str(exc)
        restart = []
        if draft.domain != config.server.domain:
            restart.append(f"[server] domain = {draft.domain}")
        current_cert = (
            (str(config.path(config.tls.certificate)), str(config.path(config.tls.private_key)))
            if config.tls.certificate is not None and config.tls.private_key is not None
            else None
        )
        wanted_cert = (draft.cert_path, draft.key_path) if draft.cert_mode == "files" else None
        if wanted_cert != current_cert:
            restart.append(
                "[tls] certificate"
                + (f" = {draft.cert_path}" if wanted_cert else ": generated for the domain")
            )
        elif draft.cert_mode == "generate" and draft.domain != config.server.domain:
            restart.append(f"[tls]: a certificate generated for {draft.domain}")
        if chosen_url != config.storage_url:
            restart.append(f"[storage] url = {safe_url(url)}")
        address = site.facts(request).remote_address
        await site.audit.record(
            Principal(name, frozenset({"admin"}), "setup-wizard"),
            address,
            "setup.completed",
            name,
            f"domain={draft.domain} storage={safe_url(url)} certificate={draft.cert_mode}",
        )
        log.info(
            "setup wizard: administrator %s created from %s; configuration %s",
            name,
            address,
            f"written to {source}" if written else f"not written ({write_error})",
        )
        toml = "\n".join(
            f"[{table}] {key}: removed (a certificate is generated for the domain)"
            if value is None
            else f"[{table}] {key} = {toml_string(value)}"
            for (table, key), value in edits.items()
        )
        return console.renderer.page(
            "setup/done.html",
            {
                "name": name,
                "written": written,
                "source": source,
                "backup": backup,
                "write_error": write_error,
                "restart": restart,
                "notes": notes,
                "edits": toml,
                "login_url": f"{BASE}/login",
            },
        )

    async def _admin_in(self, url: str, name: str, password: str) -> str:
        """Create the administrator in the chosen database too (it is used after the
        restart); a sentence saying how that went."""
        from chatgate.storage.database import Database

        try:
            db = await Database.open(url)
        except Exception as exc:  # reported to the operator, who can redo it by hand
            return (
                f"The chosen database could not be prepared ({type(exc).__name__}): create the"
                " administrator there after the restart with the command line."
            )
        try:
            await AdminAccounts(db, self.console.options).add(name, password, groups=["admin"])
        except AdminNameTaken:
            return (
                f"The chosen database ({safe_url(url)}) has an administrator named {name} already."
            )
        finally:
            await db.close()
        return f"The administrator was also created in the chosen database ({safe_url(url)})."


def add_wizard_routes(app: web.Application, console: Console) -> None:
    wizard = SetupWizard(console)
    app.router.add_get(f"{BASE}/setup", wizard.start)
    app.router.add_get(f"{BASE}/setup/{{step}}", wizard.show)
    app.router.add_post(f"{BASE}/setup/{{step}}", wizard.submit)
