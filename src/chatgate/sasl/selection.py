"""Which SASL mechanisms a stream offers: configuration ∩ registry ∩ provider ∩ connection.

This module owns that one rule and the start-up check of configured names.
It never names a particular mechanism: it reads each factory's declared
`needs`, `plaintext` and `requires_channel_binding`.  Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatgate.auth.provider import Capability
from chatgate.registry import Registry
from chatgate.sasl.base import ConnectionFacts
from chatgate.sasl.registry import MechanismFactory
from chatgate.vocabulary.errors import ConfigError

__all__ = ["offered_mechanisms", "validate_mechanism_names"]


def validate_mechanism_names(
    configured: Sequence[str], registry: Registry[MechanismFactory]
) -> None:
    """Raise `ConfigError` for an empty list, or unknown or repeated names in it."""
    if not configured:
        raise ConfigError("no SASL mechanisms configured: nobody could authenticate")
    unknown = [name for name in configured if name not in registry]
    if unknown:
        known = ", ".join(registry.names()) or "none"
        raise ConfigError(
            f"unknown SASL mechanism(s) {', '.join(map(repr, unknown))} (known: {known})"
        )
    seen: set[str] = set()
    for name in configured:
        if name in seen:
            raise ConfigError(f"SASL mechanism {name!r} is listed twice")
        seen.add(name)


def offered_mechanisms(
    configured: Sequence[str],
    registry: Registry[MechanismFactory],
    provider_offers: frozenset[Capability],
    facts: ConnectionFacts,
    *,
    allow_plaintext_without_tls: bool,
) -> list[str]:
    """The mechanism names to advertise on this stream, in configured order.

    A mechanism is offered when the provider offers everything it needs; a
    plaintext one (PLAIN) only over TLS unless `allow_plaintext_without_tls`
    (RFC 6120 §13.8 and RFC 4616 §6: without TLS the password crosses the network
    in the clear); a channel-binding one (-PLUS) only when the connection has at
    least one binding type; a certificate one (EXTERNAL) only when the client
    presented a verified certificate.  Unknown names raise `ConfigError` (call
    `validate_mechanism_names` at start so this never happens at run time).
    """
    offered: list[str] = []
    for name in configured:
        factory = registry.get(name)
        if not factory.needs <= provider_offers:
            continue
        if factory.plaintext and not facts.tls_active and not allow_plaintext_without_tls:
            continue
        if factory.requires_channel_binding and not facts.channel_bindings:
            continue
        if factory.requires_peer_certificate and facts.peer_certificate_der is None:
            # XEP-0178 §3: EXTERNAL only for a client that presented an acceptable certificate.
            continue
        if name not in offered:
            offered.append(name)
    return offered
