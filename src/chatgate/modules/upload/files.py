"""Where uploaded files live: ``data_dir/uploads``, one file per slot named by
its token, and the purge of what expired.

Names on disk are tokens only (`slots.TOKEN`, checked before any path is
made), never the client's filename, so no request can name a path outside the
folder.  The folder is 0700 and files 0600: only the server reads them.  A PUT
writes ``<token>.part`` (created exclusively) and renames it to ``<token>``
when its last byte is written, so a GET never sees half a file.

Files are this node's: a cluster serves a file from the node that stored it
unless ``data_dir/uploads`` is a shared folder (see docs/upload.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from chatgate.modules.upload.slots import TOKEN
from chatgate.storage.repositories.uploads import UploadRepository

log = logging.getLogger(__name__)

#: tokens checked against the database per query during the purge
BATCH = 500


class UploadFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def path(self, token: str) -> Path:
        """The stored file of `token`; ValueError for anything not a token."""
        if not TOKEN.fullmatch(token):
            raise ValueError("not a slot token")
        return self.root / token

    def partial(self, token: str) -> Path:
        return self.path(token).with_name(token + ".part")

    def open_partial(self, token: str) -> int:
        """A new ``.part`` file (FileExistsError when a PUT already made one)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        return os.open(self.partial(token), flags, 0o600)

    def remove(self, token: str) -> None:
        for path in (self.path(token), self.partial(token)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def tokens(self) -> list[str]:
        """Tokens of every file here (stored or partial)."""
        found = set()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                name = entry.name.removesuffix(".part")
                if TOKEN.fullmatch(name):
                    found.add(name)
        return sorted(found)


async def purge(folder: UploadFolder, repository: UploadRepository, now: datetime) -> int:
    """Delete expired slots with their files, then files no slot names (their
    account was deleted); returns how many slots and orphans went."""
    removed = 0
    while True:
        expired = await repository.expired(now)
        if not expired:
            break
        await asyncio.to_thread(_remove_all, folder, expired)
        await repository.forget(expired)
        removed += len(expired)
        if len(expired) < 1000:
            break
    tokens = await asyncio.to_thread(folder.tokens)
    for start in range(0, len(tokens), BATCH):
        batch = tokens[start : start + BATCH]
        orphans = set(batch) - await repository.known(batch)
        await asyncio.to_thread(_remove_all, folder, orphans)
        removed += len(orphans)
    if removed:
        log.info("upload purge: %d expired or orphaned file(s) removed", removed)
    return removed


def _remove_all(folder: UploadFolder, tokens: Iterable[str]) -> None:
    for token in tokens:
        folder.remove(token)
