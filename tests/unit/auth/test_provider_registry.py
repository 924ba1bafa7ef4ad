"""The credential-provider registry: names, building from `[auth.provider]`, and what each offers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from pydantic import BaseModel, ConfigDict

from chatgate.auth.credentials import ScramKeys
from chatgate.auth.extauth import ExtauthProvider
from chatgate.auth.http import HttpProvider
from chatgate.auth.internal import InternalProvider
from chatgate.auth.options import ProviderConfig
from chatgate.auth.provider import Capability, CredentialProvider
from chatgate.auth.registry import (
    ManagedProvider,
    ProviderContext,
    ProviderFactory,
    build_provider,
    builtin_providers,
    check_provider_config,
    close_provider,
    start_provider,
)
from chatgate.sasl.base import ConnectionFacts
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms
from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.vocabulary.errors import ConfigError

CONTEXT = ProviderContext(
    base_dir=Path("/etc/chatgate"),
    data_dir=Path("/var/lib/chatgate"),
    accounts=cast(AccountRepository, object()),
)
CONFIGURED = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
TLS = ConnectionFacts(domain="localhost", tls_active=True)

HTTP = {"name": "http", "http": {"url": "https://auth.example.org/check"}}
EXTAUTH = {"name": "extauth", "extauth": {"command": ["bin/auth", "-v"]}}
LDAP = {
    "name": "ldap",
    "ldap": {"uri": "ldaps://ldap.example.org", "bind_dn_template": "uid={user},dc=x"},
}


def _build(data: dict, registry=None) -> CredentialProvider:  # type: ignore[no-untyped-def]
    return build_provider(ProviderConfig.model_validate(data), CONTEXT, registry)


def test_builtin_provider_names() -> None:
    assert builtin_providers(load_entry_points=False).names() == [
        "internal",
        "http",
        "extauth",
        "ldap",
    ]


def test_unknown_provider_name_is_a_config_error_listing_known_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown credential provider 'ldapp' \(known: extauth, http, internal, ldap\)",
    ):
        _build({"name": "ldapp"})


def test_internal_provider_is_the_default() -> None:
    assert isinstance(_build({}), InternalProvider)


def test_internal_provider_needs_the_account_store() -> None:
    context = ProviderContext(base_dir=Path("."), data_dir=Path("var"))
    with pytest.raises(ValueError, match="accounts"):
        build_provider(ProviderConfig(), context)


@pytest.mark.parametrize(("data", "cls"), [(HTTP, HttpProvider), (EXTAUTH, ExtauthProvider)])
def test_builtin_external_providers_build_without_io(data: dict, cls: type) -> None:
    provider = _build(data)
    assert isinstance(provider, cls)
    assert isinstance(provider, ManagedProvider)


def test_ldap_provider_builds() -> None:
    pytest.importorskip("ldap3")
    from chatgate.auth.ldap import LdapProvider

    assert isinstance(_build(LDAP), LdapProvider)


def test_extauth_relative_program_is_relative_to_the_config_folder() -> None:
    provider = _build(EXTAUTH)
    assert isinstance(provider, ExtauthProvider)
    assert provider._command == ["/etc/chatgate/bin/auth", "-v"]


def test_extauth_program_name_without_slash_is_looked_up_in_path() -> None:
    provider = _build({"name": "extauth", "extauth": {"command": ["auth-program"]}})
    assert isinstance(provider, ExtauthProvider)
    assert provider._command == ["auth-program"]


@pytest.mark.parametrize("data", [HTTP, EXTAUTH, LDAP])
def test_password_only_providers_are_offered_plain_but_not_scram(data: dict) -> None:
    if data is LDAP:
        pytest.importorskip("ldap3")
    provider = _build(data)
    assert provider.offers == frozenset({Capability.VERIFY_PASSWORD})
    offered = offered_mechanisms(
        CONFIGURED,
        builtin_mechanisms(load_entry_points=False),
        provider.offers,
        TLS,
        allow_plaintext_without_tls=False,
    )
    assert offered == ["PLAIN"]


def test_password_only_provider_offers_nothing_before_tls() -> None:
    offered = offered_mechanisms(
        CONFIGURED,
        builtin_mechanisms(load_entry_points=False),
        _build(HTTP).offers,
        ConnectionFacts(domain="localhost"),
        allow_plaintext_without_tls=False,
    )
    assert offered == []


def test_internal_provider_is_offered_scram_too() -> None:
    offered = offered_mechanisms(
        CONFIGURED,
        builtin_mechanisms(load_entry_points=False),
        _build({}).offers,
        TLS,
        allow_plaintext_without_tls=False,
    )
    assert offered == CONFIGURED


class _PluginOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    greeting: str = "hello"


@dataclass
class _PluginProvider:
    options: _PluginOptions
    offers: frozenset[Capability] = frozenset({Capability.VERIFY_PASSWORD})

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        return password == self.options.greeting

    async def user_exists(self, username: str, domain: str) -> bool:
        return True


def _with_plugin():  # type: ignore[no-untyped-def]
    registry = builtin_providers(load_entry_points=False)
    registry.register("plugin", ProviderFactory(_PluginOptions, lambda o, _c: _PluginProvider(o)))
    return registry


def test_plugin_provider_gets_its_table_from_plugins() -> None:
    provider = _build({"name": "plugin", "plugins": {"plugin": {"greeting": "hi"}}}, _with_plugin())
    assert isinstance(provider, _PluginProvider)
    assert provider.options.greeting == "hi"


def test_plugin_provider_without_table_gets_defaults() -> None:
    provider = _build({"name": "plugin"}, _with_plugin())
    assert isinstance(provider, _PluginProvider) and provider.options.greeting == "hello"


def test_plugin_provider_bad_option_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"auth.provider.plugins.plugin.greting"):
        _build({"name": "plugin", "plugins": {"plugin": {"greting": "hi"}}}, _with_plugin())


async def test_the_internal_provider_starts_and_closes_without_resources() -> None:
    # Managed only so that close() can wait for a credential-cache re-load: it
    # opens nothing, so start and close are safe in any order and twice.
    provider = _build({})
    assert isinstance(provider, ManagedProvider)
    await close_provider(provider)
    await start_provider(provider)
    await close_provider(provider)
    await close_provider(provider)


async def test_close_without_start_is_safe() -> None:
    for data in (HTTP, EXTAUTH):
        await close_provider(_build(data))


def test_check_finds_an_unknown_name_without_building() -> None:
    with pytest.raises(ConfigError, match="unknown credential provider 'nope'"):
        check_provider_config(
            ProviderConfig(name="nope"), builtin_providers(load_entry_points=False)
        )


def test_check_accepts_every_builtin_without_io() -> None:
    for data in ({}, HTTP, EXTAUTH, LDAP):
        check_provider_config(ProviderConfig.model_validate(data))


def test_check_finds_bad_plugin_options() -> None:
    config = ProviderConfig.model_validate({"name": "plugin", "plugins": {"plugin": {"x": 1}}})
    with pytest.raises(ConfigError, match=r"plugins\.plugin\.x"):
        check_provider_config(config, _with_plugin())
