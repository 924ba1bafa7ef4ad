"""The wizard's edits of the operator's TOML file: only the asked keys change, in
place; comments, order and other tables stay; what cannot be edited safely is
refused before anything is written."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chatgate.http.console.config_file import ConfigEditError, edit_text, write_config

ORIGINAL = """\
# chatgate for example.org
[server]
domain = "old.example"  # the XMPP domain
data_dir = "var"

[[listeners]]
port = 5222

[tls]
certificate = "/etc/ssl/old.pem"
private_key = "/etc/ssl/old.key"
key_type = "rsa"
"""


def test_a_key_is_replaced_in_place_keeping_its_comment() -> None:
    text = edit_text(ORIGINAL, {("server", "domain"): "new.example"})
    assert text == ORIGINAL.replace('"old.example"', '"new.example"')


def test_keys_are_removed_and_missing_tables_appended() -> None:
    text = edit_text(
        ORIGINAL,
        {
            ("tls", "certificate"): None,
            ("tls", "private_key"): None,
            ("storage", "url"): "sqlite+aiosqlite:///var/x.db",
        },
    )
    data = tomllib.loads(text)
    assert data["tls"] == {"key_type": "rsa"}
    assert data["storage"] == {"url": "sqlite+aiosqlite:///var/x.db"}
    assert text.startswith("# chatgate for example.org\n[server]\n")
    assert text.endswith('\n[storage]\nurl = "sqlite+aiosqlite:///var/x.db"\n')


def test_a_missing_key_goes_under_its_existing_table() -> None:
    text = edit_text(
        "[storage]\n# where\n\n[server]\ndata_dir = 'var'\n", {("server", "domain"): "d.example"}
    )
    assert tomllib.loads(text)["server"] == {"data_dir": "var", "domain": "d.example"}


def test_strings_are_escaped() -> None:
    tricky = 'C:\\certs\\"quoted" #not a comment'
    text = edit_text(ORIGINAL, {("tls", "certificate"): tricky})
    assert tomllib.loads(text)["tls"]["certificate"] == tricky


def test_a_dotted_or_inline_key_is_refused() -> None:
    with pytest.raises(ConfigEditError):
        edit_text('server.domain = "x"\n', {("server", "domain"): "y"})
    with pytest.raises(ConfigEditError):
        edit_text('storage = { url = "x" }\n', {("storage", "url"): "y"})
    with pytest.raises(ConfigEditError):
        edit_text("not = [toml", {("server", "domain"): "y"})


def test_write_keeps_a_backup_and_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text(ORIGINAL)
    path.chmod(0o640)
    backup = write_config(path, {("server", "domain"): "new.example"})
    assert backup == tmp_path / "chatgate.toml.bak" and backup.read_text() == ORIGINAL
    assert tomllib.loads(path.read_text())["server"]["domain"] == "new.example"
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_refused_edit_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text('server.domain = "x"\n')
    with pytest.raises(ConfigEditError):
        write_config(path, {("server", "domain"): "y"})
    assert path.read_text() == 'server.domain = "x"\n'
    assert not (tmp_path / "chatgate.toml.bak").exists()


def test_a_missing_file_is_made(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    assert write_config(path, {("server", "domain"): "d.example"}) is None
    assert tomllib.loads(path.read_text()) == {"server": {"domain": "d.example"}}
