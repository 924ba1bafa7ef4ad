"""`/metrics` in Prometheus's text format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from chatgate.http.admin import AdminSite


def add_metrics_route(app: web.Application, site: AdminSite) -> None:
    """Add `/metrics` to `app`."""
