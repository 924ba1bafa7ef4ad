"""Which mechanisms a stream offers: config order ∩ registry ∩ provider ∩ connection facts."""

from __future__ import annotations

import pytest

from chatgate.auth.provider import Capability
from chatgate.registry import Registry
from chatgate.sasl.base import ConnectionFacts
from chatgate.sasl.registry import MechanismFactory, builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms, validate_mechanism_names
from chatgate.vocabulary.errors import ConfigError

ALL_CAPABILITIES = frozenset(Capability)
PASSWORD_ONLY = frozenset({Capability.VERIFY_PASSWORD})
PLAIN_TCP = ConnectionFacts(domain="example.com")
TLS = ConnectionFacts(domain="example.com", tls_active=True)
TLS_WITH_BINDING = ConnectionFacts(
    domain="example.com", tls_active=True, channel_bindings={"tls-exporter": b"x"}
)
CONFIGURED = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def _registry() -> Registry[MechanismFactory]:
    return builtin_mechanisms(load_entry_points=False)


def _offered(
    configured: list[str],
    facts: ConnectionFacts,
    offers: frozenset[Capability] = ALL_CAPABILITIES,
    *,
    allow_plaintext_without_tls: bool = False,
) -> list[str]:
    return offered_mechanisms(
        configured,
        _registry(),
        offers,
        facts,
        allow_plaintext_without_tls=allow_plaintext_without_tls,
    )


def test_plain_refused_before_tls() -> None:
    assert _offered(CONFIGURED, PLAIN_TCP) == ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]


def test_plain_offered_before_tls_when_operator_allows_it() -> None:
    assert "PLAIN" in _offered(CONFIGURED, PLAIN_TCP, allow_plaintext_without_tls=True)


def test_plain_offered_over_tls() -> None:
    assert _offered(CONFIGURED, TLS) == CONFIGURED


def test_selection_preserves_configured_order() -> None:
    configured = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-512"]
    assert _offered(configured, TLS) == configured


def test_selection_offers_only_configured_mechanisms() -> None:
    assert _offered(["SCRAM-SHA-256"], TLS) == ["SCRAM-SHA-256"]


def test_provider_without_scram_keys_hides_scram() -> None:
    assert _offered(CONFIGURED, TLS, PASSWORD_ONLY) == ["PLAIN"]


def test_provider_with_one_hash_offers_only_that_scram() -> None:
    offers = frozenset({Capability.SCRAM_SHA_256_KEYS})
    assert _offered(CONFIGURED, TLS, offers) == ["SCRAM-SHA-256"]


def test_channel_binding_mechanism_hidden_without_binding() -> None:
    configured = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    assert _offered(configured, TLS) == ["SCRAM-SHA-256"]
    assert _offered(configured, TLS_WITH_BINDING) == configured


def test_unknown_configured_mechanism_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="'X-UNKNOWN'"):
        validate_mechanism_names(["SCRAM-SHA-256", "X-UNKNOWN"], _registry())
    with pytest.raises(ConfigError, match="X-UNKNOWN"):
        _offered(["X-UNKNOWN"], TLS)


def test_digest_md5_is_offered_only_when_the_provider_stores_its_secret() -> None:
    without = offered_mechanisms(
        ["SCRAM-SHA-1", "DIGEST-MD5"],
        _registry(),
        frozenset({Capability.SCRAM_SHA_1_KEYS}),
        TLS,
        allow_plaintext_without_tls=False,
    )
    assert without == ["SCRAM-SHA-1"]
    with_secret = offered_mechanisms(
        ["SCRAM-SHA-1", "DIGEST-MD5"],
        _registry(),
        frozenset({Capability.SCRAM_SHA_1_KEYS, Capability.DIGEST_MD5_HA1}),
        TLS,
        allow_plaintext_without_tls=False,
    )
    assert with_secret == ["SCRAM-SHA-1", "DIGEST-MD5"]


def test_repeated_configured_mechanism_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="twice"):
        validate_mechanism_names(["PLAIN", "PLAIN"], _registry())


def test_empty_mechanism_list_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="no SASL mechanisms"):
        validate_mechanism_names([], _registry())


def test_known_configured_mechanisms_validate() -> None:
    validate_mechanism_names(CONFIGURED, _registry())
