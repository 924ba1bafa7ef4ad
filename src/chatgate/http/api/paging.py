"""Opaque cursors: `?limit=&cursor=` in, `next` out.

A cursor is the key of the last item shown (a JID, an entry id), wrapped so
that clients treat it as opaque and a mangled one is told apart from a real key
(422 naming `cursor`), including a forged one whose key no database can take
(an integer past 64 bits, a string with a lone surrogate).  Lists are
keyset-paged on that key, so a page is stable while items are added or
removed before it.
"""

from __future__ import annotations

import base64
import binascii
import json

from chatgate.http.api.errors import ApiError, FieldError

_PREFIX = "c1"
#: keys an integer cursor may hold (a database's signed 64-bit integers)
_MAX_INT = 2**63 - 1


def encode_cursor(key: str | int) -> str:
    raw = json.dumps({"k": key}, separators=(",", ":")).encode()
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type[str] | type[int]) -> str | int:
    """The key of a cursor this API made; 422 naming `cursor` otherwise."""
    try:
        if not cursor.startswith(_PREFIX):
            raise ValueError
        data = cursor[len(_PREFIX) :]
        value = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        key = value["k"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _invalid() from None
    if not isinstance(key, kind) or isinstance(key, bool):
        raise _invalid()
    if isinstance(key, int) and not 0 <= key <= _MAX_INT:
        raise _invalid()  # the database cannot compare it (no id of ours is one)
    if isinstance(key, str):
        try:
            key.encode()
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no stored key is one
            raise _invalid() from None
    return key


def _invalid() -> ApiError:
    message = "not a cursor of this list: pass the `next` of the previous page"
    return ApiError(422, "invalid", "invalid cursor", [FieldError("cursor", message)])
