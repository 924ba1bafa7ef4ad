"""The API's one error shape, for every refusal of every admin route:

    {"error": {"status": 422, "code": "invalid", "message": "...",
               "fields": [{"field": "password", "message": "..."}]}}

`code` is stable (clients branch on it), `message` is for people, `fields`
names each invalid field of a request body or query (validation errors only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


def error_body(
    status: int, code: str, message: str, fields: Sequence[FieldError] = ()
) -> dict[str, object]:
    error: dict[str, object] = {"status": status, "code": code, "message": message}
    if fields:
        error["fields"] = [{"field": f.field, "message": f.message} for f in fields]
    return {"error": error}


def error_response(
    status: int, code: str, message: str, fields: Sequence[FieldError] = ()
) -> web.Response:
    return web.json_response(error_body(status, code, message, fields), status=status)


class ApiError(Exception):
    """Raised by a handler: answered in the error shape."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = tuple(fields)

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.fields)
