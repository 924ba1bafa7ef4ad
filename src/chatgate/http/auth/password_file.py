"""The `admin.password` file, as Wowza keeps it: one administrator per line,
``username hash groups``.

`hash` is H(username:realm:password) in hex (MD5 or SHA-256, the file's
`password_encoding`), a bcrypt hash (``$2a$``/``$2b$``/``$2y$``, for `basic`), or,
only with `[admin] allow_plaintext_passwords`, the password itself (`basic`).
`groups` is comma-separated (Wowza's ``|`` is read too); without it the line is
read-only.  A fourth field (Wowza's encoding name) is ignored.  ``#`` starts a
comment; blank lines are skipped.

`read_entries` / `render` are pure; `PasswordFile` re-reads the file when its
modification time or size changes (checked at most once a second), so an
operator's edit, or `chatgate admin-password`, takes effect without a restart.
A file that turns unreadable keeps the last good entries (logged).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from chatgate.http.auth.base import GROUPS
from chatgate.http.auth.digest_core import HEX_LENGTH
from chatgate.http.auth.passwords import BCRYPT_PREFIXES

__all__ = ["FileEntry", "PasswordFile", "read_entries", "render_line", "replace_entry"]

log = logging.getLogger("chatgate.http.auth")

#: seconds between two looks at the file's modification time: none, a look is one
#: stat() per login, and a line just added by `chatgate admin-password add` must
#: work at the next request (a 1 s pause here failed the docs' own example when
#: the command and curl ran within a second of the server's start)
RECHECK: Final = 0.0
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class FileEntry:
    username: str
    secret: str
    groups: frozenset[str]
    line: int

    def kind(self, algorithm: str) -> str:
        """`bcrypt`, `digest` (hex of `algorithm`'s length) or `plaintext`."""
        if self.secret.startswith(BCRYPT_PREFIXES):
            return "bcrypt"
        if len(self.secret) == HEX_LENGTH[algorithm] and set(self.secret) <= _HEX:
            return "digest"
        return "plaintext"


def _groups(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset({"readOnly"})
    names = {g.strip() for g in text.replace("|", ",").split(",") if g.strip()}
    return frozenset(g for g in names if g in GROUPS) or frozenset({"readOnly"})


def read_entries(text: str, source: str = "admin.password") -> dict[str, FileEntry]:
    """The entries of a file's text, by username (a later line wins, logged)."""
    entries: dict[str, FileEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 2:
            log.warning("%s:%d: no password hash; line skipped", source, number)
            continue
        name, secret = fields[0], fields[1]
        if name in entries:
            log.warning("%s:%d: %s listed again; this line wins", source, number, name)
        entries[name] = FileEntry(
            name, secret, _groups(fields[2] if len(fields) > 2 else None), number
        )
    return entries


def render_line(username: str, secret: str, groups: Iterable[str]) -> str:
    return f"{username} {secret} {','.join(groups)}"


def replace_entry(text: str, username: str, line: str | None) -> tuple[str, bool]:
    """`text` with `username`'s line replaced by `line` (None: removed; a missing one
    is appended), comments and other lines kept.  Returns (text, whether it was there)."""
    out: list[str] = []
    found = False
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if fields and fields[0] == username:
            if not found and line is not None:
                out.append(line)
            found = True
            continue
        out.append(raw)
    if not found and line is not None:
        out.append(line)
    return "\n".join(out) + "\n", found


class PasswordFile:
    """The entries of one file, re-read when it changes."""

    def __init__(self, path: Path, recheck: float = RECHECK) -> None:
        self.path = path
        self.recheck = recheck
        self._entries: dict[str, FileEntry] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")

    def load(self) -> dict[str, FileEntry]:
        """Read the file now.  Raises OSError when it cannot be read."""
        st = os.stat(self.path)
        text = self.path.read_text(encoding="utf-8", errors="replace")
        self._entries = read_entries(text, str(self.path))
        self._stamp = (st.st_mtime_ns, st.st_size)
        self._checked = time.monotonic()
        return self._entries

    def entries(self) -> dict[str, FileEntry]:
        """The current entries, re-read if the file changed since."""
        now = time.monotonic()
        if now - self._checked >= self.recheck:
            self._checked = now
            try:
                st = os.stat(self.path)
                if (st.st_mtime_ns, st.st_size) != self._stamp:
                    self.load()
                    log.info("admin: %s re-read (%d entries)", self.path, len(self._entries))
            except OSError as exc:
                log.warning(
                    "admin: cannot read %s (%s); keeping the %d entries read before",
                    self.path,
                    exc.strerror or exc,
                    len(self._entries),
                )
        return self._entries

    def get(self, username: str) -> FileEntry | None:
        return self.entries().get(username)
