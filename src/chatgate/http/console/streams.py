"""Streams: the stream authority's rules (add and remove stored ones; configured
ones are changed in the configuration file), stream tokens (issue, revoke) and
the live streams, through `administration/streams.py`.  With `[streams]` off the
page says so."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chatgate.administration import streams
from chatgate.administration.errors import OperationError, Unavailable
from chatgate.http.auth.base import Access
from chatgate.http.console.site import BASE, Console, Page
from chatgate.streams.tokens import StreamAction

ACTIONS = ("publish", "play")


async def streams_page(page: Page) -> web.StreamResponse:
    ctx = page.console.ctx
    values: dict[str, Any] = {"title": "Streams", "enabled": ctx.streams is not None}
    if ctx.streams is not None:
        values["rules"] = await streams.rules(ctx)
        values["live"] = await streams.live(ctx)
        values["issued"] = page.shown.issued
    return page.render("streams.html", {"actions": ACTIONS, **values})


async def change(page: Page) -> web.StreamResponse:
    ctx, form, what = page.console.ctx, page.form, page.request.match_info["what"]
    try:
        if what == "add-rule":
            text = await streams.add_rule(ctx, form.get("rule", ""))
            await page.audit("stream_rule.add", text)
            page.notice(f"Added the rule {text}.")
        elif what == "remove-rule":
            removed = await streams.remove_rule(ctx, form.get("rule", ""))
            for text in removed:
                await page.audit("stream_rule.remove", text)
            page.notice(f"Removed {', '.join(removed)}." if removed else "No such stored rule.")
        elif what == "issue-token":
            action = form.get("action", "")
            if action not in ACTIONS:
                raise web.HTTPBadRequest(text="action: publish or play")
            try:
                ttl = int(form.get("ttl", "3600"))
            except ValueError:
                ttl = 0
            issued = await streams.issue_token(
                ctx,
                form.get("stream", ""),
                StreamAction(action),
                ttl,
                address=form.get("address") or None,
                user=form.get("user") or None,
                one_time=form.get("one_time") == "on",
            )
            await page.audit(
                "stream_token.issue", issued.token_id, f"{action} {form.get('stream')}"
            )
            # shown once, on the next page only (never in the URL; sealed while it waits)
            page.issue(issued.token)
            page.notice(f"Issued token {issued.token_id}; copy it now: it is shown once.")
        elif what == "revoke-token":
            token_id, revoked = await streams.revoke_token(ctx, form.get("token", ""))
            await page.audit("stream_token.revoke", token_id)
            page.notice(f"Revoked {token_id}." if revoked else f"{token_id} was not live.")
        else:
            raise web.HTTPNotFound()
    except Unavailable as exc:
        page.notice(exc.message)
    except OperationError as exc:
        page.notice(f"Refused: {exc.message}.")
    return page.redirect(f"{BASE}/streams")


def add_stream_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/streams", console.guarded(Access.READ, streams_page))
    app.router.add_post(f"{BASE}/streams/{{what}}", console.guarded(Access.WRITE, change))
