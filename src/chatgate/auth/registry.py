"""The credential-provider registry: config names -> factories; build, start and close.

This module owns the list of built-in providers (one explicit function), the
``chatgate.credential_providers`` entry-point group and the context a factory
builds from.  It never decides which mechanisms are offered
(`sasl/selection.py` does, from each provider's `offers`) and never talks to a
provider's backend itself.

The errors providers raise when they cannot answer (`ProviderError` and its
kinds) live in `auth/provider.py`, so a provider never imports this module,
which imports the providers; they are re-exported here for third-party
providers written against this module.

Provider modules are imported when their factory runs, not when this module
is: `ldap3` is optional, and an unused provider costs nothing.

Lifecycle, as the server uses it::

    provider = build_provider(config.auth.provider, context)   # ConfigError if bad
    await start_provider(provider)     # opens sessions, spawns programs; ConfigError if it cannot
    ...                                # provider.verify_password(...) etc.
    await close_provider(provider)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from chatgate.auth.options import (
    ExtauthProviderOptions,
    HttpProviderOptions,
    LdapProviderOptions,
    ProviderConfig,
)
from chatgate.auth.provider import (
    CredentialProvider,
    ProviderError,
    ProviderUnavailable,
    UnsupportedQuestion,
)
from chatgate.registry import Registry
from chatgate.vocabulary.errors import ConfigError

if TYPE_CHECKING:
    from chatgate.storage.repositories.accounts import AccountRepository
    from chatgate.storage.repositories.legacy import LegacyRepository

__all__ = [
    "ENTRY_POINT_GROUP",
    "ManagedProvider",
    "ProviderContext",
    "ProviderError",
    "ProviderFactory",
    "ProviderUnavailable",
    "UnsupportedQuestion",
    "build_provider",
    "builtin_providers",
    "check_provider_config",
    "close_provider",
    "start_provider",
]

#: Third-party providers register a `ProviderFactory` here, under their config name.
ENTRY_POINT_GROUP = "chatgate.credential_providers"


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a factory may build a provider from, besides its own options."""

    base_dir: Path
    """The configuration file's folder: relative paths in options are relative to it."""
    data_dir: Path
    accounts: AccountRepository | None = None
    """This server's account store (the internal provider needs it)."""
    credential_cache_size: int = 100_000
    """The internal provider's SCRAM-key cache size (``[auth] credential_cache_size``)."""
    legacy: LegacyRepository | None = None
    """Legacy secrets, given only when DIGEST-MD5 secrets are stored on purpose."""

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else self.base_dir / p


@runtime_checkable
class ManagedProvider(Protocol):
    """A provider holding resources (an HTTP session, a subprocess, threads).

    `start` runs once before the first question and raises `ConfigError` when
    the provider cannot work at all (e.g. the extauth program does not exist);
    `close` releases everything and may be called without `start`.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProviderFactory:
    """What the registry holds: an option model and a function building the provider.

    `options_model` None means the provider takes no options table.  `build`
    gets the validated options (None when `options_model` is None) and must
    not do I/O: that belongs in the provider's `start`.
    """

    options_model: type[BaseModel] | None
    build: Callable[[Any, ProviderContext], CredentialProvider]
    description: str = ""


def _build_internal(options: None, context: ProviderContext) -> CredentialProvider:
    from chatgate.auth.internal import InternalProvider

    if context.accounts is None:
        raise ValueError("the internal provider needs context.accounts")
    return InternalProvider(
        context.accounts,
        cache_size=context.credential_cache_size,
        data_dir=context.data_dir,
        legacy=context.legacy,
    )


def _build_http(options: HttpProviderOptions, context: ProviderContext) -> CredentialProvider:
    from chatgate.auth.http import HttpProvider

    ca_file = None if options.ca_file is None else context.path(options.ca_file)
    return HttpProvider(options, ca_file=ca_file)


def _build_extauth(options: ExtauthProviderOptions, context: ProviderContext) -> CredentialProvider:
    from chatgate.auth.extauth import ExtauthProvider

    program, *args = options.command
    if "/" in program and not Path(program).is_absolute():
        program = str(context.path(Path(program)))
    return ExtauthProvider(options, command=[program, *args])


def _build_ldap(options: LdapProviderOptions, context: ProviderContext) -> CredentialProvider:
    try:
        from chatgate.auth.ldap import LdapProvider
    except ImportError as exc:
        raise ConfigError(
            f"the ldap credential provider needs the ldap3 package ({exc}): "
            "install the ldap extra: .venv/bin/pip install 'chatgate[ldap]'"
            " (or make install EXTRAS=ldap)"
        ) from None
    ca_file = None if options.ca_file is None else context.path(options.ca_file)
    return LdapProvider(options, ca_file=ca_file)


_BUILTINS: dict[str, ProviderFactory] = {
    "internal": ProviderFactory(None, _build_internal, "this server's database (SCRAM keys)"),
    "http": ProviderFactory(HttpProviderOptions, _build_http, "an operator's HTTP service"),
    "extauth": ProviderFactory(
        ExtauthProviderOptions, _build_extauth, "an ejabberd-style external program"
    ),
    "ldap": ProviderFactory(LdapProviderOptions, _build_ldap, "an LDAP directory (simple bind)"),
}


def builtin_providers(*, load_entry_points: bool = True) -> Registry[ProviderFactory]:
    """The built-in providers plus those of installed packages (built-ins win a name clash).

    Raises `ConfigError` when an entry point does not load a `ProviderFactory`.
    """
    registry: Registry[ProviderFactory] = Registry("credential provider")
    for name, factory in _BUILTINS.items():
        registry.register(name, factory)
    if load_entry_points:
        registry.load_entry_points(ENTRY_POINT_GROUP)
        for name in registry.names():
            if not isinstance(registry.get(name), ProviderFactory):
                raise ConfigError(
                    f"entry point {name!r} in {ENTRY_POINT_GROUP} is not a ProviderFactory"
                )
    return registry


#: `ProviderConfig` fields that are a built-in provider's own options table.
_TYPED_SECTIONS = frozenset(ProviderConfig.model_fields) - {"name", "plugins"}


def _options(config: ProviderConfig, factory: ProviderFactory) -> Any:
    name = config.name
    if name in _TYPED_SECTIONS:  # a built-in's typed table, already validated
        section = getattr(config, name)
        if factory.options_model is not None and not isinstance(section, factory.options_model):
            raise ConfigError(f"auth.provider.{name}: not options of this provider")
        return section
    raw = config.plugins.get(name)
    if factory.options_model is None:
        if raw:
            raise ConfigError(f"auth.provider.plugins.{name}: this provider takes no options")
        return None
    try:
        return factory.options_model.model_validate(raw or {})
    except ValidationError as exc:
        problems = [
            f"  auth.provider.plugins.{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None


def check_provider_config(
    config: ProviderConfig, registry: Registry[ProviderFactory] | None = None
) -> None:
    """Raise `ConfigError` for an unknown provider name or bad plugin options, building
    nothing (for `chatgate check`; `build_provider` checks the same)."""
    registry = builtin_providers() if registry is None else registry
    _options(config, registry.get(config.name))


def build_provider(
    config: ProviderConfig,
    context: ProviderContext,
    registry: Registry[ProviderFactory] | None = None,
) -> CredentialProvider:
    """Build the provider `config` names; raises `ConfigError` for an unknown name or bad options.

    Does no I/O: call `start_provider` before the first question.
    """
    registry = builtin_providers() if registry is None else registry
    factory = registry.get(config.name)
    return factory.build(_options(config, factory), context)


async def start_provider(provider: CredentialProvider) -> None:
    """Start `provider` if it holds resources (a no-op for the internal provider)."""
    if isinstance(provider, ManagedProvider):
        await provider.start()


async def close_provider(provider: CredentialProvider) -> None:
    """Release what `provider` holds; safe on a provider that never started."""
    if isinstance(provider, ManagedProvider):
        await provider.close()
