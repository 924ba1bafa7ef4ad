"""`[auth.provider]` options: what an operator may write, and what is refused before start."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import BaseModel, ValidationError

from chatgate.auth.options import (
    ExtauthProviderOptions,
    HttpProviderOptions,
    LdapProviderOptions,
    ProviderConfig,
    is_loopback_host,
)

TOML = """
[auth.provider]
name = "http"

[auth.provider.http]
url = "https://auth.example.org/check"
exists_url = "https://auth.example.org/exists"
timeout = 3.0
cache_ttl = 60
secret = "s3cret"

[auth.provider.extauth]
command = ["/usr/local/bin/auth-program", "--verbose"]
instances = 2

[auth.provider.ldap]
uri = "ldaps://ldap.example.org"
base_dn = "ou=people,dc=example,dc=org"
user_filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
bind_dn = "cn=xmpp,dc=example,dc=org"
bind_password = "service"
"""


def _provider(data: dict) -> ProviderConfig:
    return ProviderConfig.model_validate(data)


def test_default_is_the_internal_provider() -> None:
    config = ProviderConfig()
    assert config.name == "internal"
    assert config.http is None and config.extauth is None and config.ldap is None


def test_toml_shape_parses_into_every_provider_table() -> None:
    config = _provider(tomllib.loads(TOML)["auth"]["provider"])
    assert config.name == "http"
    assert config.http is not None and config.http.timeout == 3.0
    assert config.http.secret is not None and config.http.secret.get_secret_value() == "s3cret"
    assert config.extauth is not None and config.extauth.instances == 2
    assert config.ldap is not None and config.ldap.bind_dn == "cn=xmpp,dc=example,dc=org"


def test_secrets_are_masked_in_the_printed_configuration() -> None:
    dumped = _provider(tomllib.loads(TOML)["auth"]["provider"]).model_dump_json()
    assert "s3cret" not in dumped and "service" not in dumped


@pytest.mark.parametrize("name", ["http", "extauth", "ldap"])
def test_chosen_provider_without_its_table_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=rf"table auth\.provider\.{name} is required"):
        _provider({"name": name})


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        _provider({"name": "http", "http": {"url": "https://a.example", "cache": 1}})


def test_plugin_table_may_not_shadow_a_builtin() -> None:
    with pytest.raises(ValidationError, match=r"plugins\.http"):
        _provider({"plugins": {"http": {}}})


@pytest.mark.parametrize(
    "url",
    [
        "https://auth.example.org/x",
        "http://127.0.0.1:8080/auth",
        "http://localhost/a",
        "http://[::1]/a",
    ],
)
def test_http_url_accepted(url: str) -> None:
    assert HttpProviderOptions(url=url).url == url


def test_http_cleartext_to_remote_host_is_refused() -> None:
    with pytest.raises(ValidationError, match="unencrypted"):
        HttpProviderOptions(url="http://auth.example.org/check")
    assert HttpProviderOptions(url="http://auth.example.org/check", allow_cleartext=True)


@pytest.mark.parametrize("url", ["ftp://auth.example.org/", "auth.example.org", "https:///x"])
def test_http_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpProviderOptions(url=url)


def test_http_secret_and_authorization_header_conflict() -> None:
    with pytest.raises(ValidationError, match="not both"):
        HttpProviderOptions(
            url="https://a.example", secret="x", headers={"Authorization": "Basic Zm9v"}
        )


def test_http_header_with_newline_is_refused() -> None:
    with pytest.raises(ValidationError, match="invalid header"):
        HttpProviderOptions(url="https://a.example", headers={"X-A": "b\r\nX-Evil: 1"})


def test_http_timeout_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        HttpProviderOptions(url="https://a.example", timeout=0)


def test_extauth_needs_a_program() -> None:
    with pytest.raises(ValidationError, match="must name a program"):
        ExtauthProviderOptions(command=[])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of"),
        ({"bind_dn_template": "uid={user},dc=x", "base_dn": "dc=x"}, "exactly one of"),
        ({"bind_dn_template": "uid=alice,dc=x"}, "must contain {user}"),
        ({"base_dn": "dc=x", "user_filter": "(uid=alice)"}, "must contain {user}"),
        ({"base_dn": "dc=x", "user_filter": "uid={user}"}, "parenthesized"),
        ({"base_dn": "dc=x", "bind_dn": "cn=svc,dc=x"}, "go together"),
        ({"base_dn": "dc=x", "bind_dn": "cn=svc,dc=x", "bind_password": ""}, "must not be empty"),
        (
            {"base_dn": "dc=x", "uri": "ldaps://ldap.example.org", "start_tls": True},
            "already encrypted",
        ),
        ({"base_dn": "dc=x", "uri": "ldap://ldap.example.org"}, "unencrypted"),
        ({"base_dn": "dc=x", "uri": "ldap://ldap.example.org/dc=x"}, "must not have a path"),
        ({"base_dn": "dc=x", "uri": "http://ldap.example.org"}, "ldap:// or ldaps://"),
    ],
)
def test_ldap_inconsistent_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LdapProviderOptions.model_validate({"uri": "ldap://127.0.0.1", **options})


@pytest.mark.parametrize(
    "options",
    [
        {"uri": "ldap://ldap.example.org", "start_tls": True, "base_dn": "dc=x"},
        {"uri": "ldap://ldap.example.org", "allow_cleartext": True, "base_dn": "dc=x"},
        {"uri": "ldaps://ldap.example.org", "bind_dn_template": "uid={user},dc=x"},
        {"uri": "ldap://127.0.0.1:3890", "bind_dn_template": "uid={user},dc=x"},
    ],
)
def test_ldap_consistent_options_are_accepted(options: dict) -> None:
    assert LdapProviderOptions.model_validate(options)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("example.org", False),
        (None, False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "model", [ProviderConfig, HttpProviderOptions, ExtauthProviderOptions, LdapProviderOptions]
)
def test_every_option_is_documented(model: type[BaseModel]) -> None:
    undocumented = [name for name, field in model.model_fields.items() if not field.description]
    assert undocumented == []
