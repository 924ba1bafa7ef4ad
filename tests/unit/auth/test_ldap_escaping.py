"""The ldap provider's parts that need no server: RFC 4515/4514 escaping, empty
passwords, start-up checks."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ldap3")

from chatgate.auth.ldap import LdapProvider, search_filter, user_dn
from chatgate.auth.options import LdapProviderOptions
from chatgate.vocabulary.errors import ConfigError

PEOPLE = "uid={user},ou=people,dc=example,dc=org"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", "(uid=alice)"),
        ("*", r"(uid=\2a)"),
        ("*)(uid=*", r"(uid=\2a\29\28uid=\2a)"),
        ("a\\b", r"(uid=a\5cb)"),
        ("ünï", "(uid=ünï)"),
    ],
)
def test_filter_escapes_rfc4515_specials(user: str, expected: str) -> None:
    assert search_filter("(uid={user})", user, "localhost") == expected


def test_filter_substitutes_server_too() -> None:
    assert (
        search_filter("(mail={user}@{server})", "alice", "example.org")
        == "(mail=alice@example.org)"
    )


def test_username_that_looks_like_a_placeholder_stays_literal() -> None:
    assert (
        search_filter("(&(uid={user})(o={server}))", "{server}", "x*")
        == r"(&(uid={server})(o=x\2a))"
    )


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", "uid=alice,ou=people,dc=example,dc=org"),
        ("x,ou=admins", r"uid=x\,ou\=admins,ou=people,dc=example,dc=org"),
        ("a+b=c", r"uid=a\+b\=c,ou=people,dc=example,dc=org"),
        ("#lead", r"uid=\#lead,ou=people,dc=example,dc=org"),
        ('q"<>;', r"uid=q\"\<\>\;,ou=people,dc=example,dc=org"),
    ],
)
def test_dn_escapes_rfc4514_specials(user: str, expected: str) -> None:
    assert user_dn(PEOPLE, user, "localhost") == expected


def test_dn_of_empty_user_is_refused() -> None:
    with pytest.raises(ValueError):
        user_dn(PEOPLE, "", "localhost")


async def test_empty_password_fails_without_contacting_the_server() -> None:
    provider = LdapProvider(LdapProviderOptions(uri="ldap://127.0.0.1:1", bind_dn_template=PEOPLE))
    # not started: any network attempt would raise; an empty password never gets that far
    assert await provider.verify_password("alice", "localhost", "") is False


async def test_start_with_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    options = LdapProviderOptions(uri="ldaps://127.0.0.1", bind_dn_template=PEOPLE)
    provider = LdapProvider(options, ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"auth\.provider\.ldap\.ca_file"):
        await provider.start()
    await provider.close()
