"""Form-encoded fields (``a=1&b=2``) as media servers send them, and the query
keys that carry a client's credentials.

nginx-rtmp posts its fields form-encoded and appends the client's query string
verbatim; SRS and MediaMTX pass the client's query on as text.  `read_form`
keeps the **first** occurrence of every key and notes which keys came again: an
adapter reads the fields its media server generated from the first occurrences
(a client appending ``&name=other`` only adds a later one) and refuses repeated
credential keys.  Decoding follows the form rules (``+`` is a space, ``%XX`` a
byte; a ``%`` not followed by two hex digits stays as it is, as browsers and
nginx leave it), keys included.  Values stay raw bytes until `text` decodes the
ones an adapter reads: cheap for the fields nobody reads (``flashver``,
``swfurl``, ``tcurl``, which may hold secrets and are never decoded here).

Credential keys (`credentials_from_form`), the convention of every adapter that
reads a client query string:

=================  =============================  ============================
credential         keys                            example
=================  =============================  ============================
account password   ``username`` + ``password``     ``?username=alice&password=s3cret``
                   (aliases ``user``, ``pass``,
                   MediaMTX's and ffmpeg's names)
signed token       ``token``                       ``?token=1AQ...``
stream key         ``key`` (+ ``username``         ``?key=8f3k...``
                   optionally)
=================  =============================  ============================

A key and its alias together (``user=a&username=a``), any credential key twice,
two kinds at once, a password without a name or a name alone give an INVALID
credential (`base.Credentials`), which the authority denies.  An empty value
counts as absent (``?username=&password=`` is anonymous).
"""

from __future__ import annotations

import re
from operator import methodcaller
from typing import Final
from urllib.parse import unquote_to_bytes

from chatgate.streams.adapters.base import MAX_SECRET_LENGTH, MAX_USERNAME_LENGTH, Credentials

__all__ = ["Form", "credentials_from_form", "read_form", "text"]

Form = tuple[dict[bytes, bytes], frozenset[bytes]]
"""The first value of each (decoded) key, still encoded, and the keys seen again."""

_NO_REPEATS: Final[frozenset[bytes]] = frozenset()
_PARTITION: Final = methodcaller("partition", b"=")

_FIELDS: Final = (
    (b"username", b"user", "username", MAX_USERNAME_LENGTH),
    (b"password", b"pass", "password", MAX_SECRET_LENGTH),
    (b"token", None, "token", MAX_SECRET_LENGTH),
    (b"key", None, "stream key", MAX_SECRET_LENGTH),
)
_PLAIN_USERNAME: Final = re.compile(rb"[A-Za-z0-9._@-]{1,64}")


def _decode(raw: bytes) -> bytes:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw


def read_form(data: bytes) -> Form:
    """Split form-encoded `data`; never raises.  Empty parts (``a=1&&b=2``) are
    skipped; a part without ``=`` is a key with an empty value."""
    parts = data.split(b"&")
    # Fast path: inserting in reverse leaves each key's first value.  It stands
    # when no key needs decoding and no key came twice (the counts agree).
    first = {key: value for key, _, value in map(_PARTITION, reversed(parts))}
    keys = b"".join(first)
    if b"%" in keys or b"+" in keys or b"" in first or len(first) != len(parts) - parts.count(b""):
        return _read_form_slowly(parts)
    return first, _NO_REPEATS


def _read_form_slowly(parts: list[bytes]) -> Form:
    first: dict[bytes, bytes] = {}
    repeated: set[bytes] = set()
    for part in parts:
        if not part:
            continue
        key, _, value = part.partition(b"=")
        if b"%" in key or b"+" in key:
            key = _decode(key)
        if key in first:
            repeated.add(key)
        else:
            first[key] = value
    return first, frozenset(repeated)


def text(raw: bytes | None) -> str | None:
    """The decoded UTF-8 text of a raw value, or None when absent or not UTF-8."""
    if raw is None:
        return None
    try:
        return _decode(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _field(
    form: Form, key: bytes, alias: bytes | None, what: str, limit: int
) -> str | Credentials | None:
    """One credential field under `key` or `alias`: its text (None if absent or
    empty), or an INVALID credential saying why it cannot be read."""
    first, repeated = form
    raw = first.get(key)
    if alias is not None:
        other = first.get(alias)
        if other is not None:
            if raw is not None:
                return Credentials.invalid(f"{what} given more than once")
            raw, key = other, alias
    if raw is None:
        return None
    if key in repeated:
        return Credentials.invalid(f"{what} given more than once")
    value = text(raw)
    if value is None:
        return Credentials.invalid(f"{what} is not UTF-8")
    if len(value) > limit:
        return Credentials.invalid(f"{what} longer than {limit} characters")
    return value or None


def credentials_from_form(form: Form) -> Credentials:
    """The credential of a client query string (module docstring); never raises."""
    first, repeated = form
    get = first.get
    username, password, token, key = get(b"username"), get(b"password"), get(b"token"), get(b"key")
    if (
        not repeated
        and b"user" not in first
        and b"pass" not in first
        and (username is None or _PLAIN_USERNAME.fullmatch(username) is not None)
        and (password is None or len(password) <= MAX_SECRET_LENGTH)
    ):
        # Fast path: each key at most once, no alias, a plain ASCII username.
        if username is password is token is key is None:
            return Credentials.none()
        if token is None and key is None and username and password:
            secret = text(password)
            if secret and len(secret) <= MAX_SECRET_LENGTH:
                return Credentials.password(username.decode("ascii"), secret)
    fields: list[str | None] = []
    for key_name, alias, what, limit in _FIELDS:
        value = _field(form, key_name, alias, what, limit)
        if isinstance(value, Credentials):
            return value
        fields.append(value)
    return combine(*fields)


def combine(
    username: str | None, password: str | None, token: str | None, key: str | None
) -> Credentials:
    """One credential from the fields a client sent (None or empty = absent)."""
    kinds = (password is not None) + (token is not None) + (key is not None)
    if kinds > 1:
        return Credentials.invalid("more than one kind of credential", username)
    if password is not None:
        if username is None:
            return Credentials.invalid("password without username")
        return Credentials.password(username, password)
    if token is not None:
        return Credentials.token(token, username)
    if key is not None:
        return Credentials.stream_key(key, username)
    if username is not None:
        return Credentials.invalid("username without password", username)
    return Credentials.none()
