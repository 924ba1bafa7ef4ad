"""The API's routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from chatgate.http.admin import AdminSite


def add_api_routes(app: web.Application, site: AdminSite) -> None:
    """Add `/api/v1/...` to `app`."""
