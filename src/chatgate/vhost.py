"""Virtual hosts: the domains one server serves, each with its own authentication.

This module owns what differs per served domain once a stream header has
named one: the credential provider that answers for its accounts, the SASL
mechanism names it offers, whether it is anonymous, and the anonymous login
limit.  It builds providers but neither starts nor closes them (the server
does both), and it knows nothing about connections.

A host without its own `provider` table shares the main domain's provider
object (one credential cache, one external program), as Prosody's and
ejabberd's global `authentication` settings do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chatgate.auth.anonymous import AnonymousLoginLimit, AnonymousProvider
from chatgate.auth.provider import CachedKeysAnswer, CredentialProvider
from chatgate.auth.registry import ProviderContext, build_provider
from chatgate.config import Config, HostConfig, ListenerConfig
from chatgate.http.options import HttpOptions
from chatgate.registry import Registry
from chatgate.sasl.anonymous import AnonymousMechanism
from chatgate.sasl.registry import MechanismFactory
from chatgate.sasl.selection import validate_mechanism_names
from chatgate.vocabulary.errors import ConfigError

__all__ = ["VirtualHost", "build_hosts", "host_mechanisms", "validate_host_mechanisms"]

CachedKeys = Callable[[str, str, str], CachedKeysAnswer]


@dataclass(slots=True)
class VirtualHost:
    domain: str
    options: HostConfig
    provider: CredentialProvider
    #: the provider's synchronous cache look-up, if it has one (login fast path)
    cached_scram_keys: CachedKeys | None
    #: False when the provider is the main domain's, shared (closed once, by its owner)
    owns_provider: bool
    anonymous_limit: AnonymousLoginLimit | None = None

    @property
    def anonymous(self) -> bool:
        return self.options.anonymous


def host_mechanisms(
    config: Config, domain: str, listener: ListenerConfig | HttpOptions
) -> list[str]:
    """The SASL mechanism names `domain` offers on `listener`, in order: the host's own
    list, else `ANONYMOUS` on an anonymous host, else the listener's, else `[auth]`'s."""
    options = config.host(domain)
    if options.mechanisms is not None:
        return options.mechanisms
    if options.anonymous:
        return [AnonymousMechanism.name]
    return listener.mechanisms or config.auth.mechanisms


def validate_host_mechanisms(config: Config, registry: Registry[MechanismFactory]) -> None:
    """Raise `ConfigError` for unknown names, and for ANONYMOUS anywhere but on an
    anonymous host (whose accounts vanish at logout) or an anonymous host offering
    anything else (it has no accounts to check)."""
    for listener in config.listeners:
        validate_mechanism_names(listener.mechanisms or config.auth.mechanisms, registry)
        for domain in config.served_domains:
            names = host_mechanisms(config, domain, listener)
            validate_mechanism_names(names, registry)
            where = f'hosts."{domain}".mechanisms' if domain in config.hosts else "mechanisms"
            if config.host(domain).anonymous:
                if names != [AnonymousMechanism.name]:
                    raise ConfigError(f"{where}: an anonymous host offers ANONYMOUS only")
            elif AnonymousMechanism.name in names:
                raise ConfigError(
                    f"{where}: ANONYMOUS is offered only on an anonymous host "
                    f'([hosts."NAME"] anonymous = true), where nothing outlives the session'
                )


def build_hosts(
    config: Config, main_provider: CredentialProvider, context: ProviderContext
) -> dict[str, VirtualHost]:
    """One `VirtualHost` per served domain; raises `ConfigError` for a bad provider table."""
    hosts: dict[str, VirtualHost] = {}
    for domain in config.served_domains:
        options = config.host(domain)
        anonymous_limit = None
        if options.anonymous:
            provider: CredentialProvider = AnonymousProvider()
            owns = True
            anonymous_limit = AnonymousLoginLimit(options.anonymous_limits, config.auth.throttle)
        elif options.provider is not None:
            provider, owns = build_provider(options.provider, context), True
        else:
            provider, owns = main_provider, False
        hosts[domain] = VirtualHost(
            domain,
            options,
            provider,
            getattr(provider, "cached_scram_keys", None),
            owns,
            anonymous_limit,
        )
    return hosts
