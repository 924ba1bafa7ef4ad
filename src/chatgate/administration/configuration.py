"""The configuration as the server runs with it, secrets redacted, for the API's
`/config` and the console's configuration page.

Redacted: every `SecretStr` (pydantic writes it as asterisks), every string
under a key that names a secret (password, secret, token, pepper, private key,
credentials), and the password of any URL with credentials in it (a
PostgreSQL or LDAP URL: `safe_url`, which the command line and the console's
messages use as well).  Paths, names and numbers stay: they are what an operator
reads the page for.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatgate.config import Config

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(password|passwd|secret|token|pepper|private|credential|api_?key|bind_pw|^key$|_key$)",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@]*):[^@/]*@", re.I)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
#: a secret in a URL's query (libpq and asyncpg read `?password=`)
_QUERY_SECRET = re.compile(r"(?P<name>[?&](?:password|passwd|secret|token)=)[^&#]*", re.I)


def safe_url(url: str) -> str:
    """`url` with its password hidden, for messages, logs and pages: the userinfo's
    password as SQLAlchemy reads it (`make_url(url).render_as_string(hide_password=
    True)`, which also finds a password with an unescaped `/` in it) and a
    `password=` in the query.  A URL without either comes back unchanged."""
    if not _URL.match(url):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        shown = _URL_CREDENTIALS.sub(rf"\g<scheme>\g<user>:{REDACTED}@", url)
    else:
        shown = url if parsed.password is None else parsed.render_as_string(hide_password=True)
    return _QUERY_SECRET.sub(rf"\g<name>{REDACTED}", shown)


def redact(value: Any, key: str = "") -> Any:
    """`value` (JSON-like) with secrets replaced by `REDACTED`."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if value and _SECRET_KEY.search(key):
            return REDACTED
        if value.startswith("**********"):
            return REDACTED  # a SecretStr as pydantic writes it
        return safe_url(value)
    return value


def redacted_config(config: Config) -> dict[str, Any]:
    """The whole resolved configuration, redacted."""
    dumped = config.model_dump(mode="json")
    result = redact(dumped)
    assert isinstance(result, dict)
    return result
