"""JSON request bodies as MediaMTX, SRS and Red5 send them: one object, read
strictly enough that a wrong type is a malformed request, never an exception."""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["MAX_JSON_BODY", "Malformed", "client_id", "optional_text", "read_object"]

MAX_JSON_BODY: Final = 16384
"""Largest hook body read, in bytes (media servers send a few hundred)."""

_ID: Final = re.compile(r"[\x21-\x7e]{1,64}")


class Malformed(ValueError):
    """A body or field that is not what the media server sends (the message says
    which); the adapter answers it with its 4xx."""


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


def read_object(body: bytes) -> dict[str, object]:
    """The JSON object in `body`; `Malformed` for anything else, a key given twice
    in any object included: JSON leaves its meaning open (RFC 8259 §4), and a
    reader that took the first would see another request than one that takes
    the last (media servers never repeat a key)."""
    if len(body) > MAX_JSON_BODY:
        raise Malformed("body too large")
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey:
        raise Malformed("a key given twice") from None
    except (ValueError, RecursionError):
        raise Malformed("body is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed("body is not a JSON object")
    return value


def optional_text(obj: dict[str, object], name: str) -> str:
    """The string field `name`, ``""`` when absent or null; `Malformed` for
    another type."""
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Malformed(f"{name} is not a string")
    return value


def client_id(obj: dict[str, object], name: str) -> str | None:
    """An id field given as a string or an integer (SRS sends either), as text;
    None when absent or null; `Malformed` unless 1-64 printable ASCII characters."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise Malformed(f"{name} is not an id")
    return value
