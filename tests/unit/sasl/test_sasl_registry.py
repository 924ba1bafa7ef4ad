"""The mechanism registry: explicit built-ins, entry points, and the factory signature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import chatgate.registry
from chatgate.sasl.base import ConnectionFacts, NeedCredentials
from chatgate.sasl.plain import PlainMechanism
from chatgate.sasl.registry import ENTRY_POINT_GROUP, builtin_mechanisms
from chatgate.vocabulary.errors import ConfigError

FACTS = ConnectionFacts(domain="example.com", tls_active=True)


@dataclass
class _FakeEntryPoint:
    name: str
    target: Any
    value: str = "example_plugin:Mechanism"
    dist: None = None

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


class _ExampleMechanism(PlainMechanism):
    name = "X-EXAMPLE"


def _entry_points(monkeypatch: pytest.MonkeyPatch, *eps: _FakeEntryPoint) -> list[str]:
    groups: list[str] = []

    def fake(*, group: str) -> list[_FakeEntryPoint]:
        groups.append(group)
        return list(eps)

    monkeypatch.setattr(chatgate.registry, "entry_points", fake)
    return groups


def test_builtin_mechanisms_lists_every_builtin_strongest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _entry_points(monkeypatch)
    assert builtin_mechanisms().names() == [
        "EXTERNAL",
        "SCRAM-SHA-512-PLUS",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
        "DIGEST-MD5",
        "ANONYMOUS",
    ]


@pytest.mark.parametrize("name", ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_builtin_factory_builds_a_mechanism_per_attempt(name: str) -> None:
    factory = builtin_mechanisms(load_entry_points=False).get(name)
    first = factory(FACTS, b"secret", False)
    second = factory(FACTS, b"secret", False)
    assert first is not second
    assert first.name == name
    initial = b"n,,n=user,r=abc" if name.startswith("SCRAM") else b"\0user\0pencil"
    assert isinstance(first.start(initial), NeedCredentials)


def test_entry_point_mechanism_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = _entry_points(monkeypatch, _FakeEntryPoint("X-EXAMPLE", _ExampleMechanism))
    registry = builtin_mechanisms()
    assert groups == [ENTRY_POINT_GROUP]
    assert registry.get("X-EXAMPLE") is _ExampleMechanism


def test_builtin_wins_over_entry_point_of_same_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, _FakeEntryPoint("PLAIN", _ExampleMechanism))
    assert builtin_mechanisms().get("PLAIN") is PlainMechanism


def test_entry_point_named_differently_from_its_mechanism_raises_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _entry_points(monkeypatch, _FakeEntryPoint("X-OTHER", _ExampleMechanism))
    with pytest.raises(ConfigError, match="X-OTHER"):
        builtin_mechanisms()


def test_a_plugin_that_cannot_be_imported_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = _FakeEntryPoint("X-BROKEN", ModuleNotFoundError("No module named 'jwt'"))
    _entry_points(monkeypatch, broken)
    with pytest.raises(ConfigError) as refused:
        builtin_mechanisms()
    message = str(refused.value)
    assert "'X-BROKEN' = 'example_plugin:Mechanism'" in message
    assert "ModuleNotFoundError: No module named 'jwt'" in message
