"""The Mechanism protocol and the steps a mechanism returns.

A mechanism is a sans-I/O core: it never awaits, never reads the clock and
never touches storage.  When it needs stored credentials it returns
`NeedCredentials`; `sasl/driver.py` asks the provider and calls
`resume(answer)`.  One mechanism object serves exactly one authentication
attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from chatgate.auth.credentials import ScramKeys
from chatgate.auth.provider import Capability
from chatgate.vocabulary.errors import SaslFailureCondition

# Re-exported: mechanisms (built-in and plugins) are handed a connection's facts.
from chatgate.vocabulary.facts import ConnectionFacts as ConnectionFacts


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    username: str  # authenticated localpart (PRECIS-enforced)
    additional_data: bytes | None = None
    authzid: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    condition: SaslFailureCondition
    text: str = ""
    #: the username the peer claimed, if any, for throttling and logs (never sent back)
    username: str | None = None
    #: False for a failure that is no credential guess: the credentials were right but
    #: the account may not log in yet (`CredentialAnswer.held`).  Brute-force
    #: protection neither counts nor holds it (a guess is what it slows down).
    guess: bool = True


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Ask the driver for a credential; it calls `resume()` with the answer."""

    capability: Capability
    username: str
    password: str | None = None  # for VERIFY_PASSWORD


@dataclass(frozen=True, slots=True)
class CredentialAnswer:
    """The driver's answer: keys (SCRAM_*_KEYS), a verdict (VERIFY_PASSWORD), unknown
    user, or credentials held back (`held`)."""

    scram_keys: ScramKeys | None = None
    verified: bool = False
    user_exists: bool = False
    #: the provider could not answer (it raised); the mechanism fails with
    #: temporary-auth-failure (RFC 6120 §6.5.11) instead of treating it as "no"
    temporary_failure: bool = False
    #: DIGEST-MD5's stored H(user:realm:password) (RFC 2831), for DIGEST_MD5_HA1
    digest_md5_ha1: bytes | None = None
    #: The name has no account but credentials that may not log in yet (a registration
    #: awaiting an administrator's approval): the text for a client that proves them.
    #: For VERIFY_PASSWORD it is set only when the password was right; for SCRAM_*_KEYS
    #: it comes with `held_keys`, the keys to check the proof against.  `scram_keys`
    #: and `verified` stay empty, so a mechanism that knows nothing of `held` fails
    #: exactly as for an unknown user (never logs anyone in); one that knows answers a
    #: right proof with this text (`Failure.guess` False) and a wrong one as always.
    #: For CERT_IDENTITY (the certificate proved the identity) it comes with
    #: `user_exists` True, so that no auto-provisioning replaces the answer: a
    #: mechanism answering CERT_IDENTITY must check `held` first (EXTERNAL does).
    held: str | None = None
    held_keys: ScramKeys | None = None
    #: the condition for the failure a right proof of held credentials gets:
    #: not-authorized for a registration awaiting approval (no account yet),
    #: account-disabled for a locked account (RFC 6120 §6.5.1)
    held_condition: SaslFailureCondition = SaslFailureCondition.NOT_AUTHORIZED


Step = Challenge | Success | Failure | NeedCredentials


class Mechanism(Protocol):
    """One SASL mechanism; `name` is the wire name, e.g. ``"SCRAM-SHA-256"``."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[Capability]]
    #: True for -PLUS mechanisms, offered only when the connection has a channel binding
    requires_channel_binding: ClassVar[bool]
    #: True for EXTERNAL, offered only when the client presented a verified certificate
    requires_peer_certificate: ClassVar[bool]
    #: True when the mechanism sends the password in the clear (PLAIN): TLS first
    plaintext: ClassVar[bool]

    # Optional: `verdict_disclosed` (bool attribute or property), True once a challenge
    # has told the client its credentials were refused (OAUTHBEARER's error result,
    # RFC 7628 §3.2.2).  However the exchange then ends (an <abort/>, a response that
    # is not base64), the negotiation counts it as a failed guess for the claimed
    # user; without it, a client could guess forever without ever being counted.

    def start(self, initial_response: bytes | None) -> Step: ...

    def respond(self, response: bytes) -> Step: ...

    def resume(self, answer: CredentialAnswer) -> Step: ...
