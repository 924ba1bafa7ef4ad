"""Every `toml` block and every shell block of the docs is exercised.

Operators copy these blocks. A `toml` block that names an option or a module
that does not exist, or a mechanism on a host that may not offer it, would stop
their server at start; one that cannot be pasted into the file `chatgate init`
wrote would fail before that. A shell command that names a subcommand, option,
make target or file that is gone fails as written.

So: every `toml` block is a configuration the server accepts, its `[modules.*]`
tables included (checked by the server's own `validate_module_options`), and it
pastes into an `init` file, or it edits only tables that file already has (see
docs/operations.md, "The configuration file"). Every shell block parses, its
`chatgate` commands are accepted by the CLI, and it is named
(`<!-- commands: NAME -->`) and run by the test that asks for that name (see
tests/docblocks.py), such as the backup and restore in
tests/e2e/test_backup_restore.py.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatgate.cli import app
from chatgate.config import DEFAULT_CONFIG_TEXT, Config
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.register import RegisterOptions
from chatgate.modules.registry import builtin_modules, validate_module_options
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.vhost import validate_host_mechanisms
from tests.docblocks import (
    ROOT,
    Block,
    blocks,
    chatgate_arguments,
    commands,
    shell_blocks,
    simple_commands,
)

#: pages whose snippets name mechanisms of packages that are not installed here
PLUGIN_PAGES = {"docs/sasl-plugins.md"}
#: a block right after `<!-- verbatim: PATH -->` is a copy of a file (e.g. a plugin's
#: pyproject.toml), checked against that file by the page's own test, not a configuration
TOML = [
    pytest.param(block, id=f"{block.page}:{block.line}")
    for block in blocks("toml")
    if block.verbatim is None
]
SHELL = [
    pytest.param(block, id=f"{block.page}:{block.line}:{block.name or '-'}")
    for block in shell_blocks()
]
#: the tables `chatgate init` writes
INIT = tomllib.loads(DEFAULT_CONFIG_TEXT)
#: Shell blocks written before every block had to be named and run by a test, as
#: (page, first command).  Their commands are still parsed below; name each and run
#: it from a test, then remove it here.  Never add to this set.
UNNAMED_BEFORE = {
    ("docs/benchmarks.md", "make bench"),
    ("docs/registration.md", "chatgate registration pending"),
    ("docs/registration.md", "chatgate invite create --uses 5 --expires 7d"),
    ("docs/sasl-plugins.md", ".venv/bin/pip install ./examples/sasl-plugin"),
}
#: Snippets written before they had to paste into an `init` file, that mix a setting of
#: an `[auth]` the file has with a new table (DIGEST-MD5: the mechanism in `[auth]
#: mechanisms`, and `[modules.legacy_auth] digest_md5`).  Split each into the setting
#: and a table of its own, then remove it here.  Never add to this set.
MIXED_BEFORE: set[str] = set()


# ---------------------------------------------------------------- toml


def check_configuration(data: dict[str, Any], page: str) -> None:
    """What `chatgate check` and the server's start check, short of files and network."""
    config = Config.model_validate(data)
    validate_module_options(config, builtin_modules(load_entry_points=False))
    if page not in PLUGIN_PAGES:
        validate_host_mechanisms(config, builtin_mechanisms(load_entry_points=False))


def merged(base: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    """`base` with the tables of `edit` merged in (an array such as [[listeners]] replaced)."""
    out = dict(base)
    for key, value in edit.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("block", TOML)
def test_the_snippet_is_a_valid_configuration(block: Block) -> None:
    check_configuration(tomllib.loads(block.text), block.page)


@pytest.mark.parametrize("block", TOML)
def test_the_snippet_pastes_into_an_init_file_or_only_edits_its_tables(block: Block) -> None:
    snippet = tomllib.loads(block.text)
    try:
        pasted = tomllib.loads(DEFAULT_CONFIG_TEXT + "\n" + block.text)
    except tomllib.TOMLDecodeError as exc:
        # Not pastable as a whole (it declares a table the file has): then it may only
        # show settings of those tables, never mix them with new ones.
        new = sorted(set(snippet) - set(INIT))
        assert not new or block.text in MIXED_BEFORE, (
            f"{block.where}: pasted into the file `chatgate init` writes it fails ({exc});"
            f" it declares tables that file already has and adds {new}: show the new"
            " tables on their own"
        )
        pasted = merged(INIT, snippet)
    check_configuration(pasted, block.page)


def test_modules_of_snippets_are_checked_by_the_servers_own_validation() -> None:
    # A misspelt module or option in a snippet fails exactly as it would at start.
    with pytest.raises(Exception, match=r"modules\.register\.enabeld: unknown option"):
        check_configuration(tomllib.loads("[modules.register]\nenabeld = true\n"), "x.md")
    with pytest.raises(Exception, match=r"modules\.regster: no such module"):
        check_configuration(tomllib.loads("[modules.regster]\n"), "x.md")


def test_there_are_snippets_to_check() -> None:
    assert len(TOML) >= 10
    assert len(SHELL) >= 10


# ---------------------------------------------------------------- shell

MAKE_TARGETS = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
TEST_SOURCES = [
    p
    for p in (ROOT / "tests").rglob("*.py")
    if p.name not in ("test_docs_snippets.py", "docblocks.py")
]


def is_session(block: Block) -> bool:
    """A block showing commands with their output (`$ ` prompts)."""
    return any(line.startswith("$ ") for line in block.text.splitlines())


@pytest.mark.parametrize("block", SHELL)
def test_the_shell_block_is_named_and_run_by_a_test(block: Block) -> None:
    first = commands(block)[0].split("#")[0].strip()
    if block.name is None:
        assert (block.page, first) in UNNAMED_BEFORE, (
            f"{block.where}: name the block (<!-- commands: NAME --> before its fence) and"
            " run it from a test with tests.docblocks.shell_block(page, NAME)"
        )
        return
    assert (block.page, first) not in UNNAMED_BEFORE, "named now: remove it from UNNAMED_BEFORE"
    same = [b for b in shell_blocks() if b.page == block.page and b.name == block.name]
    assert len(same) == 1, f"{block.where}: two blocks of {block.page} are named {block.name}"
    users = [p for p in TEST_SOURCES if f'"{block.name}"' in p.read_text(encoding="utf-8")]
    assert users, f"{block.where}: no test asks for the block {block.name!r}"


@pytest.mark.parametrize("block", SHELL)
def test_the_shell_commands_parse(block: Block) -> None:
    if not is_session(block):
        syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        assert syntax.returncode == 0, f"{block.where}: {syntax.stderr}"
    for command in commands(block):
        for words in simple_commands(command):
            check_command(block, words)


def check_command(block: Block, words: list[str]) -> None:
    """A `chatgate` command the CLI accepts; a make target the Makefile has; a module
    `python -m` can run; a path into this repository (./…, examples/…) that exists."""
    arguments = chatgate_arguments(words)
    if arguments is not None:
        # --help is handled as soon as it is reached: every word before it is parsed,
        # so an unknown subcommand or option fails here, and nothing runs.
        result = CliRunner().invoke(app, [*arguments, "--help"])
        assert result.exit_code == 0, (
            f"{block.where}: chatgate {' '.join(arguments)}:\n{result.output}"
        )
        return
    if words[0] == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        for target in targets or ["run"]:
            assert target in MAKE_TARGETS, f"{block.where}: no make target {target!r}"
    if Path(words[0]).name.startswith("python") and words[1:2] == ["-m"]:
        module = words[2]
        found = (ROOT / (module.replace(".", "/") + ".py")).exists() or (
            importlib.util.find_spec(module) is not None
        )
        assert found, f"{block.where}: no module {module!r} to run"
    for word in words[1:]:
        if word.startswith(("./", "examples/")):
            path = ROOT / word.split("[")[0]
            assert path.exists(), f"{block.where}: {word} is not in the repository"


def opening_options(text: str) -> dict[str, Any]:
    """The module options the first `toml` block of a page sets, validated."""
    first = re.search(r"```toml\n(.*?)```", text, re.S)
    assert first is not None
    config = Config.model_validate(tomllib.loads(first.group(1)))
    return validate_module_options(config, builtin_modules(load_entry_points=False))


def test_the_registration_page_leads_with_the_safe_configuration() -> None:
    # Readers copy the first example: it must not store plaintext-equivalent secrets
    # (legacy digest, DIGEST-MD5) nor the cheaply attacked zero-knowledge chain.
    options = opening_options((ROOT / "docs" / "registration.md").read_text())
    legacy, register = options["legacy_auth"], options["register"]
    assert isinstance(legacy, LegacyAuthOptions) and isinstance(register, RegisterOptions)
    assert legacy.enabled  # it shows how to turn legacy authentication on...
    assert not (legacy.digest or legacy.digest_md5 or legacy.zero_knowledge)  # ...safely
    assert not legacy.allow_plaintext_without_tls
    assert register.enabled and register.require_tls
