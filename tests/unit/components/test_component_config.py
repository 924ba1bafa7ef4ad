"""`[[components]]` and `[component_listener]`: what is refused at load, with which message."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.config import load_config
from chatgate.vocabulary.errors import ConfigError

BASE = """
[server]
domain = "example.org"
[hosts."example.net"]
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "chatgate.toml"
    path.write_text(BASE + text)
    return load_config(path)


def test_components_are_off_by_default(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    assert cfg.components == []
    assert (cfg.component_listener.host, cfg.component_listener.port) == ("127.0.0.1", 5347)


def test_a_component_with_a_secret_and_its_parent(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        '[[components]]\ndomain = "gw.example.net"\nsecret = "long enough"\n'
        '[[components]]\ndomain = "bot.elsewhere.com"\nsecret = "long enough too"\n',
    )
    gw, bot = cfg.components
    assert cfg.component_parent(gw) == "example.net"
    assert cfg.component_parent(bot) == "example.org"
    assert cfg.component_secret(gw) == "long enough"


def test_a_secret_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "gw.secret").write_text("  from-the-file \n")
    cfg = load(tmp_path, '[[components]]\ndomain = "gw.example.org"\nsecret_file = "gw.secret"\n')
    assert cfg.component_secret(cfg.components[0]) == "from-the-file"
    (tmp_path / "gw.secret").write_text("abc\n")
    with pytest.raises(ConfigError, match="shorter than 6"):
        cfg.component_secret(cfg.components[0])
    (tmp_path / "gw.secret").unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        cfg.component_secret(cfg.components[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('domain = "gw.example.org"\nsecret = ""', "shorter than 6"),
        ('domain = "gw.example.org"\nsecret = "12345"', "shorter than 6"),
        ('domain = "gw.example.org"', "exactly one of secret and secret_file"),
        ('domain = "gw.example.org"\nsecret = "secret"\nsecret_file = "x"', "exactly one"),
        ('domain = "example.org"\nsecret = "secret"', "is a virtual host"),
        ('domain = "example.net"\nsecret = "secret"', "is a virtual host"),
        ('domain = "gateway"\nsecret = "secret"', "not a component domain"),
        ('domain = "GW.example.org"\nsecret = "secret"', "not a component domain"),
        ('domain = "u@gw.example.org"\nsecret = "secret"', "not a component domain"),
        ('domain = "-gw.example.org"\nsecret = "secret"', "not a component domain"),
        ('domain = "gw.example.org"\nsecret = "secret"\nparent = "other.org"', "is not served"),
        ('domain = "gw.example.org"\nsecret = "secret"\ncolour = "red"', "colour"),
    ],
)
def test_bad_components_are_refused_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, "[[components]]\n" + text + "\n")


def test_a_domain_configured_twice_and_a_port_shared_with_a_c2s_listener_are_refused(
    tmp_path: Path,
) -> None:
    twice = '[[components]]\ndomain = "gw.example.org"\nsecret = "secret"\n' * 2
    with pytest.raises(ConfigError, match="configured twice"):
        load(tmp_path, twice)
    shared = (
        '[[listeners]]\nport = 5347\n[[components]]\ndomain = "gw.example.org"\nsecret = "secret"\n'
    )
    with pytest.raises(ConfigError, match="component_listener"):
        load(tmp_path, shared)
    # Without components the listener is not opened, so the port is free to share.
    assert load(tmp_path, "[[listeners]]\nport = 5347\n").components == []
