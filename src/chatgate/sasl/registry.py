"""The SASL mechanism registry: which mechanism names exist and how to build one.

This module owns the list of built-in mechanisms (one explicit function) and
the entry-point group through which other packages add theirs.  It does not
decide what a connection is offered (`sasl/selection.py` does) and it never
builds a mechanism itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from chatgate.auth.provider import Capability
from chatgate.registry import Registry
from chatgate.sasl.anonymous import AnonymousMechanism
from chatgate.sasl.base import ConnectionFacts, Mechanism
from chatgate.sasl.digest_md5 import DigestMd5Mechanism
from chatgate.sasl.external import ExternalFactory, ExternalMechanism
from chatgate.sasl.plain import PlainMechanism
from chatgate.sasl.scram import (
    ScramSha1Mechanism,
    ScramSha1PlusMechanism,
    ScramSha256Mechanism,
    ScramSha256PlusMechanism,
    ScramSha512Mechanism,
    ScramSha512PlusMechanism,
)
from chatgate.vocabulary.errors import ConfigError

if TYPE_CHECKING:
    from chatgate.config import TlsConfig

__all__ = ["ENTRY_POINT_GROUP", "MechanismFactory", "builtin_mechanisms"]

#: Third-party mechanisms register here, under their wire name.
ENTRY_POINT_GROUP = "chatgate.sasl_mechanisms"


class MechanismFactory(Protocol):
    """What the registry holds: in practice a mechanism class.

    It carries the mechanism's static description (read by selection without
    building anything) and builds one mechanism per authentication attempt.
    `server_secret` is a stable per-installation secret (for SCRAM's fake salts);
    `plus_offered` says whether any -PLUS mechanism was advertised on this stream;
    `advertised` is the whole advertised list (for XEP-0474), None when unknown.
    """

    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> frozenset[Capability]: ...

    @property
    def requires_channel_binding(self) -> bool: ...

    @property
    def requires_peer_certificate(self) -> bool: ...

    @property
    def plaintext(self) -> bool: ...

    def __call__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes,
        plus_offered: bool,
        *,
        advertised: Sequence[str] | None = None,
    ) -> Mechanism: ...


#: Built-in mechanisms, strongest first.  The order is only a listing order:
#: what a stream offers, and in which order, comes from configuration.
_BUILTINS: tuple[MechanismFactory, ...] = (
    ExternalMechanism,
    ScramSha512PlusMechanism,
    ScramSha256PlusMechanism,
    ScramSha1PlusMechanism,
    ScramSha512Mechanism,
    ScramSha256Mechanism,
    ScramSha1Mechanism,
    PlainMechanism,
    DigestMd5Mechanism,  # deprecated (RFC 6331); offered only when configured and stored
    AnonymousMechanism,  # only on anonymous virtual hosts (their provider offers it)
)


def builtin_mechanisms(
    *, load_entry_points: bool = True, tls: TlsConfig | None = None
) -> Registry[MechanismFactory]:
    """A registry of the built-in mechanisms plus those of installed packages.

    With `tls`, EXTERNAL reads identities from the configured certificate fields
    and follows the configured auto-provisioning; without, it uses id-on-xmppAddr
    only and requires an existing account.

    Built-ins win over an entry point of the same name.  Raises `ConfigError`
    when an entry point's name is not the wire name of what it loads, since the
    name in configuration would then select a different mechanism.
    """
    registry: Registry[MechanismFactory] = Registry("SASL mechanism")
    for factory in _BUILTINS:
        if factory is ExternalMechanism and tls is not None:
            factory = ExternalFactory(tuple(tls.identity_sources), tls.auto_provision)
        registry.register(factory.name, factory)
    if load_entry_points:
        registry.load_entry_points(ENTRY_POINT_GROUP)
        for name in registry.names():
            loaded = registry.get(name).name
            if loaded != name:
                raise ConfigError(
                    f"entry point {name!r} in {ENTRY_POINT_GROUP} loads mechanism {loaded!r}"
                )
    return registry
