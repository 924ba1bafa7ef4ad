"""One API operation, declared once: its route, the access it needs, its query,
body and response models, and the audit action of a change.

From that declaration the same table serves requests (`handler`) and writes
the OpenAPI document (`openapi.py`), so the document cannot drift from what is
served.  What every handler would otherwise repeat happens here, in order:

1. the site's middleware has authenticated the request and checked the access
   (`@requires`, set here from `Operation.access`);
2. a change sent from another site's page is refused (403 `cross_site`: a
   browser holding an administrator's Basic or Digest credentials would
   otherwise send them with a forged form); the query is validated (422 naming
   each parameter), the body must be `application/json` (415: a form cannot
   send that type without a CORS preflight, which no other origin passes), is
   read (at most `MAX_BODY` bytes: 413), parsed (malformed, or nested deeper than
   the parser recurses: 400) and validated (422 naming each field);
3. the handler runs; an `OperationError` or `ApiError` becomes the error shape
   (`NotFound` 404, `Conflict` 409, `Invalid` 422 naming its field,
   `Unavailable` 404 with code `not_configured`);
4. a change that succeeded is appended to the audit log (which also logs one
   INFO line): every non-GET operation names its action;
5. a GET's answer carries a weak ETag from a hash of its body, and a matching
   `If-None-Match` gets 304 without the body.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError

from chatgate.administration.errors import (
    Conflict,
    Invalid,
    NotFound,
    OperationError,
    Unavailable,
)
from chatgate.http.admin import public, requires
from chatgate.http.api.errors import ApiError, FieldError, error_response
from chatgate.http.auth.base import Access, Principal

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.http.admin import AdminSite

log = logging.getLogger(__name__)

#: largest request body accepted (a 64 KiB message body with its envelope)
MAX_BODY = 96 * 1024

M = TypeVar("M", bound=BaseModel)


@dataclass
class Call:
    """What a handler gets: the request, the site, the validated query and body."""

    request: web.Request
    site: AdminSite
    principal: Principal
    query: BaseModel | None
    body: BaseModel | None
    #: what a change acted on and a short summary, for the audit log (no secrets)
    target: str | None = None
    detail: str | None = None

    @property
    def ctx(self) -> ServerContext:
        return self.site.ctx

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    def query_as(self, model: type[M]) -> M:
        assert isinstance(self.query, model)
        return self.query

    def body_as(self, model: type[M]) -> M:
        assert isinstance(self.body, model)
        return self.body

    @property
    def address(self) -> str | None:
        return self.site.facts(self.request).remote_address


OperationHandler = Callable[[Call], Awaitable[BaseModel | None]]


@dataclass(frozen=True)
class Operation:
    method: str
    #: below `/api/v1`, with `{name}` path parameters
    path: str
    handler: OperationHandler
    summary: str
    tag: str
    #: None: public (no authentication)
    access: Access | None = Access.READ
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    #: the answer's model; None: 204 without a body
    response: type[BaseModel] | None = None
    status: int = 200
    #: statuses the operation may answer besides the ones every operation may
    errors: tuple[int, ...] = ()
    #: the audit log's action for a change (`account.create`)
    action: str | None = None
    description: str = ""
    #: path parameter -> description
    params: dict[str, str] = field(default_factory=dict)
    #: path parameters that may hold '/' (a full JID, sent as %2F)
    greedy: frozenset[str] = frozenset()

    @property
    def route_path(self) -> str:
        """The aiohttp route below the prefix: a greedy parameter matches '/' too."""
        path = self.path
        for name in self.greedy:
            path = path.replace("{" + name + "}", "{" + name + ":.+}")
        return path

    def __post_init__(self) -> None:
        if self.method != "GET" and self.action is None:
            raise ValueError(f"{self.method} {self.path}: a change needs an audit action")


def _fields(exc: ValidationError, root: str) -> list[FieldError]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or root
        problems.append(FieldError(loc, err["msg"]))
    return problems


def invalid(exc: ValidationError, root: str, what: str) -> ApiError:
    return ApiError(422, "invalid", f"invalid {what}", _fields(exc, root))


def operation_error(exc: OperationError) -> ApiError:
    """An operation's refusal in the API's terms."""
    if isinstance(exc, Invalid):
        fields = [FieldError(exc.field, exc.message)] if exc.field else []
        return ApiError(422, exc.code, exc.message, fields)
    if isinstance(exc, NotFound | Unavailable):
        return ApiError(404, exc.code, exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, exc.code, exc.message)
    return ApiError(400, exc.code, exc.message)


def _is_json(content_type: str) -> bool:
    """`application/json` or a `+json` type (parameters such as charset aside)."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def from_other_site(request: web.Request) -> bool:
    """Whether a browser sent `request` from another site's page: `Sec-Fetch-Site`
    says so, or `Origin` names another host (`null`: an opaque origin, never ours).
    Clients that are not browsers send neither header."""
    if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return True
    return not netloc or netloc.lower() != request.host.lower()


async def _read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"request bodies have at most {MAX_BODY} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, "too_large", f"request bodies have at most {MAX_BODY} bytes")
    if not raw.strip():
        raise ApiError(400, "malformed_json", "this request needs a JSON body")
    if not _is_json(request.content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json (not {request.content_type or 'untyped'})",
        )
    try:
        data = json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from None
    except RecursionError:  # the parser recurses per level: "[[[[..." by the thousand
        raise ApiError(400, "malformed_json", "the body nests arrays or objects too deep") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, "body", "request body") from None


def weak_etag(body: bytes) -> str:
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: If-None-Match compares weakly, `*` matches anything."""
    if not header:
        return False
    opaque = etag[2:]
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def json_body(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def aiohttp_handler(op: Operation, site: AdminSite) -> Callable[[web.Request], Awaitable[Any]]:
    """The request handler serving `op` on `site` (marked with its access)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await _serve(op, site, request)
        except ApiError as exc:
            return exc.response()
        except OperationError as exc:
            return operation_error(exc).response()

    if op.access is None:
        return public(handle)
    return requires(op.access)(handle)


async def _serve(op: Operation, site: AdminSite, request: web.Request) -> web.StreamResponse:
    if op.method != "GET" and from_other_site(request):
        raise ApiError(
            403,
            "cross_site",
            "refused: a change sent from another site's page (the API takes changes from"
            " scripts and tools, which send no Origin, or from its own origin)",
        )
    query = None
    if op.query is not None:
        try:
            query = op.query.model_validate(dict(request.query))
        except ValidationError as exc:
            raise invalid(exc, "query", "query") from None
    body = await _read_body(request, op.body) if op.body is not None else None
    if op.access is None:
        principal = Principal("anonymous", frozenset({"readOnly"}), "none")
    else:
        from chatgate.http.admin import principal_of

        principal = principal_of(request)
    call = Call(request, site, principal, query, body)
    answer = await op.handler(call)
    if op.action is not None:
        await site.audit.record(principal, call.address, op.action, call.target, call.detail)
    if answer is None:
        return web.Response(status=204)
    data = json_body(answer)
    response = web.Response(body=data, status=op.status, content_type="application/json")
    if op.method == "GET":
        etag = weak_etag(data)
        response.headers["ETag"] = etag
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers={"ETag": etag})
    return response


_REASON_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


@web.middleware
async def api_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
    """Under `/api/v1`, what aiohttp itself refuses (no such route, a method the
    route lacks, a body over the listener's limit) and what a handler failed at
    unexpectedly are answered in the one error shape too."""
    from chatgate.http.admin import API_PREFIX

    if not (request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _REASON_CODES.get(exc.status, "refused")
        response = error_response(exc.status, code, exc.reason)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except Exception:
        log.exception("API: %s %s failed", request.method, request.path)
        return error_response(500, "internal", "the server failed to answer; see its log")
