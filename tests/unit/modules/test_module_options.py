"""`validate_module_options`: every `[modules.*]` table checked before anything starts.

A misspelt module or option used to pass `chatgate check` and start a server
that silently ignored it (module options were validated only inside `setup()`,
and a module nobody loads never looked at its table at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from chatgate.config import Config
from chatgate.modules.base import NoOptions, Registration, Spec, options_model
from chatgate.modules.disco import DiscoOptions
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.register import RegisterOptions
from chatgate.modules.registry import builtin_modules, validate_module_options
from chatgate.registry import Registry
from chatgate.vocabulary.errors import ConfigError


def config(modules: dict[str, Any]) -> Config:
    return Config.model_validate({"modules": modules})


def problems(modules: dict[str, Any], registry: Registry | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_module_options(
            config(modules), registry or builtin_modules(load_entry_points=False)
        )
    return str(caught.value)


def test_unknown_module_is_refused_naming_the_key_and_the_known_ones() -> None:
    message = problems({"regster": {"enabled": True}})
    assert "modules.regster: no such module (known: adhoc, anonymous, blocking," in message
    assert "did you mean register?" in message


def test_unknown_option_is_refused_naming_the_key() -> None:
    message = problems({"register": {"enabeld": True}})
    assert "modules.register.enabeld: unknown option" in message
    assert "did you mean enabled?" in message


def test_wrong_type_is_refused_naming_the_key() -> None:
    message = problems({"legacy_auth": {"digest": "maybe"}})
    assert "modules.legacy_auth.digest: Input should be a valid boolean" in message


def test_unknown_option_in_a_nested_table_is_refused() -> None:
    message = problems({"register": {"invite_tokens": [{"token": "x" * 12, "usses": 2}]}})
    assert "modules.register.invite_tokens.0.usses: unknown option" in message


def test_options_of_a_module_without_options_are_refused() -> None:
    assert "modules.ping.interval: unknown option" in problems({"ping": {"interval": 30}})


def test_every_problem_is_reported_at_once() -> None:
    message = problems({"regster": {}, "register": {"enabeld": True, "approval": 3}})
    assert message.startswith("invalid configuration:\n")
    assert "modules.regster:" in message
    assert "modules.register.enabeld:" in message
    assert "modules.register.approval:" in message


def test_inconsistent_username_lengths_are_refused_before_setup() -> None:
    message = problems({"register": {"min_username_length": 10, "max_username_length": 5}})
    assert "modules.register: min_username_length (10) > max_username_length (5)" in message


def test_valid_options_come_back_validated_for_every_module() -> None:
    registry = builtin_modules(load_entry_points=False)
    options = validate_module_options(
        config({"register": {"enabled": True}, "disco": {}}), registry
    )
    assert set(options) == set(registry.names())
    register = options["register"]
    assert isinstance(register, RegisterOptions) and register.enabled
    assert options["legacy_auth"] == LegacyAuthOptions()
    assert options["disco"] == DiscoOptions()


def test_every_builtin_option_model_refuses_unknown_keys_at_every_depth() -> None:
    registry = builtin_modules(load_entry_points=False)
    assert options_model(registry.get("register")) is RegisterOptions
    assert options_model(registry.get("legacy_auth")) is LegacyAuthOptions
    for name in registry.names():
        model = options_model(registry.get(name))
        assert model.model_config.get("extra") == "forbid", name


# ---------------------------------------------------------------- third-party modules


class _PluginOptions(BaseModel):
    # A plugin may forget extra="forbid": unknown keys are still refused.
    model_config = ConfigDict(frozen=True)
    greeting: str = "hello"


class _PluginWithOptions:
    name: ClassVar[str] = "greeter"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()
    Options: ClassVar[type[BaseModel]] = _PluginOptions

    def setup(self, ctx: object) -> Iterable[Registration]:
        return ()


class _PluginWithoutOptions:
    name: ClassVar[str] = "quiet"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: object) -> Iterable[Registration]:
        return ()


def _plugins() -> Registry:
    registry = builtin_modules(load_entry_points=False)
    registry.register("greeter", _PluginWithOptions)
    registry.register("quiet", _PluginWithoutOptions)
    return registry


def test_a_plugin_module_is_validated_with_its_own_model() -> None:
    options = validate_module_options(config({"greeter": {"greeting": "hi"}}), _plugins())
    assert options["greeter"] == _PluginOptions(greeting="hi")
    message = problems({"greeter": {"greting": "hi"}}, _plugins())
    assert "modules.greeter.greting: unknown option" in message


def test_a_plugin_module_without_an_options_model_takes_no_options() -> None:
    assert options_model(_PluginWithoutOptions) is NoOptions
    validate_module_options(config({"quiet": {}}), _plugins())
    assert "modules.quiet.level: unknown option" in problems({"quiet": {"level": 1}}, _plugins())
