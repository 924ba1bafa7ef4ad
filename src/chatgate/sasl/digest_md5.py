"""The DIGEST-MD5 mechanism (RFC 2831), server side, authentication only.

COMPAT: RFC 6331 moved DIGEST-MD5 to Historic; it is here for old clients only,
never offered unless configured, and it needs a plaintext-equivalent stored
secret, H(user:realm:password) (`digest_md5_ha1`), kept only when
``[modules.legacy_auth] digest_md5`` is on.

This module owns parsing the client's digest-response, checking it against the
stored secret and building rspauth.  It never awaits, never reads the clock
and never touches storage: the secret arrives through `resume()` after the
mechanism asked for it with ``NeedCredentials(DIGEST_MD5_HA1, username)``.
The only outside input it reads is `os.urandom` for the nonce.

Theory of operation::

    start(None) --digest-challenge--> EXPECT_RESPONSE --digest-response--> WAIT_SECRET
    WAIT_SECRET --resume(secret)--> DONE: Success(additional data "rspauth=...") or Failure

* The server speaks first (RFC 2831 §2.1.1): an initial response is refused,
  so subsequent authentication (§2.2) is not supported.
* Only qop "auth" is offered: no integrity or confidentiality layer (RFC 6120
  §6.3.10 lets the rspauth go in <success/>'s additional data).
* The digest-uri must be "xmpp/" followed by the served domain (RFC 6120 §6.3.9
  names the service "xmpp"); the realm must be the one offered; nc must be
  00000001 (one authentication per nonce).

Failure conditions: a directive missing, repeated or malformed, a foreign
digest-uri, qop or charset, a digest-response of 4096 bytes or more (§2.1.2: "The
size of a digest-response is less than 4096 bytes", checked before it is parsed)
-> malformed-request (§6.5.8); wrong response, wrong
realm or nonce, unknown user -> not-authorized (§6.5.10); authzid other than the
user's own bare JID -> invalid-authzid (§6.5.6); provider unavailable ->
temporary-auth-failure (§6.5.11).

The provider seam: `sasl/driver.py` does not answer DIGEST_MD5_HA1 yet, and
`CredentialAnswer` has no field for the secret; `resume()` reads an attribute
``digest_md5_ha1`` (bytes or None) from the answer, which is what those two
need to provide (see docs/registration.md).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from typing import ClassVar

from chatgate.auth.provider import Capability
from chatgate.jid import JID, InvalidJID, is_own_bare_jid, prepare_username
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Step,
    Success,
)
from chatgate.vocabulary.errors import SaslFailureCondition

__all__ = ["DigestMd5Mechanism", "digest_md5_ha1", "digest_responses", "parse_directives"]

_MALFORMED = SaslFailureCondition.MALFORMED_REQUEST
_NOT_AUTHORIZED = SaslFailureCondition.NOT_AUTHORIZED

#: RFC 2616 §2.2 token (RFC 2831 §7.1), then "=" and a token or quoted-string.
_DIRECTIVE = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^",\s]*))\s*'
)
_HEX32 = re.compile(r"[0-9a-f]{32}")
#: RFC 2831 §2.1.2: "The size of a digest-response is less than 4096 bytes."
MAX_RESPONSE_BYTES = 4095


def digest_md5_ha1(username: str, realm: str, password: str) -> bytes:
    """RFC 2831 §2.1.2.1: H({ username-value, ":", realm-value, ":", passwd }).

    "If the directive 'charset=utf-8' is present, and all the characters of
    either the string "username-value ":" realm-value ":" passwd" are in the
    ISO 8859-1 character set, then it must be converted to ISO 8859-1 before
    being hashed": clients (Cyrus SASL included) do so, and so do we.
    """
    text = f"{username}:{realm}:{password}"
    try:
        data = text.encode("iso-8859-1")
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    return hashlib.md5(data).digest()


def parse_directives(data: str) -> dict[str, str]:
    """RFC 2831 §7.1 ``#( name "=" ( token | quoted-string ) )``; raises ValueError
    for malformed input or a repeated directive (§2.1.2: each appears at most once)."""
    result: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        match = _DIRECTIVE.match(data, pos)
        if match is None:
            raise ValueError(f"malformed directive at offset {pos}")
        name = match.group(1).lower()
        quoted = match.group(2)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
        if name in result:
            raise ValueError(f"directive {name!r} appears twice")
        result[name] = value
        pos = match.end()
        if pos < len(data):
            if data[pos] != ",":
                raise ValueError(f"expected ',' at offset {pos}")
            pos += 1
    return result


def _hex_md5(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode("ascii")


def digest_responses(ha1: bytes, r: dict[str, str]) -> tuple[bytes, bytes]:
    """(the expected response-value, rspauth) for the directives `r` of a digest-response
    and the stored H(user:realm:password) (RFC 2831 §2.1.2.1 and §2.1.3, qop "auth")."""
    a1 = ha1 + f":{r['nonce']}:{r['cnonce']}".encode()
    if r.get("authzid"):
        a1 += b":" + r["authzid"].encode("utf-8")
    ha1_hex = _hex_md5(a1)
    uri = r["digest-uri"].encode("utf-8")
    # KD(k, s) = H(k ":" s); s = nonce ":" nc ":" cnonce ":" qop ":" HEX(H(A2))
    tail = f":{r['nonce']}:{r['nc']}:{r['cnonce']}:auth:".encode()
    expected = _hex_md5(ha1_hex + tail + _hex_md5(b"AUTHENTICATE:" + uri))
    rspauth = _hex_md5(ha1_hex + tail + _hex_md5(b":" + uri))
    return expected, rspauth


class _State(enum.Enum):
    EXPECT_RESPONSE = "expect-response"
    WAIT_SECRET = "wait-secret"
    DONE = "done"


class DigestMd5Mechanism:
    """DIGEST-MD5 for one authentication attempt; the realm is the served domain."""

    name: ClassVar[str] = "DIGEST-MD5"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.DIGEST_MD5_HA1})
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = False
    plaintext: ClassVar[bool] = False

    def __init__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes = b"",
        plus_offered: bool = False,
        *,
        advertised: Sequence[str] | None = None,
        nonce: str | None = None,
    ) -> None:
        self._domain = facts.domain
        self._realm = facts.domain
        self._server_secret = server_secret
        self._nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self._state = _State.EXPECT_RESPONSE
        self._started = False
        self._response: dict[str, str] = {}
        self._username: str | None = None

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            raise ValueError("start() called twice")
        self._started = True
        if initial_response:
            # RFC 2831 §2.2 subsequent authentication is not supported.
            return self._fail(_MALFORMED, "DIGEST-MD5 starts with the server's challenge")
        challenge = (
            f'realm="{self._realm}",nonce="{self._nonce}",qop="auth",'
            "charset=utf-8,algorithm=md5-sess"
        )
        return Challenge(challenge.encode("utf-8"))

    def respond(self, response: bytes) -> Step:
        if not self._started:
            raise ValueError("respond() before start()")
        if self._state is _State.WAIT_SECRET:
            raise ValueError("respond() while waiting for credentials")
        if self._state is _State.DONE:
            return Failure(_MALFORMED, "the authentication exchange is over", self._username)
        return self._digest_response(response)

    def resume(self, answer: CredentialAnswer) -> Step:
        if self._state is not _State.WAIT_SECRET:
            raise ValueError("resume() without a pending credential request")
        self._state = _State.DONE
        username = self._username
        assert username is not None
        if answer.temporary_failure:
            return Failure(SaslFailureCondition.TEMPORARY_AUTH_FAILURE, "try again later", username)
        ha1 = answer.digest_md5_ha1
        known = ha1 is not None
        if ha1 is None:
            # The same work for an unknown user as for a wrong password.
            ha1 = hmac.digest(self._server_secret or b"-", username.encode(), "md5")
        r = self._response
        expected, rspauth = digest_responses(ha1, r)
        presented = r["response"].encode("ascii")
        if not hmac.compare_digest(expected, presented) or not known:
            return Failure(_NOT_AUTHORIZED, "", username)
        authzid = r.get("authzid")
        if authzid:
            if not is_own_bare_jid(authzid, username, self._domain):
                return Failure(SaslFailureCondition.INVALID_AUTHZID, "", username)
            return Success(username, b"rspauth=" + rspauth, str(JID.parse(authzid)))
        return Success(username, b"rspauth=" + rspauth)

    # ------------------------------------------------------------ internals

    def _digest_response(self, data: bytes) -> Step:
        if len(data) > MAX_RESPONSE_BYTES:
            return self._fail(_MALFORMED, "a digest-response has less than 4096 bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(SaslFailureCondition.INCORRECT_ENCODING, "not UTF-8")
        try:
            r = parse_directives(text)
        except ValueError as exc:
            return self._fail(_MALFORMED, str(exc))
        missing = [
            k for k in ("username", "nonce", "cnonce", "nc", "digest-uri", "response") if k not in r
        ]
        if missing:
            return self._fail(_MALFORMED, f"missing {', '.join(missing)}")
        if r.get("qop", "auth") != "auth" or r.get("charset", "utf-8") != "utf-8":
            return self._fail(_MALFORMED, "only qop=auth with charset=utf-8 is offered")
        serv_type, _, rest = r["digest-uri"].partition("/")
        host, _, serv_name = rest.partition("/")
        if serv_type != "xmpp" or self._domain not in (host, serv_name or host):
            return self._fail(_MALFORMED, "digest-uri must be xmpp/" + self._domain)
        if not _HEX32.fullmatch(r["response"]):
            return self._fail(_MALFORMED, "response is not 32 lowercase hex digits")
        try:
            username = prepare_username(r["username"])
        except InvalidJID as exc:
            return self._fail(_MALFORMED, f"invalid username: {exc}")
        self._username = username
        if r["nonce"] != self._nonce or r.get("realm", "") != self._realm or r["nc"] != "00000001":
            return self._fail(_NOT_AUTHORIZED, "")
        self._response = r
        self._state = _State.WAIT_SECRET
        return NeedCredentials(Capability.DIGEST_MD5_HA1, username)

    def _fail(self, condition: SaslFailureCondition, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition, text, self._username)
