"""Schemas every resource shares: the error shape (as `errors.py` writes it), a
page of a list, and the paging query.  Resource models live beside their
handlers; the OpenAPI document is generated from all of them (`openapi.py`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: most items one page may hold
MAX_LIMIT = 500
#: longest cursor accepted (ours are far shorter)
MAX_CURSOR = 512
#: longest JID or search text in a query string: percent-encoded, a request line
#: must stay under the HTTP parser's 8,190 bytes (up to 12 bytes a character)
MAX_QUERY_TEXT = 256


class Model(BaseModel):
    """Strict about unknown fields (a misspelt field is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class QueryModel(BaseModel):
    """A query string: unknown parameters are ignored (caches, proxies add some)."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)


class FieldProblem(Model):
    field: str
    """The invalid field: a body field (dotted for nested ones), a query parameter,
    or `body` for the body as a whole."""
    message: str


class ErrorDetail(Model):
    status: int
    code: str
    """Stable: `invalid`, `malformed_json`, `not_found`, `conflict`, `forbidden`,
    `unauthenticated`, `not_configured`, `too_large`, `method_not_allowed`,
    `unsupported_media_type`, `cross_site`, ..."""
    message: str
    """For people; never contains a secret."""
    fields: list[FieldProblem] | None = None
    """Each invalid field (validation errors, 422, only)."""


class ErrorBody(Model):
    """Every refusal of every admin route has this shape."""

    error: ErrorDetail


class PageQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 50
    """Most items in the page (1 to 500)."""
    cursor: Annotated[str | None, Field(max_length=MAX_CURSOR)] = None
    """The `next` of the previous page (opaque)."""


class Paged(Model):
    """The fields of every page; `items` is added by each list."""

    next: str | None = None
    """Cursor of the next page; null on the last one."""


class Done(Model):
    """A change that has nothing more to say."""

    ok: bool = True
    detail: str | None = None
