"""The server log's tail (the console's in-memory ring, `logtail.py`) and the
configuration as the server runs with it, secrets redacted
(`administration/configuration.py`)."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from chatgate.administration.configuration import redacted_config
from chatgate.http.auth.base import Access
from chatgate.http.console.site import BASE, Console, Page

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


async def log_page(page: Page) -> web.StreamResponse:
    level = page.request.query.get("level", "INFO").upper()
    if level not in LEVELS:
        level = "INFO"
    lines = page.console.log_tail.tail(min_level=logging.getLevelName(level))
    return page.render(
        "log.html",
        {
            "title": "Log",
            "lines": list(reversed(lines)),
            "level": level,
            "levels": LEVELS,
            "capacity": page.console.log_tail.lines.maxlen,
        },
    )


async def config_page(page: Page) -> web.StreamResponse:
    config = page.console.ctx.config
    return page.render(
        "config.html",
        {
            "title": "Configuration",
            "source": config.source_path,
            "text": json.dumps(redacted_config(config), indent=2, sort_keys=False),
        },
    )


def add_system_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/log", console.guarded(Access.READ, log_page))
    app.router.add_get(f"{BASE}/config", console.guarded(Access.ADMIN, config_page))
