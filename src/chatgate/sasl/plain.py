"""The PLAIN mechanism (RFC 4616), server side.

This module owns parsing the single PLAIN message and turning the provider's
verdict into a SASL result.  It never awaits, never reads the clock and never
touches storage: the password check happens in the provider, asked for with
``NeedCredentials(VERIFY_PASSWORD, username, password)``.  PLAIN sends the
password in the clear, so it is `plaintext` and selection hides it before TLS
unless the operator explicitly allows it.

Flow: ``start(None)`` -> empty challenge (RFC 6120 §6.4.2), then the message
arrives in ``respond()``; or ``start(message)`` directly.  Then
``NeedCredentials`` -> ``resume(answer)`` -> `Success` or `Failure`.  One
object serves one attempt; anything after the end is a failure.

Failure conditions: malformed message, a password over 1,024 bytes
(`auth/passwords.py`, checked before anything is decoded or prepared) or a
username that is not a valid localpart -> malformed-request (RFC 6120 §6.5.8);
bad UTF-8 -> incorrect-encoding
(§6.5.5); wrong password or unknown user -> not-authorized (§6.5.10); authzid
other than the user's own bare JID -> invalid-authzid (§6.5.6), checked after the
password; provider unavailable -> temporary-auth-failure (§6.5.11); a right
password whose account may not log in yet (`CredentialAnswer.held`, set only for
a right password: a registration awaiting approval, a locked account) -> the
answer's `held_condition` (not-authorized; account-disabled for a locked account,
see `sasl/scram.py`) with the held text, no guess (`Failure.guess`).

Why malformed-request for a password that is too long, not not-authorized: no
stored password can be that long (registration and the CLI refuse one), so the
request can never succeed and no credential is evaluated.  §6.5.10's
not-authorized says the credentials were checked and were not right, and it is a
guess the brute-force throttle counts; §6.5.8 is for a request refused for its
form, which this is, whoever the user.  The text says what the limit is.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import ClassVar

from chatgate.auth.passwords import TOO_LONG, too_long
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

__all__ = ["PlainMechanism"]

_MALFORMED = SaslFailureCondition.MALFORMED_REQUEST


class _State(enum.Enum):
    EXPECT_MESSAGE = "expect-message"
    WAIT_VERDICT = "wait-verdict"
    DONE = "done"


class PlainMechanism:
    """PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd`` in one message.

    The constructor takes the same arguments as every mechanism factory;
    `server_secret` and `plus_offered` do not matter to PLAIN.
    """

    name: ClassVar[str] = "PLAIN"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.VERIFY_PASSWORD})
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = False
    plaintext: ClassVar[bool] = True

    def __init__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes = b"",
        plus_offered: bool = False,
        *,
        advertised: Sequence[str] | None = None,
    ) -> None:
        self._domain = facts.domain
        self._state = _State.EXPECT_MESSAGE
        self._started = False
        self._username: str | None = None
        self._authzid: str | None = None

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
        return Failure(_MALFORMED, "the authentication exchange is over", self._username)

    def resume(self, answer: CredentialAnswer) -> Step:
        if self._state is not _State.WAIT_VERDICT:
            raise ValueError("resume() without a pending credential request")
        self._state = _State.DONE
        username = self._username
        assert username is not None
        if answer.temporary_failure:
            return Failure(SaslFailureCondition.TEMPORARY_AUTH_FAILURE, "try again later", username)
        if answer.held is not None:
            # The password was right (the provider sets `held` for nothing else), so the
            # client may hear why it cannot log in yet; no guess to count or hold.
            return Failure(answer.held_condition, answer.held, username, guess=False)
        if not answer.verified:
            return Failure(SaslFailureCondition.NOT_AUTHORIZED, "", username)
        authzid = self._authzid
        if authzid is None:
            return Success(username)
        # RFC 4616 §2: the server "will verify that the authentication credentials
        # permit the client to act as the (presented or derived) authorization
        # identity (authzid)"; we allow only the user's own bare JID (RFC 6120 §6.3.8).
        if not is_own_bare_jid(authzid, username, self._domain):
            return Failure(SaslFailureCondition.INVALID_AUTHZID, "", username)
        return Success(username, authzid=str(JID.parse(authzid)))

    def _message(self, data: bytes) -> Step:
        # RFC 4616 §2:
        #   message   = [authzid] UTF8NUL authcid UTF8NUL passwd
        #   authcid   = 1*SAFE ; MUST accept up to 255 octets
        #   authzid   = 1*SAFE ; MUST accept up to 255 octets
        #   passwd    = 1*SAFE ; MUST accept up to 255 octets
        #   SAFE      = UTF1 / UTF2 / UTF3 / UTF4  ;; any UTF-8 encoded Unicode character except NUL
        parts = data.split(b"\0")
        if len(parts) != 3:
            return self._fail(_MALFORMED, "expected [authzid] NUL authcid NUL passwd")
        if too_long(parts[2]):
            # Before decoding or preparing anything: PRECIS costs time per character.
            return self._fail(_MALFORMED, TOO_LONG)
        try:
            authzid, authcid, passwd = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            return self._fail(SaslFailureCondition.INCORRECT_ENCODING, "not UTF-8")
        if not authcid or not passwd:
            return self._fail(_MALFORMED, "empty username or password")
        try:
            username = prepare_username(authcid)
        except InvalidJID as exc:
            return self._fail(_MALFORMED, f"invalid username: {exc}")
        self._username = username
        self._authzid = authzid or None
        self._state = _State.WAIT_VERDICT
        return NeedCredentials(Capability.VERIFY_PASSWORD, username, password=passwd)

    def _fail(self, condition: SaslFailureCondition, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition, text, self._username)
