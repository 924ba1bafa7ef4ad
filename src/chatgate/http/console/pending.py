"""What a console login is shown once, on its next page: the notices of a change
("Created token 7; copy it now") and a secret just made (an API bearer token, a
stream token).

A change is a POST answered by a redirect; the page after it may be served by
another worker (`serve --workers N`) or another node, so these are kept on the
login's session row in the database (`admin_console_sessions.pending`), not in
the process.  The next page takes them (read, then cleared if still the same:
two pages at once cannot both show a token) and shows them.

The row holds them sealed (AES-GCM) with a key derived from the login's cookie,
which the database never stores (only its SHA-256 is): a copy of the database,
a backup or someone reading the table cannot read a token waiting to be shown.
They also expire: what is not shown within `PENDING_LIFETIME` seconds is dropped.
Nothing here logs what it seals.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: one-shot lines kept per login until its next page (a script posting without
#: reading pages keeps the newest)
MAX_NOTICES = 20
#: seconds what is pending waits for the next page before it is dropped
PENDING_LIFETIME = 600.0

_KEY_LABEL = b"chatgate console pending v1"
_NONCE_BYTES = 12


def sealing_key(cookie_value: str) -> bytes:
    """The key that seals a login's pending values: from its cookie, never stored."""
    return hmac.new(cookie_value.encode(), _KEY_LABEL, hashlib.sha256).digest()


@dataclass
class Pending:
    """Notices and a secret waiting for a login's next page."""

    notices: list[str] = field(default_factory=list)
    issued: str | None = None

    def __bool__(self) -> bool:
        return bool(self.notices) or self.issued is not None

    def merged(self, later: Pending) -> Pending:
        """These, then `later`'s notices (the newest `MAX_NOTICES`); `later`'s secret
        if it has one (one secret is shown at a time: the newest)."""
        notices = [*self.notices, *later.notices][-MAX_NOTICES:]
        return Pending(notices, later.issued if later.issued is not None else self.issued)


def seal(pending: Pending, key: bytes, now: float) -> str:
    """`pending` as the row keeps it: sealed with `key`, readable until
    `now + PENDING_LIFETIME`."""
    body = {"n": pending.notices, "t": pending.issued, "until": now + PENDING_LIFETIME}
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(body).encode(), _KEY_LABEL)
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(stored: str, key: bytes, now: float) -> Pending:
    """What `seal` kept, or nothing when it expired or does not open with `key`
    (tampered with, or left by a session of another cookie)."""
    try:
        raw = base64.urlsafe_b64decode(stored.encode("ascii"))
        opened = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _KEY_LABEL)
        body = json.loads(opened)
    except (ValueError, InvalidTag):
        return Pending()
    if not isinstance(body, dict):
        return Pending()
    until = body.get("until")
    if not isinstance(until, int | float) or now >= until:
        return Pending()
    notices = [n for n in body.get("n", []) if isinstance(n, str)]
    issued = body.get("t")
    return Pending(notices, issued if isinstance(issued, str) else None)
