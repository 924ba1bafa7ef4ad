"""OAUTHBEARER (RFC 7628) for chatgate: log in with an OAuth 2.0 bearer token.

An example third-party SASL mechanism, packaged on its own.  Its
``pyproject.toml`` registers `OAuthBearerMechanism` under the entry-point group
``chatgate.sasl_mechanisms`` as ``OAUTHBEARER``, and chatgate offers it where
``[auth] mechanisms`` lists that name.

This module owns parsing the client's message (RFC 7628 §3.1), asking for a
verdict on the token, and the error exchange that follows a refused token
(§3.2.2, §3.2.3).  It never awaits, never reads the clock and never touches
storage or the network: the token is judged by the credential provider, asked
with ``NeedCredentials(VERIFY_PASSWORD, username, password=token)``.  With the
``http`` provider the operator's service receives the token as the password and
can check it with its authorization server (token introspection, RFC 7662).

Theory of operation
-------------------
States and their transitions::

    EXPECT_MESSAGE ──message──▶ WAIT_VERDICT         (returns NeedCredentials)
    EXPECT_MESSAGE ──bad message──▶ DONE             (Failure)
    WAIT_VERDICT ──resume(verified)──▶ DONE          (Success)
    WAIT_VERDICT ──resume(refused)──▶ SENT_ERROR     (Challenge: the error result)
    SENT_ERROR ──any response──▶ DONE                (Failure: not-authorized)

* ``start(None)``: the client sent no initial response, so an empty challenge
  asks for it (RFC 6120 §6.4.2); the message then arrives in ``respond()``.
* A refused token is not answered with a failure at once.  RFC 7628 §3: "In
  the case where authentication fails, the server sends an error result; the
  client MUST then send an additional message to the server in order to allow
  the server to finish the exchange."  The error result is "in JSON format"
  (§3.2.2) and travels in a challenge because SASL allows no data with a
  failure.  §3.2.3: that message is "a single %x01 (control A) character ...
  or a SASL abort message".  Whatever response arrives, the answer is
  not-authorized, so a refused token stays a counted guess.  (An ``<abort/>``
  never reaches the mechanism: chatgate's negotiation answers it.)
* The authzid in the GS2 header names the account (``n,a=user@domain,``).  A
  bearer token need not name its user, and the provider is asked about one
  account, so a message without an authzid is malformed here.

Failure conditions (RFC 6120 §6.5): a message that does not follow the
grammar, lacks the authzid or carries no ``auth=Bearer <token>`` ->
malformed-request; bytes that are not UTF-8 -> incorrect-encoding; an authzid
that is not a bare JID of this domain -> invalid-authzid; a refused token or
an unknown user (the same answer) -> not-authorized, after the error
challenge; provider unavailable -> temporary-auth-failure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import ClassVar

from chatgate.auth.provider import Capability
from chatgate.jid import JID, InvalidJID
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

__all__ = ["OAuthBearerMechanism"]

_MALFORMED = SaslFailureCondition.MALFORMED_REQUEST

# RFC 7628 §3.1:
#   kvsep       = %x01
#   key         = 1*(ALPHA)
#   value       = *(VCHAR / SP / HTAB / CR / LF )
#   kvpair      = key "=" value kvsep
#   client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
_KVSEP = "\x01"
_KEY = re.compile(r"[A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7e \t\r\n]*")
# RFC 5801 §4: gs2-authzid = "a=" saslname, with "," and "=" written as =2C and =3D.
_SASLNAME = re.compile(r"(?:[^=,]|=2C|=3D)+")
# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token (the scheme is case-insensitive);
#   b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
# RFC 7628 §3.2.2: the error result; "invalid_token" for a refused token and for an
# unknown user alike, so the answer does not tell which accounts exist.
_ERROR_RESULT = b'{"status":"invalid_token"}'


class _State(enum.Enum):
    EXPECT_MESSAGE = "expect-message"
    WAIT_VERDICT = "wait-verdict"
    SENT_ERROR = "sent-error"
    DONE = "done"


class _Malformed(Exception):
    """The client's message breaks the grammar; the text says how."""


class OAuthBearerMechanism:
    """OAUTHBEARER (RFC 7628): ``n,a=user@domain,^Aauth=Bearer <token>^A^A``.

    The constructor takes the arguments every mechanism factory takes;
    `server_secret`, `plus_offered` and `advertised` do not matter here.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.VERIFY_PASSWORD})
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = False
    # RFC 7628 §3: "TLS MUST be used for OAUTHBEARER to protect the bearer token".
    plaintext: ClassVar[bool] = True

    def __init__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes = b"",
        plus_offered: bool = False,
        *,
        advertised: Sequence[str] | None = None,
    ) -> None:
        self._domain = JID.parse(facts.domain).domain
        self._state = _State.EXPECT_MESSAGE
        self._started = False
        self._username: str | None = None
        self._authzid: str | None = None

    @property
    def verdict_disclosed(self) -> bool:
        """True once the error result told the client its token was refused: however
        the exchange ends now, chatgate counts it as a failed guess."""
        return self._state is _State.SENT_ERROR

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            raise ValueError("start() called twice")
        self._started = True
        if initial_response is None:
            # RFC 6120 §6.4.2: no initial response, so an empty challenge asks for it.
            return Challenge(b"")
        return self._message(initial_response)

    def respond(self, response: bytes) -> Step:
        if not self._started:
            raise ValueError("respond() before start()")
        if self._state is _State.EXPECT_MESSAGE:
            return self._message(response)
        if self._state is _State.WAIT_VERDICT:
            raise ValueError("respond() while waiting for credentials")
        if self._state is _State.SENT_ERROR:
            # RFC 7628 §3.2.3: the client acknowledges the error result with a single
            # %x01.  Anything else ends the exchange the same way: answering it with
            # malformed-request would let a client turn a refused token into a
            # protocol error, which brute-force protection does not count.
            return self._fail(SaslFailureCondition.NOT_AUTHORIZED, "")
        return Failure(_MALFORMED, "the authentication exchange is over", self._username)

    def resume(self, answer: CredentialAnswer) -> Step:
        if self._state is not _State.WAIT_VERDICT:
            raise ValueError("resume() without a pending credential request")
        username = self._username
        assert username is not None
        if answer.temporary_failure:
            return self._fail(SaslFailureCondition.TEMPORARY_AUTH_FAILURE, "try again later")
        if answer.verified:
            self._state = _State.DONE
            return Success(username, authzid=self._authzid)
        self._state = _State.SENT_ERROR
        return Challenge(_ERROR_RESULT)

    def _message(self, data: bytes) -> Step:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(SaslFailureCondition.INCORRECT_ENCODING, "not UTF-8")
        try:
            authzid, token = _parse(text)
        except _Malformed as exc:
            return self._fail(_MALFORMED, str(exc))
        try:
            jid = JID.parse(authzid)
        except InvalidJID as exc:
            return self._fail(_MALFORMED, f"invalid authzid: {exc}")
        # RFC 6120 §6.3.8: a client may only ask to act as its own bare JID; here the
        # authzid also names the account whose token this is.
        if not jid.local or jid.resource or jid.domain != self._domain:
            return self._fail(
                SaslFailureCondition.INVALID_AUTHZID, "the authzid must be user@" + self._domain
            )
        self._username = jid.local
        self._authzid = str(jid)
        self._state = _State.WAIT_VERDICT
        return NeedCredentials(Capability.VERIFY_PASSWORD, jid.local, password=token)

    def _fail(self, condition: SaslFailureCondition, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition, text, self._username)


def _parse(text: str) -> tuple[str, str]:
    """The authzid and the bearer token of a client response; raises `_Malformed`."""
    # Every kvpair ends with a kvsep and one more closes the list, so a message ends
    # with two; a lone kvsep is "only valid" after an error result (RFC 7628 §3.1).
    if not text.endswith(_KVSEP * 2):
        raise _Malformed("expected gs2-header ^A key=value^A ... ^A")
    header, *pairs = text[:-2].split(_KVSEP)
    authzid = _gs2_authzid(header)
    values: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise _Malformed(f"invalid key/value pair {pair!r}")
        if key in values:
            raise _Malformed(f"{key!r} given twice")
        values[key] = value
    # "host" and "port" serve keyed-digest token types (RFC 7628 §3.3), not bearer
    # tokens; unknown keys are ignored.
    auth = values.get("auth")
    if auth is None:
        raise _Malformed("no auth=Bearer <token>")
    bearer = _BEARER.fullmatch(auth)
    if bearer is None:
        raise _Malformed("auth must be 'Bearer <token>' (RFC 6750 §2.1)")
    if authzid is None:
        raise _Malformed("name the account: n,a=user@domain,")
    return authzid, bearer.group(1)


def _gs2_authzid(header: str) -> str | None:
    """The decoded authzid of a GS2 header (RFC 5801 §4), or None; raises `_Malformed`.

    gs2-header = [gs2-nonstd-flag ","] gs2-cb-flag "," [gs2-authzid] ","
    """
    parts = header.split(",")
    if len(parts) != 3 or parts[2]:
        raise _Malformed("expected a GS2 header: n,a=user@domain,")
    cb_flag, authzid = parts[0], parts[1]
    if cb_flag.startswith("p="):
        raise _Malformed("OAUTHBEARER has no channel binding")
    # "y" (the client could bind but thinks we cannot) is true: there is no -PLUS variant.
    if cb_flag not in ("n", "y"):
        raise _Malformed(f"invalid channel-binding flag {cb_flag!r}")
    if not authzid:
        return None
    if not authzid.startswith("a=") or not _SASLNAME.fullmatch(authzid[2:]):
        raise _Malformed("invalid authzid: expected a=saslname")
    return re.sub(r"=2C|=3D", lambda m: "," if m[0] == "=2C" else "=", authzid[2:])
