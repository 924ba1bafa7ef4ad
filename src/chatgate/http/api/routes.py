"""The API's routes: every resource module's `OPERATIONS`, served under
`/api/v1` and described by the OpenAPI document at `/api/v1/openapi.json`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from aiohttp import web

from chatgate.http.admin import API_PREFIX, public
from chatgate.http.api import (
    accounts,
    audit_log,
    registration,
    rosters_messages,
    server_state,
    sessions,
    streams,
    tokens,
)
from chatgate.http.api.openapi import openapi_document
from chatgate.http.api.operation import Operation, aiohttp_handler, api_errors

if TYPE_CHECKING:
    from chatgate.http.admin import AdminSite

OPENAPI_PATH = "/openapi.json"


def api_operations() -> tuple[Operation, ...]:
    """Every operation, in the order the document lists them."""
    return (
        *accounts.OPERATIONS,
        *rosters_messages.OPERATIONS,
        *sessions.OPERATIONS,
        *registration.OPERATIONS,
        *streams.OPERATIONS,
        *server_state.OPERATIONS,
        *tokens.OPERATIONS,
        *audit_log.OPERATIONS,
    )


def _version() -> str:
    try:
        return version("chatgate")
    except PackageNotFoundError:  # a source tree without installed metadata
        return "0"


def add_api_routes(app: web.Application, site: AdminSite) -> None:
    """Add `/api/v1/...` to `app`, and the middleware that answers what aiohttp
    itself refuses there in the API's error shape."""
    operations = api_operations()
    for op in operations:
        app.router.add_route(op.method, API_PREFIX + op.route_path, aiohttp_handler(op, site))
    document = openapi_document(operations, site.options.methods_for("api"), _version())

    @public
    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(API_PREFIX + OPENAPI_PATH, openapi_json)
    app.middlewares.append(api_errors)
