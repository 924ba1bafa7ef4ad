"""The form reader and the credential keys shared by the adapters."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from chatgate.streams.adapters import CredentialKind, Credentials
from chatgate.streams.adapters.form import credentials_from_form, read_form, text


def reference(data: bytes) -> tuple[dict[bytes, bytes], frozenset[bytes]]:
    """First occurrence per decoded key, written the obvious way."""
    first: dict[bytes, bytes] = {}
    repeated: set[bytes] = set()
    for part in data.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        key = unquote_to_bytes(key.replace(b"+", b" "))
        if key in first:
            repeated.add(key)
        else:
            first[key] = value
    return first, frozenset(repeated)


@given(
    st.lists(st.sampled_from([b"a", b"b", b"=", b"&", b"%61", b"+", b"%", b"x=1", b"", b"\xff"]))
)
def test_read_form_agrees_with_the_obvious_reader(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    assert read_form(data) == reference(data)


def test_first_occurrence_wins_and_repeats_are_noted() -> None:
    first, repeated = read_form(b"name=a&name=b&x&=v&&y=1")
    assert first[b"name"] == b"a" and first[b"x"] == b"" and first[b""] == b"v"
    assert repeated == {b"name"}


def test_text_decodes_form_rules_and_refuses_non_utf8() -> None:
    assert text(b"a+b%20c%2B") == "a b c+"
    assert text(b"%e2%82%ac") == "\u20ac"
    assert text(b"%ff") is None
    assert text(b"\xff") is None
    assert text(None) is None
    assert text(b"%zz%4") == "%zz%4"


def test_alias_names() -> None:
    assert credentials_from_form(read_form(b"user=alice&pass=pw")) == Credentials.password(
        "alice", "pw"
    )
    assert credentials_from_form(read_form(b"user=alice&password=pw")) == (
        Credentials.password("alice", "pw")
    )
    bad = credentials_from_form(read_form(b"user=alice&username=alice&pass=pw"))
    assert bad.kind is CredentialKind.INVALID


def test_non_ascii_username_takes_the_careful_path() -> None:
    creds = credentials_from_form(read_form(b"username=j%C3%BCrgen&password=pw"))
    assert creds == Credentials.password("jürgen", "pw")
    creds = credentials_from_form(read_form(b"username=%ff&password=pw"))
    assert creds == Credentials.invalid("username is not UTF-8")
    creds = credentials_from_form(read_form(b"username=" + b"u" * 1024 + b"&password=pw"))
    assert creds.kind is CredentialKind.INVALID


@given(st.binary(max_size=60))
def test_credentials_never_raise_and_invalid_ones_carry_no_secret(data: bytes) -> None:
    creds = credentials_from_form(read_form(b"username=a&" + data))
    if creds.kind is CredentialKind.INVALID:
        assert creds.secret is None and creds.problem
    if creds.kind is CredentialKind.PASSWORD:
        assert creds.username and creds.secret
