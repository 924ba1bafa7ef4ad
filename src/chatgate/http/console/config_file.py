"""Edit a few keys of the operator's TOML configuration file, keeping the rest.

The setup wizard writes `[server] domain`, `[tls] certificate`/`private_key`
and `[storage] url` into the file the server was started with.  Everything else
(comments, order, other tables, the operator's spacing) must survive, so the
file is edited line by line rather than parsed and dumped: a key's line is
replaced where it is, a missing key is added under its table's header, a
missing table is appended.  The result is parsed again and must equal the old
file's data with exactly the asked changes; anything else (a dotted key, an
inline table, a multi-line string in the way) is refused with `ConfigEditError`
before a byte is written.  The old file is kept beside it as `NAME.bak`.

Never touches anything but the file it is given and its `.bak`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

#: (table, key) -> the new string value, or None to remove the key
Edits = Mapping[tuple[str, str], str | None]

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_ARRAY_HEADER = re.compile(r"^\s*\[\[")


class ConfigEditError(Exception):
    """The file cannot be edited safely (or not at all); the message says why."""


def toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's for every character."""
    return json.dumps(value, ensure_ascii=False)


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(key)}\s*=")


def edit_text(text: str, edits: Edits) -> str:
    """`text` with `edits` applied; raises ConfigEditError when the result would not
    be the same configuration with exactly those changes."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigEditError(f"the file is not valid TOML: {exc}") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for (table, key), value in edits.items():
        lines = _apply(lines, table, key, value)
    result = "".join(lines)
    try:
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigEditError(f"editing the file would break it: {exc}") from None
    expected = copy.deepcopy(before)
    for (table, key), value in edits.items():
        section = expected.setdefault(table, {})
        if not isinstance(section, dict):
            raise ConfigEditError(f"[{table}] is not a table in the file")
        if value is None:
            section.pop(key, None)
            if not section and table not in before:
                del expected[table]
        else:
            section[key] = value
    if after != expected:
        raise ConfigEditError(
            "the file sets these keys in a form the wizard does not edit (a dotted key or an"
            " inline table): change them by hand"
        )
    return result


def _apply(lines: list[str], table: str, key: str, value: str | None) -> list[str]:
    """Replace, add or remove `key` in `[table]` (line-level; `edit_text` checks)."""
    start, end = _table_span(lines, table)
    pattern = _key_line(key)
    new_line = None if value is None else f"{key} = {toml_string(value)}\n"
    if start is not None:
        for index in range(start + 1, end):
            if pattern.match(lines[index]):
                stripped = lines[index].split("=", 1)[1].lstrip()
                if stripped.startswith(('"""', "'''", "[", "{")):
                    raise ConfigEditError(
                        f"[{table}] {key} is written over several lines or as a table: edit"
                        " it by hand"
                    )
                if new_line is None:
                    return lines[:index] + lines[index + 1 :]
                comment = _comment(stripped)
                if comment:
                    new_line = f"{new_line[:-1]}  {comment}\n"
                return [*lines[:index], new_line, *lines[index + 1 :]]
        if new_line is None:
            return lines
        return [*lines[: start + 1], new_line, *lines[start + 1 :]]
    if new_line is None:
        return lines
    tail = [] if not lines or lines[-1].strip() == "" else ["\n"]
    return [*lines, *tail, f"[{table}]\n", new_line]


def _comment(value_text: str) -> str:
    """The comment after a one-line value (`"x"  # why`), or "": the first `#` that
    ends a parsable value starts it (a `#` inside a string does not)."""
    for index, char in enumerate(value_text):
        if char == "#":
            try:
                tomllib.loads("v = " + value_text[:index])
            except tomllib.TOMLDecodeError:
                continue
            return value_text[index:].rstrip("\n").rstrip()
    return ""


def _table_span(lines: list[str], table: str) -> tuple[int | None, int]:
    """The index of `[table]`'s header and of the line after its last line."""
    start: int | None = None
    for index, line in enumerate(lines):
        header = _HEADER.match(line)
        if header is None and not _ARRAY_HEADER.match(line):
            continue
        if start is not None:
            return start, index
        if header is not None and header.group(1).strip().strip("\"'") == table:
            start = index
    return start, len(lines)


def write_config(path: Path, edits: Edits) -> Path | None:
    """Apply `edits` to the file at `path` (made when missing), keeping the old file
    as `path.bak`; returns the backup's path (None: there was no file).  The new file
    replaces the old one in one rename, with the old one's permissions.  Raises
    ConfigEditError (nothing written) or OSError."""
    backup: Path | None = None
    if path.exists():
        text = path.read_text(encoding="utf-8")
        new_text = edit_text(text, edits)
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
        mode: int | None = path.stat().st_mode & 0o7777
    else:
        new_text = edit_text("", edits)
        mode = None
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return backup
