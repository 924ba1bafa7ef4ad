"""The EXTERNAL mechanism (RFC 4422 Appendix A) with TLS client certificates (XEP-0178).

This module owns turning a verified client certificate and an optional
authorization identity into a SASL result.  It never awaits, never reads the
clock and never touches storage or TLS: the TLS layer verified the certificate
(trust store, self-signed policy, revocation) before putting it into
`ConnectionFacts.peer_certificate_der`, and whether the account exists is asked
with ``NeedCredentials(CERT_IDENTITY, username)``.

Flow: ``start(None)`` -> empty challenge (RFC 6120 §6.4.2), then the message
(an authzid, or empty) arrives in ``respond()``; or ``start(message)``
directly.  Then ``NeedCredentials`` -> ``resume(answer)`` -> `Success` or
`Failure`.  One object serves one attempt.

Identity (XEP-0178 §3): the bare JIDs of this domain that the certificate
names, from the configured sources (`auth/certs.certificate_jids`).

* one JID and no authzid -> that JID;
* an authzid -> it must be one of the certificate's JIDs, else invalid-authzid
  (RFC 6120 §6.5.6 "the initiating entity does not have permissions to
  authorize that ID");
* several JIDs and no authzid -> invalid-authzid: the client has to say which
  one it means;
* no JID of this domain -> not-authorized (§6.5.10).

The account must exist (not-authorized otherwise), unless `auto_provision` is
set, in which case the certificate's identity is admitted as it is.  An account
the provider holds back (`CredentialAnswer.held`: locked) fails with the answer's
`held_condition` (account-disabled) and text, no guess: the certificate proved
who the client is.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from chatgate.auth.certs import certificate_jids
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

__all__ = ["ExternalFactory", "ExternalMechanism"]

_NOT_AUTHORIZED = SaslFailureCondition.NOT_AUTHORIZED
_INVALID_AUTHZID = SaslFailureCondition.INVALID_AUTHZID


class _State(enum.Enum):
    EXPECT_MESSAGE = "expect-message"
    WAIT_ACCOUNT = "wait-account"
    DONE = "done"


class ExternalMechanism:
    """EXTERNAL over a TLS client certificate; offered only when the connection has one."""

    name: ClassVar[str] = "EXTERNAL"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.CERT_IDENTITY})
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = True
    plaintext: ClassVar[bool] = False

    def __init__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes = b"",
        plus_offered: bool = False,
        *,
        advertised: Sequence[str] | None = None,
        identity_sources: Sequence[str] = ("xmpp-addr",),
        auto_provision: bool = False,
    ) -> None:
        self._facts = facts
        self._sources = tuple(identity_sources)
        self._auto_provision = auto_provision
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
        if self._state is _State.WAIT_ACCOUNT:
            raise ValueError("respond() while waiting for credentials")
        return Failure(
            SaslFailureCondition.MALFORMED_REQUEST,
            "the authentication exchange is over",
            self._username,
        )

    def resume(self, answer: CredentialAnswer) -> Step:
        if self._state is not _State.WAIT_ACCOUNT:
            raise ValueError("resume() without a pending credential request")
        self._state = _State.DONE
        username = self._username
        assert username is not None
        if answer.temporary_failure:
            return Failure(SaslFailureCondition.TEMPORARY_AUTH_FAILURE, "try again later", username)
        if answer.held is not None:
            return Failure(answer.held_condition, answer.held, username, guess=False)
        if not answer.user_exists and not self._auto_provision:
            # XEP-0178 §3: "If the user cannot be associated with an account, the
            # server MUST return a <not-authorized/> error".
            return Failure(_NOT_AUTHORIZED, "no account for the certificate's JID", username)
        return Success(username, authzid=self._authzid)

    def _message(self, data: bytes) -> Step:
        # RFC 4422 Appendix A.1: message = [ authz-id ] ; UTF-8, no NUL.
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(SaslFailureCondition.INCORRECT_ENCODING, "not UTF-8")
        if "\x00" in text:
            return self._fail(SaslFailureCondition.MALFORMED_REQUEST, "NUL in authzid")
        der = self._facts.peer_certificate_der
        if der is None:
            return self._fail(_NOT_AUTHORIZED, "no trusted client certificate")
        try:
            jids = certificate_jids(der, self._facts.domain, self._sources)
        except ValueError:
            return self._fail(_NOT_AUTHORIZED, "the client certificate cannot be read")
        if not jids:
            return self._fail(_NOT_AUTHORIZED, "the certificate names no JID of this server")
        if text:
            try:
                wanted = JID.parse(text)
            except InvalidJID:
                return self._fail(_INVALID_AUTHZID, "the authzid is not a JID")
            chosen = str(wanted)
            if wanted.resource or chosen not in jids:
                return self._fail(_INVALID_AUTHZID, "the certificate does not name the authzid")
            self._authzid = chosen
        elif len(jids) == 1:
            chosen = jids[0]
        else:
            return self._fail(
                _INVALID_AUTHZID, "the certificate names several JIDs: choose one as authzid"
            )
        self._username = JID.parse(chosen).local
        self._state = _State.WAIT_ACCOUNT
        return NeedCredentials(Capability.CERT_IDENTITY, self._username)

    def _fail(self, condition: SaslFailureCondition, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition, text, self._username)


@dataclass(frozen=True, slots=True)
class ExternalFactory:
    """EXTERNAL with the operator's identity sources and provisioning choice.

    The registry holds this instead of the bare class when configuration is
    known; it has the same static description and builds one mechanism per
    attempt, like any `MechanismFactory`.
    """

    identity_sources: tuple[str, ...] = ("xmpp-addr",)
    auto_provision: bool = False

    name: ClassVar[str] = ExternalMechanism.name
    needs: ClassVar[frozenset[Capability]] = ExternalMechanism.needs
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = True
    plaintext: ClassVar[bool] = False

    def __call__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes,
        plus_offered: bool,
        *,
        advertised: Sequence[str] | None = None,
    ) -> ExternalMechanism:
        return ExternalMechanism(
            facts,
            server_secret,
            plus_offered,
            identity_sources=self.identity_sources,
            auto_provision=self.auto_provision,
        )
