"""The stream rules as a text file: what ``chatgate streams rules export`` writes and
``rules import`` reads back.

The format is the rules' own text form (`policy.Rule`, ``str(rule)`` and
`Rule.parse` are inverses), one rule per line::

    # chatgate stream rules (chatgate streams rules export)
    publish,play live/* group:staff
    play public/* anonymous

- a line whose first non-blank character is ``#`` is a comment, and blank lines
  are ignored.  A rule never starts with ``#`` (it starts with its actions), so
  the two cannot be confused; a ``#`` later in a line is part of the rule (a
  group name may hold one), so there are no inline comments;
- every other line must be a valid rule; `parse_rules_file` checks them all
  and reports every bad line with its number, so an import can refuse the whole
  file before storing anything;
- the same rule twice (the same pattern, actions and grantee, however spelled:
  ``play,publish`` and ``publish,play``, ``user:Alice@Example.ORG`` and
  ``user:alice@example.org``) is kept once;
- the file is UTF-8 (a byte-order mark is allowed); lines end at LF or CR LF.

`format_rules_file` writes every rule in its canonical spelling, with a header
saying what the file is and how to read it back, and each group of rules under
a comment saying where it came from (the configuration, the store).

Pure: text in, rules out, no storage, no printing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chatgate.streams.policy import Rule

__all__ = ["HEADER", "RuleLine", "RulesFile", "format_rules_file", "parse_rules_file"]

HEADER = (
    "# chatgate stream rules: one rule per line, ACTIONS PATTERN GRANTEE\n"
    "# (ACTIONS: publish, play or publish,play; PATTERN: a stream name, NAME/* or *;\n"
    "# GRANTEE: user:JID, group:NAME, authenticated, token or anonymous).\n"
    "# Read back with `chatgate streams rules import FILE`: lines starting with #\n"
    "# and blank lines are ignored; rules already present are left as they are.\n"
)


@dataclass(frozen=True, slots=True)
class RuleLine:
    """A rule read from a file, and the line it was on."""

    line: int
    rule: Rule


@dataclass(frozen=True, slots=True)
class RulesFile:
    """What `parse_rules_file` found: the rules (first spelling of each, in file
    order), the lines that repeated one, and the lines that are not rules."""

    rules: list[RuleLine]
    duplicates: list[tuple[int, int]]
    """(line, first line with the same rule)."""
    invalid: list[tuple[int, str]]
    """(line, reason)."""


def _lines(text: str) -> list[str]:
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_rules_file(text: str) -> RulesFile:
    """Read a rules file (module docstring).  Never raises for any text."""
    rules: list[RuleLine] = []
    duplicates: list[tuple[int, int]] = []
    invalid: list[tuple[int, str]] = []
    first_line: dict[Rule, int] = {}
    for number, raw in enumerate(_lines(text), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            rule = Rule.parse(stripped)
        except ValueError as exc:  # InvalidPattern too: the message says what is wrong
            invalid.append((number, str(exc)))
            continue
        first = first_line.setdefault(rule, number)
        if first != number:
            duplicates.append((number, first))
            continue
        rules.append(RuleLine(number, rule))
    return RulesFile(rules, duplicates, invalid)


def format_rules_file(sections: Sequence[tuple[str, Iterable[Rule]]], *, note: str = "") -> str:
    """The file `parse_rules_file` reads back: the header, an optional `note` line
    (made a comment), then each (title, rules) section under ``# title``, every
    rule in its canonical spelling.  Sections without rules are left out."""
    out = [HEADER]
    if note:
        out.append("".join(f"# {line}\n" for line in note.splitlines()))
    for title, rules in sections:
        texts = [str(rule) for rule in rules]
        if not texts:
            continue
        out.append(f"\n# {title}\n")
        out.append("".join(f"{text}\n" for text in texts))
    return "".join(out)
