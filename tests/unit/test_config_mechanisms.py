"""The default SASL mechanisms (channel binding first, EXTERNAL where certificates are
asked for) and options refused until the layer they need exists (issue 10, items 2, 3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatgate.auth.provider import Capability
from chatgate.config import DEFAULT_CONFIG_TEXT, DEFAULT_MECHANISMS, Config, load_config
from chatgate.sasl.base import ConnectionFacts
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms
from chatgate.vhost import validate_host_mechanisms
from chatgate.vocabulary.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PLUS = ["SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
PLAIN_SCRAM = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]
ALL_CAPS = frozenset(Capability)
TLS13 = ConnectionFacts(
    domain="localhost",
    tls_active=True,
    tls_version="TLSv1.3",
    channel_bindings={"tls-exporter": b"x" * 32, "tls-server-end-point": b"y" * 32},
)


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "chatgate.toml"
    path.write_text(text)
    return load_config(path)


def _offered(config: Config, facts: ConnectionFacts) -> list[str]:
    registry = builtin_mechanisms(load_entry_points=False, tls=config.tls)
    return offered_mechanisms(
        config.auth.mechanisms,
        registry,
        ALL_CAPS,
        facts,
        allow_plaintext_without_tls=config.auth.allow_plain_without_tls,
    )


# -- item 2: the strongest mechanisms are offered by default -----------------------------------


def test_the_default_offers_channel_binding_first() -> None:
    assert Config().auth.mechanisms == [*PLUS, *PLAIN_SCRAM, "PLAIN"]
    assert list(DEFAULT_MECHANISMS) == Config().auth.mechanisms


def test_the_init_file_gets_the_default_list(tmp_path: Path) -> None:
    config = _load(tmp_path, DEFAULT_CONFIG_TEXT)
    assert config.auth.mechanisms == list(DEFAULT_MECHANISMS)
    validate_host_mechanisms(config, builtin_mechanisms(load_entry_points=False, tls=config.tls))
    assert _offered(config, TLS13) == [*PLUS, *PLAIN_SCRAM, "PLAIN"]


def test_without_a_channel_binding_no_plus_mechanism_is_offered() -> None:
    config = Config()
    plain_tcp = ConnectionFacts(domain="localhost")
    assert _offered(config, plain_tcp) == PLAIN_SCRAM
    no_binding = ConnectionFacts(domain="localhost", tls_active=True, tls_version="TLSv1.2")
    assert _offered(config, no_binding) == [*PLAIN_SCRAM, "PLAIN"]


@pytest.mark.parametrize("policy", ["wanted", "needed"])
def test_external_comes_first_by_default_where_certificates_are_asked_for(
    tmp_path: Path, policy: str
) -> None:
    config = _load(
        tmp_path,
        f'[tls]\nclient_certificates = "{policy}"\naccept_self_signed = true\n',
    )
    assert config.auth.mechanisms == ["EXTERNAL", *DEFAULT_MECHANISMS]
    with_cert = ConnectionFacts(
        domain="localhost",
        tls_active=True,
        channel_bindings=dict(TLS13.channel_bindings),
        peer_certificate_der=b"0",
    )
    assert _offered(config, with_cert)[:2] == ["EXTERNAL", "SCRAM-SHA-512-PLUS"]
    # Without a verified client certificate EXTERNAL stays hidden (XEP-0178 §3).
    assert "EXTERNAL" not in _offered(config, TLS13)


def test_the_init_file_with_client_certificates_offers_external(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG_TEXT.replace(
        "[tls]\n", '[tls]\nclient_certificates = "wanted"\naccept_self_signed = true\n', 1
    )
    assert _load(tmp_path, text).auth.mechanisms[0] == "EXTERNAL"


def test_external_is_not_in_the_default_when_certificates_are_not_asked_for() -> None:
    assert "EXTERNAL" not in Config().auth.mechanisms


def test_an_explicit_list_is_respected_as_written(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[auth]\nmechanisms = ["SCRAM-SHA-256", "PLAIN"]\n'
        '[tls]\nclient_certificates = "needed"\naccept_self_signed = true\n',
    )
    assert config.auth.mechanisms == ["SCRAM-SHA-256", "PLAIN"]


def test_the_default_also_applies_to_configurations_built_in_code() -> None:
    from chatgate.config import AuthConfig, TlsConfig

    built = Config(tls=TlsConfig(client_certificates="wanted", accept_self_signed=True))
    assert built.auth.mechanisms[0] == "EXTERNAL"
    chosen = Config(
        auth=AuthConfig(mechanisms=["PLAIN"]),
        tls=TlsConfig(client_certificates="wanted", accept_self_signed=True),
    )
    assert chosen.auth.mechanisms == ["PLAIN"]


def test_the_docs_state_the_default() -> None:
    shown = '`["' + '", "'.join(DEFAULT_MECHANISMS) + '"]`'
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    row = re.search(r"^\| `mechanisms` \| (`\[\"SCRAM[^|]*) \|", configuration, re.M)
    assert row is not None and row.group(1) == shown
    assert "EXTERNAL" in row.string[row.end() : row.string.index("\n", row.end())]
    authentication = " ".join((ROOT / "docs" / "authentication.md").read_text().split())
    assert ", ".join(DEFAULT_MECHANISMS) in authentication
    readme = (ROOT / "README.md").read_text()
    assert f"sasl: {', '.join(DEFAULT_MECHANISMS)}" in readme


# -- item 3: reuse_port is refused until the cluster layer exists ------------------------------


def test_reuse_port_is_refused_with_a_message_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, "[[listeners]]\nport = 5222\nreuse_port = true\n")
    message = str(error.value)
    assert "listeners.0.reuse_port" in message
    assert "cluster" in message


def test_reuse_port_false_is_still_accepted(tmp_path: Path) -> None:
    assert _load(tmp_path, "[[listeners]]\nport = 5222\nreuse_port = false\n").listeners
