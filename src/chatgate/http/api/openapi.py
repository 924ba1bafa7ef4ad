"""The OpenAPI 3.1 document of `/api/v1`, generated from the operations table
and the pydantic models (`model_json_schema`), so it describes exactly what is
served: every route, its parameters, body, answers and errors, and the
security schemes of the methods `[admin]` configures for the API.

OpenAPI 3.1 because its schemas are JSON Schema 2020-12, which is what pydantic
writes (a nullable field is `anyOf [..., {"type": "null"}]`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from chatgate.http.api.models import ErrorBody
from chatgate.http.api.operation import MAX_BODY, Operation

_PARAM = re.compile(r"\{(\w+)\}")
#: characters of a path parameter: percent-encoded (up to 12 bytes a character),
#: a request line must stay under the HTTP parser's 8,190 bytes
MAX_PATH_PARAM = 512
_REF = "#/components/schemas/{model}"

#: `[admin]` method -> the security scheme that describes it
_SCHEMES = {
    "basic": "basic",
    "digest": "digest",
    "digestfile": "digest",
    "remotehttp": "digest",
    "bearer": "bearer",
}
_SCHEME_OBJECTS: dict[str, dict[str, str]] = {
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "Administrators chatgate keeps (`basic`): use HTTPS.",
    },
    "digest": {
        "type": "http",
        "scheme": "digest",
        "description": "RFC 7616 digest (`digest`, `digestfile` or `remotehttp`).",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A bearer token (`chatgate admin token create` or the console).",
    },
}

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "Done; no body",
    304: "Not modified (the ETag given in If-None-Match still matches)",
    400: "Malformed JSON or a missing body",
    401: "Authentication required (challenges in WWW-Authenticate)",
    403: "The principal's groups do not allow this",
    404: "No such resource, or the feature is not configured",
    409: "Conflicts with the present state",
    413: f"Body over {MAX_BODY} bytes",
    422: "Invalid input; `fields` names each invalid field",
}


#: what any request may get before the API sees it: the HTTP layer's answer, in
#: plain text, to a head it cannot read (a request line or a header over 8,190
#: bytes, too many headers, a malformed line), wherever the path led
_UNREADABLE = (
    "Malformed request: the HTTP layer's plain-text answer to a head it cannot read"
    " (a request line or header over 8,190 bytes, a malformed line)"
)


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Refused"),
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
    }


def _bad_request(in_the_api: bool) -> dict[str, Any]:
    """400: the API's own (malformed JSON, in the error shape) where it has a body,
    and everywhere the HTTP layer's plain text for a head it cannot read."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    if not in_the_api:
        return {"description": _UNREADABLE, "content": text}
    answer = _error(400)
    answer["description"] += "; or " + _UNREADABLE[0].lower() + _UNREADABLE[1:]
    answer["content"] |= text
    return answer


def _schemas(
    operations: Sequence[Operation],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], Any], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for op in operations:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        if op.response is not None:
            wanted.append((op.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, document = models_json_schema(unique, ref_template=_REF)
    return {(model, mode): refs[(model, mode)] for model, mode in unique}, document.get("$defs", {})


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _operation(
    op: Operation, refs: dict[tuple[type[BaseModel], JsonSchemaMode], Any], security: list[Any]
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAM},
            "description": op.params.get(name, name),
        }
        for name in _PARAM.findall(op.path)
    ]
    if op.query is not None:
        parameters.extend(_query_parameters(op.query))
    responses: dict[str, Any] = {}
    if op.response is None:
        responses["204"] = {"description": _STATUS_TEXT[204]}
    else:
        ok: dict[str, Any] = {
            "description": _STATUS_TEXT.get(op.status, "OK"),
            "content": {"application/json": {"schema": refs[(op.response, "serialization")]}},
        }
        if op.method == "GET":
            ok["headers"] = {
                "ETag": {"description": "Weak ETag of the body", "schema": {"type": "string"}}
            }
            responses["304"] = {"description": _STATUS_TEXT[304]}
        responses[str(op.status)] = ok
    statuses = set(op.errors)
    if op.access is not None:
        statuses |= {401, 403}
    if op.query is not None or op.body is not None:
        statuses.add(422)
    if op.body is not None:
        statuses |= {400, 413}
    if _PARAM.search(op.path):
        statuses.add(404)
    own_400 = 400 in statuses
    for status in sorted(statuses | {400}):
        responses[str(status)] = _bad_request(own_400) if status == 400 else _error(status)
    responses["default"] = _error(0) | {"description": "Any other refusal, in the error shape"}
    spec: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    description = op.description
    if op.access is not None:
        groups = {"read": "any group", "write": "admin or advUser", "admin": "admin only"}
        description = f"{description}\n\nNeeds: {groups[op.access.value]}.".strip()
    if description:
        spec["description"] = description
    if op.body is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    spec["security"] = [] if op.access is None else security
    return spec


def openapi_document(
    operations: Sequence[Operation], methods: Sequence[str], version: str
) -> dict[str, Any]:
    """The document for `operations` under `/api/v1`; `methods` are the API's
    `[admin]` authentication methods (`none` adds an anonymous alternative)."""
    refs, schemas = _schemas(operations)
    used = list(dict.fromkeys(_SCHEMES[m] for m in methods if m in _SCHEMES))
    security: list[Any] = [{name: []} for name in used]
    if "none" in methods:
        security.append({})
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, security)
    tags = sorted({op.tag for op in operations})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatgate administration API",
            "version": version,
            "description": "Accounts, sessions, registration, streams and server state of a"
            " chatgate XMPP server. Errors share one shape (ErrorBody); lists are paged"
            " with `limit` and `cursor` and carry weak ETags.",
        },
        "servers": [{"url": "/api/v1"}],
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {name: _SCHEME_OBJECTS[name] for name in used},
        },
    }
