"""Files at rest: the data directory is 0700 and every file chatgate keeps in it 0600.

What the server keeps on disk is credentials: the database holds SCRAM keys,
the zero-knowledge chain (about 500 SHA-1 steps from the password) and, with
`[modules.legacy_auth] digest`, the password itself; `certs/` holds generated
TLS private keys.  So nothing there may depend on the umask of whoever starts
the server or the CLI first: directories are created 0700 and files 0600
explicitly (a umask can only remove bits from what ``open``/``mkdir`` ask for,
and SQLite creates a database 0644 whatever the umask), and what an earlier
version left readable to others is tightened, with a log line, at start.

Tightening clears the group and other bits and leaves the owner's (0644 -> 0600,
0755 -> 0700); it touches only what the current user owns, never follows
symbolic links, and leaves a shared sticky directory such as /tmp alone.  This
module changes modes and creates empty files; it never reads contents.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "create_private_file",
    "make_private_dir",
    "secure_data_dir",
    "tighten",
    "write_private_file",
]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: permission bits for anyone but the owner
_OTHERS = 0o077


def make_private_dir(path: Path) -> Path:
    """Create the directory `path` 0700 when missing (missing parents get the
    default mode, as ``mkdir -p -m 700`` gives them); an existing one is left as
    it is.  Returns `path`."""
    path = Path(path)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        return path  # made meanwhile by another process, with this same mode
    # mkdir's mode went through the umask, which may have removed the owner's bits too.
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def create_private_file(path: Path) -> bool:
    """Create `path` empty and 0600 unless it exists; True when this call made it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    return True


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, 0600 (a temporary file in the same
    directory, renamed over it), so a reader sees the old or the new contents."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tighten(path: Path, *, level: int = logging.WARNING) -> bool:
    """Clear the group and other permission bits of `path` if it is ours and has
    any; log the change at `level`.  A missing path, a symbolic link or another
    user's file is left alone.  True when the mode changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        return False
    mode = stat.S_IMODE(st.st_mode)
    if not mode & _OTHERS:
        return False
    if stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX:
        return False  # a shared sticky directory (/tmp): not ours to close
    new = mode & ~_OTHERS
    os.chmod(path, new)
    log.log(level, "%s: permissions tightened from %04o to %04o", path, mode, new)
    return True


def secure_data_dir(data_dir: Path, *, level: int = logging.WARNING) -> None:
    """Create `data_dir` 0700 if missing, then tighten it and everything in it,
    logging each change at `level`.

    Called at every start: it fixes what earlier versions (or a permissive
    umask) left readable, and what other code created with default modes.  A
    data directory that is a shared sticky one is refused a walk (with a warning):
    it is not chatgate's to close.
    """
    data_dir = make_private_dir(data_dir)
    if os.lstat(data_dir).st_mode & stat.S_ISVTX:
        log.warning("%s is a shared directory: its files were not checked", data_dir)
        return
    tighten(data_dir, level=level)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            tighten(Path(root, name), level=level)
        # Do not descend into directories we could not have made ours.
        dirs[:] = [d for d in dirs if os.lstat(Path(root, d)).st_uid == os.geteuid()]
