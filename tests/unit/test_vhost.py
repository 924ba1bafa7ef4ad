"""Virtual-host configuration: which mechanisms each host offers, what is refused, the
anonymous login limit, and one provider per host."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.auth.anonymous import AnonymousLoginLimit, AnonymousProvider
from chatgate.auth.registry import ProviderContext
from chatgate.auth.throttle import ThrottleOptions
from chatgate.config import AnonymousLimits, Config
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.vhost import build_hosts, host_mechanisms, validate_host_mechanisms
from chatgate.vocabulary.errors import ConfigError


def config(hosts: dict, **auth: object) -> Config:
    return Config.model_validate({"hosts": hosts, "auth": auth})


def test_mechanisms_come_from_the_host_then_the_listener_then_auth() -> None:
    cfg = Config.model_validate(
        {
            "auth": {"mechanisms": ["SCRAM-SHA-256", "PLAIN"]},
            "listeners": [{"port": 5222, "mechanisms": ["SCRAM-SHA-1"]}, {"port": 5223}],
            "hosts": {
                "a.example": {"mechanisms": ["PLAIN"]},
                "b.example": {},
                "guest.example": {"anonymous": True},
            },
        }
    )
    first, second = cfg.listeners
    assert host_mechanisms(cfg, "a.example", first) == ["PLAIN"]
    assert host_mechanisms(cfg, "b.example", first) == ["SCRAM-SHA-1"]
    assert host_mechanisms(cfg, "b.example", second) == ["SCRAM-SHA-256", "PLAIN"]
    assert host_mechanisms(cfg, "localhost", second) == ["SCRAM-SHA-256", "PLAIN"]
    assert host_mechanisms(cfg, "guest.example", first) == ["ANONYMOUS"]
    validate_host_mechanisms(cfg, builtin_mechanisms(load_entry_points=False))


@pytest.mark.parametrize(
    ("hosts", "auth", "message"),
    [
        ({}, {"mechanisms": ["PLAIN", "ANONYMOUS"]}, "ANONYMOUS is offered only on an anonymous"),
        ({"x.example": {"mechanisms": ["ANONYMOUS"]}}, {}, 'hosts."x.example".mechanisms'),
        (
            {"g.example": {"anonymous": True, "mechanisms": ["ANONYMOUS", "PLAIN"]}},
            {},
            "an anonymous host offers ANONYMOUS only",
        ),
        ({"x.example": {"mechanisms": ["NOPE"]}}, {}, "unknown SASL mechanism"),
    ],
)
def test_misplaced_or_unknown_mechanisms_are_config_errors(
    hosts: dict, auth: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_host_mechanisms(config(hosts, **auth), builtin_mechanisms(load_entry_points=False))


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ({"Upper.example": {}}, "lower case"),
        ({"g.example": {"anonymous": True, "provider": {"name": "internal"}}}, "no credential"),
        ({"localhost": {"anonymous": True}}, "main domain .* cannot be anonymous"),
    ],
)
def test_bad_host_tables_are_refused(hosts: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(hosts)


def test_served_domains_start_with_the_main_one() -> None:
    cfg = config({"b.example": {}, "localhost": {"mechanisms": ["PLAIN"]}})
    assert cfg.served_domains == ("localhost", "b.example")
    assert cfg.host("localhost").mechanisms == ["PLAIN"]
    assert cfg.host("b.example").mechanisms is None


def test_hosts_share_the_main_provider_unless_they_have_their_own(tmp_path: Path) -> None:
    cfg = config(
        {
            "plain.example": {},
            "guest.example": {"anonymous": True},
            "http.example": {
                "provider": {"name": "http", "http": {"url": "http://127.0.0.1:9/check"}}
            },
        }
    )
    main = AnonymousProvider()  # any object stands for the main provider here
    hosts = build_hosts(cfg, main, ProviderContext(base_dir=tmp_path, data_dir=tmp_path))
    assert hosts["localhost"].provider is main and not hosts["localhost"].owns_provider
    assert hosts["plain.example"].provider is main
    assert isinstance(hosts["guest.example"].provider, AnonymousProvider)
    assert hosts["guest.example"].provider is not main
    assert hosts["guest.example"].anonymous_limit is not None
    assert type(hosts["http.example"].provider).__name__ == "HttpProvider"
    assert hosts["http.example"].owns_provider


async def test_the_anonymous_provider_knows_no_one() -> None:
    provider = AnonymousProvider()
    assert await provider.scram_keys("a", "g", "sha1") is None
    assert not await provider.verify_password("a", "g", "pw")
    assert not await provider.user_exists("a", "g")


def test_the_anonymous_login_limit_counts_per_address_and_in_total() -> None:
    limit = AnonymousLoginLimit(
        AnonymousLimits(per_address=2, total=3, period=10.0), ThrottleOptions()
    )
    assert limit.admit("192.0.2.1", 0.0)
    assert limit.admit("192.0.2.1", 1.0)
    assert not limit.admit("192.0.2.1", 2.0)  # third from the address
    assert limit.admit("192.0.2.2", 2.0)
    assert not limit.admit("192.0.2.3", 3.0)  # fourth in total
    assert limit.admit("192.0.2.1", 11.5)  # the window moved on
