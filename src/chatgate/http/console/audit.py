"""The audit log: who changed what through the API, the console or the wizard,
newest first, a page at a time (`AuditLog.page`, keyset by entry id)."""

from __future__ import annotations

from aiohttp import web

from chatgate.http.auth.base import Access
from chatgate.http.console.site import BASE, Console, Page

#: entries on one page
PAGE = 50


async def audit_page(page: Page) -> web.StreamResponse:
    query = page.request.query
    before: int | None = None
    raw = query.get("before", "")
    if raw.isdigit() and len(raw) <= 18:  # an entry id; anything else starts at the newest
        before = int(raw)
    action = query.get("action") or None
    if action is not None and len(action) > 64:
        action = None
    entries = await page.console.site.audit.page(before=before, limit=PAGE + 1, action=action)
    shown = entries[:PAGE]
    older = shown[-1].id if len(entries) > PAGE and shown else None
    return page.render(
        "audit.html",
        {"title": "Audit log", "entries": shown, "older": older, "action": action or ""},
    )


def add_audit_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/audit", console.guarded(Access.READ, audit_page))
