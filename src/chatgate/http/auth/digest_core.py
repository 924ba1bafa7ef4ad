"""RFC 7616 HTTP Digest, sans-I/O: parsing `Authorization: Digest`, writing
challenges, minting and reading server nonces, computing responses.

Never awaits, never reads the clock (`now` is passed in, Unix seconds), never
logs.  The methods (`digest.py`, `digest_file.py`, `remote.py`) decide what a
result means for the client and the login gate.

Theory of operation
-------------------

A challenge offers one `algorithm` per entry (RFC 7616 §3.7: "the server can
send multiple WWW-Authenticate headers ... one per algorithm"), all with the
same nonce and `qop="auth"` (§3.3: no `auth-int`, no RFC 2069 responses without
qop).

A nonce is ``base64url(issued_at(8) || random(8) || HMAC-SHA-256(secret, realm
|| issued_at || random)[:16])``: any process holding the installation secret
can tell that it issued it and when, without a table (§5.4: a nonce "with a
time stamp ... and a private key").  One older than the lifetime is answered
`stale=true` once the response proves the password (§3.3: stale is set only
for a valid digest with an old nonce), so the client retries without asking
its user.  Replays within the lifetime are caught by the nonce count: each
nonce's highest `nc` is kept (`nonces.py`), and a response must raise it.

`opaque` is fixed per installation and realm; a client returning another one
is refused.  The `uri` must be the request's own target (§3.4.6: a server
must check it), so a captured response cannot open another resource.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ALGORITHMS",
    "DigestCredentials",
    "Malformed",
    "NonceCodec",
    "challenge",
    "ha1",
    "parse_digest",
    "response",
]

Algorithm = Literal["MD5", "SHA-256"]
#: RFC 7616 names -> hashlib names
ALGORITHMS: Final[dict[str, str]] = {"MD5": "md5", "SHA-256": "sha256"}
#: the file's `password_encoding` names -> RFC 7616 names
ENCODINGS: Final[dict[str, Algorithm]] = {"md5": "MD5", "sha256": "SHA-256"}
#: hex length of each algorithm's digest
HEX_LENGTH: Final[dict[str, int]] = {"MD5": 32, "SHA-256": 64}

#: longest Authorization header read at all (aiohttp limits headers to 8 KiB anyway)
_MAX_HEADER = 4096
_PARAM = re.compile(
    r'\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)', re.S
)
_NC = re.compile(r"[0-9a-fA-F]{8}")


class Malformed(ValueError):
    """An `Authorization: Digest` header that cannot be read (not a wrong password)."""


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(ALGORITHMS[algorithm], text.encode()).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password), what an `admin.password` line and the store keep."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def response(
    algorithm: str,
    ha1_hex: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str,
    method: str,
    uri: str,
) -> str:
    """The `response` a client knowing HA1 sends (RFC 7616 §3.4.1, qop=auth)."""
    ha2 = _hash(algorithm, f"{method}:{uri}")
    return _hash(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(realm: str, algorithm: str, nonce: str, opaque: str, *, stale: bool = False) -> str:
    """One `WWW-Authenticate` value."""
    text = (
        f'Digest realm={_quote(realm)}, qop="auth", algorithm={algorithm},'
        f" nonce={_quote(nonce)}, opaque={_quote(opaque)}"
    )
    return text + ", stale=true" if stale else text


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The parameters of an `Authorization: Digest` header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str  # "MD5" when the client names none (§3.4)
    qop: str | None
    nc: str | None
    cnonce: str | None
    opaque: str | None
    userhash: bool


def parse_params(text: str) -> dict[str, str]:
    """`name=value` pairs (tokens or quoted strings with backslash escapes), names
    lower-cased.  Raises Malformed on garbage or a name given twice."""
    params: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _PARAM.match(text, pos)
        if match is None or match.end() == pos:
            raise Malformed("cannot read the digest parameters")
        name = match[1].lower()
        if name in params:
            raise Malformed(f"{name} given twice")
        quoted = match[2]
        params[name] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match[3]
        pos = match.end()
    return params


def parse_digest(header: str) -> DigestCredentials:
    """Read an `Authorization: Digest ...` header.  Raises Malformed."""
    if len(header) > _MAX_HEADER:
        raise Malformed("header too long")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise Malformed("not a Digest header")
    params = parse_params(rest)
    missing = [p for p in ("username", "realm", "nonce", "uri", "response") if p not in params]
    if missing:
        raise Malformed(f"missing {', '.join(missing)}")
    if "username*" in params:
        raise Malformed("username* is not supported")
    nc = params.get("nc")
    if nc is not None and not _NC.fullmatch(nc):
        raise Malformed("nc is not 8 hex digits")
    algorithm = params.get("algorithm", "MD5")
    canonical = {a.lower(): a for a in ALGORITHMS}.get(algorithm.lower(), algorithm)
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=canonical,
        qop=params.get("qop"),
        nc=nc,
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "false").lower() == "true",
    )


class NonceCodec:
    """Mints and reads this installation's nonces (see the module docstring)."""

    def __init__(self, secret: bytes, realm: str) -> None:
        self._key = hmac.new(secret, b"chatgate admin digest nonce", hashlib.sha256).digest()
        self._realm = realm.encode()
        self.opaque = hmac.new(self._key, b"opaque:" + self._realm, hashlib.sha256).hexdigest()[:32]

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, self._realm + b"\0" + body, hashlib.sha256).digest()[:16]

    def mint(self, now: float, random: bytes | None = None) -> str:
        body = struct.pack(">Q", int(now)) + (os.urandom(8) if random is None else random)
        return base64.urlsafe_b64encode(body + self._mac(body)).decode().rstrip("=")

    def issued_at(self, nonce: str) -> int | None:
        """When this installation minted `nonce` (Unix seconds), or None: not ours."""
        if len(nonce) != 43:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        body, mac = raw[:16], raw[16:]
        if len(raw) != 32 or not hmac.compare_digest(mac, self._mac(body)):
            return None
        return int(struct.unpack(">Q", body[:8])[0])
