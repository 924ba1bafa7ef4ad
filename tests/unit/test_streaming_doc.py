"""The `chatgate streams` commands of docs/streaming.md ("Issuing and revoking"),
run as documented (`tests.docblocks`) against a real data directory, in the
order an operator would: each must succeed and do what the page says."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.cli import app
from chatgate.streams import tokens
from tests.docblocks import chatgate_arguments, commands, shell_block, simple_commands

from .test_cli_streams import CONFIG, make_accounts, stored_rules, with_state

PAGE = "docs/streaming.md"


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "chatgate.toml"
    path.write_text(CONFIG, encoding="utf-8")
    make_accounts(path, "alice")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "publish.password").write_text("alice alices-wowza-key-1\n")
    here = Path.cwd()
    os.chdir(tmp_path)  # relative paths in the commands (rules.txt, conf/...) land here
    try:
        yield path
    finally:
        os.chdir(here)


def run_block(config: Path, name: str, **values: str) -> list[Result]:
    """Run the block's commands; `values` replace placeholders in their words (the
    page's ``1AQ...`` stands for a token the reader has)."""
    results = []
    for command in commands(shell_block(PAGE, name)):
        for words in simple_commands(command):
            arguments = chatgate_arguments([values.get(w, w) for w in words])
            assert arguments is not None, command
            result = CliRunner().invoke(app, [*arguments, "--config", str(config)])
            assert result.exit_code == 0, (command, result.output)
            results.append(result)
    return results


def test_the_rules_commands(config: Path) -> None:
    run_block(config, "streams-rules")
    # added, listed, exported, removed, then imported back: stored once
    assert stored_rules(config) == ["play live/* token"]
    assert "play live/* token" in Path("rules.txt").read_text()


def test_the_key_commands(config: Path) -> None:
    issued, listed, revoked, imported = run_block(config, "streams-keys")
    key = issued.stdout.strip()
    assert key and key not in listed.output and "alice@localhost" in listed.output
    assert "revoked" in revoked.output and "imported" in imported.output
    stored = with_state(config, lambda db, state: state.keys.key_of("alice@localhost"))
    assert stored == "alices-wowza-key-1"


def test_the_token_commands(config: Path) -> None:
    run_block(config, "streams-rules")  # a token rule for live/*
    keys = with_state(config, lambda db, state: _keys(state))
    to_revoke = tokens.issue(keys, 1, "live/alice", "play", 2**31)
    plain, with_url, bound, revoked = run_block(config, "streams-tokens", **{"1AQ...": to_revoke})
    assert "revoked" in revoked.output
    token_id = tokens.identify(to_revoke, keys).token_id or ""
    assert with_state(config, lambda db, state: state.revoked.is_revoked(token_id))
    first = plain.stdout.split()[0]
    verdict = tokens.verify(first, keys, stream="live/alice", action="play", now=0, address=None)
    assert verdict.valid
    token, url = with_url.stdout.split()
    assert url == f"rtmp://media.example.org/live/alice?token={token}"
    assert tokens.verify(
        token, keys, stream="live/alice", action="play", now=0, address=None
    ).one_time
    address_bound = bound.stdout.split()[0]
    assert tokens.verify(
        address_bound, keys, stream="live/alice", action="publish", now=0, address="203.0.113.7"
    ).valid


def test_the_live_command(config: Path) -> None:
    (listed,) = run_block(config, "streams-live")
    assert listed.exit_code == 0


async def _keys(state: object) -> dict[int, bytes]:
    return state.token_keys  # type: ignore[attr-defined, no-any-return]
