"""Passwords recently proven right, remembered so that the next check of the same
password is one keyed hash instead of a PBKDF2 derivation.

Media servers ask about the same publisher or viewer again and again (every
play, every renewal), each time with the password in clear; deriving its SCRAM
key each time (tens of milliseconds at the configured cost) would make the
stream authority as slow as a cold login for every viewer.  A successful check
is remembered under HMAC-SHA-256(key, user, domain, password) with a key random
per process: the memo holds no password and nothing that can be checked
offline without the key.  Only successes are remembered (a wrong password is
always derived and counted); everything is forgotten when any credentials
change (the `changed` callable: the credentials stamp every process watches),
so a changed password, a locked or deleted account is never answered from here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_ENTRIES", "PasswordMemo"]

#: Entries remembered (about 100 bytes each).
DEFAULT_ENTRIES: Final = 10_000


class PasswordMemo:
    """Bounded, least recently used first out; see the module docstring."""

    def __init__(self, changed: Callable[[], bool], max_entries: int = DEFAULT_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._changed = changed
        self._max = max_entries
        self._key = os.urandom(32)
        self._known: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def _digest(self, username: str, domain: str, password: str) -> bytes:
        text = f"{username}\0{domain}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, text, hashlib.sha256).digest()

    def knows(self, username: str, domain: str, password: str) -> bool:
        """Whether this password was proven right since credentials last changed."""
        if self._changed():
            self._known.clear()
            return False
        digest = self._digest(username, domain, password)
        if digest in self._known:
            self._known.move_to_end(digest)
            return True
        return False

    def remember(self, username: str, domain: str, password: str) -> None:
        """Record a password the provider has just found right."""
        self._known[self._digest(username, domain, password)] = None
        if len(self._known) > self._max:
            self._known.popitem(last=False)
