"""RFC 7616's formulas against its own examples (§3.9.1), the header parser, the
challenge, and nonces: minted with a secret and a realm, read back only with both."""

from __future__ import annotations

import pytest

from chatgate.http.auth.digest_core import (
    Malformed,
    NonceCodec,
    challenge,
    ha1,
    parse_digest,
    response,
)

RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_response_matches_rfc_7616_example(algorithm: str, expected: str) -> None:
    secret = ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
    got = response(
        algorithm, secret, RFC_NONCE, "00000001", RFC_CNONCE, "auth", "GET", "/dir/index.html"
    )
    assert got == expected


def test_wowza_seed_example_hash() -> None:
    # seed 003: solomio:Wowza:secret -> 43c27fa10ce3ea64d60735c79e9f1c4f
    assert ha1("MD5", "solomio", "Wowza", "secret") == "43c27fa10ce3ea64d60735c79e9f1c4f"


def test_parse_reads_quoted_and_token_values() -> None:
    creds = parse_digest(
        'Digest username="Mu\\"fasa", realm="r", uri="/a?b=1,2", algorithm=sha-256,'
        ' nonce="n", nc=0000000a, cnonce="c", qop=auth, response="AB", opaque="o"'
    )
    assert creds.username == 'Mu"fasa'
    assert creds.uri == "/a?b=1,2"
    assert creds.algorithm == "SHA-256"
    assert creds.nc == "0000000a"
    assert creds.response == "AB"  # as sent: remotehttp hashes it as the service does


def test_parse_defaults_to_md5_without_algorithm() -> None:
    creds = parse_digest('Digest username="a", realm="r", uri="/", nonce="n", response="x"')
    assert creds.algorithm == "MD5"
    assert creds.qop is None


@pytest.mark.parametrize(
    "header",
    [
        "Basic YWJj",
        'Digest username="a", realm="r", uri="/", nonce="n"',  # no response
        'Digest username="a", username="b", realm="r", uri="/", nonce="n", response="x"',
        'Digest username="a, realm="r"',
        'Digest username="a", realm="r", uri="/", nonce="n", response="x", nc=1',
        'Digest username*=UTF-8\'\'a, username="a", realm="r", uri="/", nonce="n", response="x"',
    ],
)
def test_parse_refuses_malformed_headers(header: str) -> None:
    with pytest.raises(Malformed):
        parse_digest(header)


def test_challenge_format() -> None:
    text = challenge('a "b"', "SHA-256", "N", "O", stale=True)
    assert text == (
        'Digest realm="a \\"b\\"", qop="auth", algorithm=SHA-256, nonce="N", opaque="O", stale=true'
    )


def test_nonce_is_read_back_only_with_its_secret_and_realm() -> None:
    codec = NonceCodec(b"s" * 32, "chatgate")
    nonce = codec.mint(1_700_000_000)
    assert codec.issued_at(nonce) == 1_700_000_000
    assert NonceCodec(b"t" * 32, "chatgate").issued_at(nonce) is None
    assert NonceCodec(b"s" * 32, "Wowza").issued_at(nonce) is None
    tampered = ("B" if nonce[5] != "B" else "C").join((nonce[:5], nonce[6:]))
    assert codec.issued_at(tampered) is None
    assert codec.issued_at("6b13ab5b114e2") is None  # a PHP uniqid()


def test_nonces_differ_within_one_second() -> None:
    codec = NonceCodec(b"s" * 32, "chatgate")
    assert codec.mint(5) != codec.mint(5)
