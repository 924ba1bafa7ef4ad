"""The code blocks of README.md and docs/*.md, for the tests that exercise them.

Operators copy these blocks, so each is checked by a test: `toml` blocks are
configurations (tests/unit/test_docs_snippets.py), shell blocks are commands.
A shell block is named by an HTML comment on the line before its fence,

    <!-- commands: backup -->
    ```sh
    ...
    ```

and the test that runs it asks for it by that name (`shell_block(page, name)`),
so the commands run are the documented ones, never a copy of them.  A block
right after ``<!-- verbatim: PATH -->`` is a copy of a file, checked against it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the pages an operator reads
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_LANGUAGES = frozenset({"sh", "shell", "bash", "console"})

_BLOCK = re.compile(
    r"^(?:<!-- (?P<kind>verbatim|commands): (?P<name>\S+) -->\n)?"
    r"```(?P<lang>[\w-]*)\n(?P<text>.*?)^```",
    re.S | re.M,
)


@dataclass(frozen=True, slots=True)
class Block:
    page: str  # relative to the repository, e.g. "docs/operations.md"
    line: int  # of the opening fence
    lang: str
    text: str
    #: `<!-- commands: NAME -->` before a shell block
    name: str | None = None
    #: `<!-- verbatim: PATH -->` before a copy of a file
    verbatim: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}" + (f" ({self.name})" if self.name else "")


def blocks(*langs: str) -> list[Block]:
    """Every fenced block of the pages in one of `langs` (all of them when none given)."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            if langs and match["lang"] not in langs:
                continue
            kind, name = match["kind"], match["name"]
            fence = match.start("lang")
            found.append(
                Block(
                    page=str(page.relative_to(ROOT)),
                    line=text.count("\n", 0, fence) + 1,
                    lang=match["lang"],
                    text=match["text"],
                    name=name if kind == "commands" else None,
                    verbatim=name if kind == "verbatim" else None,
                )
            )
    return found


def shell_blocks() -> list[Block]:
    return blocks(*SHELL_LANGUAGES)


def shell_block(page: str, name: str) -> Block:
    """The shell block of `page` (e.g. "docs/operations.md") named `name`."""
    named = [b for b in shell_blocks() if b.page == page and b.name == name]
    if len(named) != 1:
        raise LookupError(f"{page} has {len(named)} shell blocks named {name!r}")
    return named[0]


def commands(block: Block) -> list[str]:
    """The commands of a shell block, one string each.

    A block that shows a session (lines starting with ``$ ``) is read as one:
    the prompted lines are the commands, the rest is their output.  Otherwise
    every line is a command, a trailing backslash continues it on the next
    line, and blank lines and comment lines are skipped.
    """
    lines = block.text.splitlines()
    if any(line.startswith("$ ") for line in lines):
        return [line[2:] for line in lines if line.startswith("$ ")]
    found: list[str] = []
    pending = ""
    for line in lines:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        found.append(pending + line)
        pending = ""
    if pending:
        found.append(pending)
    return found


def simple_commands(command: str) -> list[list[str]]:
    """The simple commands of a command line (split at pipes, `&&`, `||` and `;`),
    each as its words, comments dropped.  Raises ValueError for unbalanced quotes."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    simple: list[list[str]] = [[]]
    for word in lexer:
        if word and set(word) <= set(";&|"):
            simple.append([])
        else:
            simple[-1].append(word)
    return [words for words in simple if words]


def chatgate_arguments(words: list[str]) -> list[str] | None:
    """The arguments of a `chatgate` invocation (``chatgate …``, ``.venv/bin/chatgate …``,
    ``python -m chatgate …``, after ``sudo -u USER``), or None for another command."""
    if words and words[0] == "sudo":
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] in ("-u", "-g") else words[1:]
    if not words:
        return None
    if Path(words[0]).name == "chatgate":
        return words[1:]
    if Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "chatgate"]:
        return words[3:]
    return None
