"""A small RFC 7616 client for the tests that need to send what real clients do
not (a replayed nc, another uri, no qop); built from the RFC's formulas with
hashlib, not from the server's code."""

from __future__ import annotations

import hashlib
import re

_ALGORITHMS = {"MD5": "md5", "SHA-256": "sha256"}


def challenge_params(header: str) -> dict[str, str]:
    return {k.lower(): v or w for k, v, w in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', header)}


def authorization(
    challenge: str,
    username: str,
    password: str,
    method: str,
    uri: str,
    *,
    nc: int = 1,
    cnonce: str = "0a4f113b",
    qop: str | None = "auth",
    realm: str | None = None,
    opaque: bool = True,
) -> str:
    p = challenge_params(challenge)
    algorithm = p.get("algorithm", "MD5")
    h = _ALGORITHMS[algorithm]

    def hx(text: str) -> str:
        return hashlib.new(h, text.encode()).hexdigest()

    realm = p["realm"] if realm is None else realm
    ha1 = hx(f"{username}:{realm}:{password}")
    ha2 = hx(f"{method}:{uri}")
    count = f"{nc:08x}"
    if qop is None:
        response = hx(f"{ha1}:{p['nonce']}:{ha2}")
        extra = ""
    else:
        response = hx(f"{ha1}:{p['nonce']}:{count}:{cnonce}:{qop}:{ha2}")
        extra = f', qop={qop}, nc={count}, cnonce="{cnonce}"'
    text = (
        f'Digest username="{username}", realm="{realm}", nonce="{p["nonce"]}", uri="{uri}",'
        f' algorithm={algorithm}, response="{response}"{extra}'
    )
    if opaque and "opaque" in p:
        text += f', opaque="{p["opaque"]}"'
    return text
