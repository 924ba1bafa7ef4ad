"""Reading Wowza's ``publish.password`` file, so its publishers keep their passwords
as chatgate stream keys (``chatgate streams keys import-wowza``).

The format (seed ``000_…``: "Publish password file (format
[username][space][password])"; Wowza Streaming Engine writes it from its
Manager's *Source Authentication* page, ``[install-dir]/conf/publish.password``):

- one ``username password`` pair per line;
- a line whose first non-blank character is ``#`` is a comment (the file Wowza
  ships starts with two: the format line and ``#username password``);
- blank lines are ignored.

What is accepted, and why:

- **Separators**: any run of spaces and tabs between the two fields, and
  around them.  Wowza's Manager accepts only letters, digits, ``.``, ``_`` and
  ``-`` in source names and passwords, so no field can hold a blank and the split
  is never ambiguous; files edited by hand use tabs to line columns up.
- **Exactly two fields.**  ``alice s3cret extra`` is refused rather than read as
  the password ``s3cret`` (or ``s3cret extra``): nothing here guesses where a
  field ends, as `chatgate user import` refuses such a line too.  A trailing
  ``# comment`` after the password is three or more fields, so it is refused as
  well: the file has no inline comments.
- **Characters**: any printable non-blank text.  Wowza's own rule (letters,
  digits, ``. _ -``) is narrower, but a password outside it in a hand-written
  file is still what the encoder sends, and refusing it would lock that
  publisher out after the migration.
- **Encoding**: UTF-8, with or without a byte-order mark; CR LF line ends.
- **The same username twice** (exactly, as written): the later line is refused
  ("also on line N"), so an operator sees the conflict instead of one password
  silently winning.  (Two spellings that prepare to one account, ``Alice`` and
  ``alice``, are the caller's to find: only it knows how names are prepared.)

A password never appears in a reason, a repr or an exception: `WowzaEntry`
hides it from ``repr``, and a malformed line is described by its field count
only (its text might be a password alone).

This module reads text and returns records: it never touches storage or prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["InvalidLine", "WowzaEntry", "WowzaFile", "parse_publish_password"]


@dataclass(frozen=True, slots=True)
class WowzaEntry:
    """One ``username password`` line: the username as written, and the password,
    kept out of ``repr`` so a log or a traceback never shows it."""

    line: int
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line that is neither a pair, a comment nor blank; `reason` never quotes it."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class WowzaFile:
    """What `parse_publish_password` found, each list in file order."""

    entries: list[WowzaEntry]
    invalid: list[InvalidLine]
    comments: int
    """Comment and blank lines skipped."""


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # str.splitlines would also break at form feeds, vertical tabs and U+2028,
    # renumbering every line after one; a line here ends at LF (CR LF, lone CR).
    normalized = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = normalized.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    yield from enumerate(lines, start=1)


def _fields(line: str) -> list[str]:
    """The line's fields, separated by runs of spaces and tabs (nothing else)."""
    return [part for part in line.replace("\t", " ").split(" ") if part]


def _field_error(text: str) -> str | None:
    if not text.isprintable():
        return "holds a control or other non-printable character"
    if any(char.isspace() for char in text):
        return "holds a blank other than a space or tab"
    return None


def parse_publish_password(text: str) -> WowzaFile:
    """Read a ``publish.password`` file's text (module docstring).  Never raises:
    every line is an entry, a skipped comment or blank, or an `InvalidLine`."""
    entries: list[WowzaEntry] = []
    invalid: list[InvalidLine] = []
    comments = 0
    first_line: dict[str, int] = {}
    for number, raw in _lines(text):
        stripped = raw.strip(" \t")
        if not stripped or stripped.startswith("#"):
            comments += 1
            continue
        parts = _fields(stripped)
        if len(parts) != 2:
            what = "only one field" if len(parts) == 1 else f"{len(parts)} fields"
            invalid.append(
                InvalidLine(
                    number,
                    f"{what}: a line is 'username password', separated by spaces or tabs"
                    " (no inline comments, no blanks inside a field)",
                )
            )
            continue
        username, password = parts
        user_error = _field_error(username)
        if user_error is not None:
            invalid.append(InvalidLine(number, f"the username {user_error}"))
            continue
        password_error = _field_error(password)
        if password_error is not None:
            invalid.append(InvalidLine(number, f"the password of {username!r} {password_error}"))
            continue
        first = first_line.setdefault(username, number)
        if first != number:
            invalid.append(
                InvalidLine(number, f"{username!r} is also on line {first}; that line is kept")
            )
            continue
        entries.append(WowzaEntry(number, username, password))
    return WowzaFile(entries, invalid, comments)
