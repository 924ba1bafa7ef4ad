"""Configuration loading: defaults, precise errors, and documentation kept complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from chatgate.config import (
    DEFAULT_CONFIG_TEXT,
    AnonymousLimits,
    ComponentConfig,
    Config,
    HostConfig,
    ListenerConfig,
    TlsMode,
    load_config,
)
from chatgate.vocabulary.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_missing_file_gives_loopback_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")
    assert [(lst.host, lst.port, lst.tls) for lst in config.listeners] == [
        ("127.0.0.1", 5222, TlsMode.STARTTLS),
        ("127.0.0.1", 5223, TlsMode.DIRECT),
    ]
    assert config.auth.allow_plain_without_tls is False


def test_default_config_text_is_valid_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text(DEFAULT_CONFIG_TEXT)
    config = load_config(path)
    assert config.storage_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/var/chatgate.db"
    assert config.data_dir == tmp_path.resolve() / "var"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[server]\nbogus = 1\n", "server.bogus"),
        ("[auth]\nscram_iterations = 10\n", "auth.scram_iterations"),
        ("[[listeners]]\nport = 70000\n", "listeners.0.port"),
        ("[[listeners]]\ntls = 'sometimes'\n", "listeners.0.tls"),
        (
            "[[listeners]]\nport = 5222\n[[listeners]]\nport = 5222\n",
            "two listeners on 127.0.0.1:5222",
        ),
    ],
)
def test_bad_values_name_the_option(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert named in str(error.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


NOT_OPTIONS = ("base_dir", "source_path", "listeners", "modules", "components")


def _options(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name not in NOT_OPTIONS]


def test_every_option_is_documented_with_a_docstring() -> None:
    docs = DOCS.read_text()
    for field_name, field in Config.model_fields.items():
        if field_name in (*NOT_OPTIONS, "hosts"):
            continue
        section = field.annotation
        assert f"`[{field_name}]`" in docs
        for option in _options(section):
            assert section.model_fields[option].description, (
                f"{field_name}.{option} has no docstring"
            )
            assert f"| `{option}` |" in docs, f"{field_name}.{option} missing from docs"
    for option in _options(ListenerConfig):
        assert f"| `{option}` |" in docs, f"listeners.{option} missing from docs"
    assert "`[[components]]`" in docs
    for option in _options(ComponentConfig):
        assert ComponentConfig.model_fields[option].description, f"components.{option}"
        assert f"| `{option}` |" in docs, f"components.{option} missing from docs"
    assert '`[hosts."NAME"]`' in docs
    for model in (HostConfig, AnonymousLimits):
        for option in _options(model):
            assert model.model_fields[option].description, f"hosts: {option} has no docstring"
            assert f"| `{option}` |" in docs, f"hosts: {option} missing from docs"
