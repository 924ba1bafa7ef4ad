"""Pages from Jinja2 templates (autoescaped), with the console's response headers.

The templates live in `templates/` beside this file (package data); `static/`
holds the style sheet and the optional auto-refresh script.  Every page is
complete HTML that works without JavaScript.  The Content-Security-Policy allows
only the console's own style sheet and script: no inline script, no other host.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: what every console answer carries
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _when(seconds: float | int | None) -> str:
    if seconds is None:
        return "—"
    moment = datetime.datetime.fromtimestamp(float(seconds), datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    return env


class Renderer:
    """Renders a template into a response with the console's headers."""

    def __init__(self) -> None:
        self.env = environment()

    def page(
        self,
        template: str,
        values: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        body = self.env.get_template(template).render(**values)
        response = web.Response(text=body, status=status, content_type="text/html")
        response.headers.update(HEADERS)
        if headers:
            response.headers.update(headers)
        return response


def see_other(location: str) -> web.Response:
    """303 to `location` (after a POST, or to the login), with the console's headers."""
    response = web.Response(status=303, headers={"Location": location})
    response.headers.update(HEADERS)
    return response
