"""SCRAM server mechanisms: SCRAM-SHA-1 (RFC 5802), SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-512.

This module owns the server side of one SCRAM exchange: parsing and checking
the client's messages, building the server's, and verifying the proof against
stored keys.  It never awaits, never reads the clock and never touches storage:
the stored keys arrive through `resume()` after the mechanism asked for them
with `NeedCredentials`.  The only outside input it reads is `os.urandom` for the
server nonce.  Bytes in, bytes out: base64 of the XML layer is the session's job.

Theory of operation
-------------------
States (`_State`) and what moves between them::

    EXPECT_CLIENT_FIRST --client-first--> WAIT_CREDENTIALS --resume(keys)--> EXPECT_CLIENT_FINAL
          |  start(None): empty challenge, stay                                   |
          |                                                         client-final  |
          +--------------------- any failure ------------------> DONE <-----------+
                                                              (Success or Failure)

* ``start(None)``: the client sent no initial response, so (RFC 6120 §6.4.2)
  the server sends an empty challenge and the client-first message arrives via
  ``respond()``.  ``start(b"")`` is an *empty* initial response ("=" on the wire),
  which is not a valid client-first message.
* client-first -> ``NeedCredentials(SCRAM_SHA_x_KEYS, username)``.
* ``resume(answer)`` -> server-first as a `Challenge`.  An unknown user gets a
  deterministic fake salt (HMAC of the server secret, an installation secret
  stored once in the database, so every process and every restart agree) and
  the iteration count passwords are stored with now (`[auth] scram_iterations`,
  given as `unknown_user_iterations`, see `ScramFactory`), so the server-first
  message looks like a typical account's and is the same every time; the
  exchange fails only at the end with not-authorized, the same failure as a
  wrong password.
* client-final -> `Success` with additional data ``v=ServerSignature`` (RFC 6120
  §6.3.10, "additional data with success"), or `Failure`.
* DONE: any further message is a failure; a mechanism object serves one attempt.

Failure conditions (RFC 6120 §6.5), chosen per RFC 5802 §7 server-error:

* syntax errors, "m=" (reserved-mext), bad "=XX" escapes, a username that fails
  preparation -> malformed-request (§6.5.8 "the data sent violates the syntax
  for the specified SASL mechanism"; RFC 5802 §5.1 "If the preparation of the
  username fails or results in an empty string, the server SHOULD abort the
  authentication exchange");
* bad UTF-8, bad base64 inside c= or p= -> incorrect-encoding (§6.5.5);
* wrong proof, unknown user, nonce mismatch, channel-binding mismatch or a
  downgrade ("y" when -PLUS was offered) -> not-authorized (§6.5.10);
* authzid other than the user's own bare JID -> invalid-authzid (§6.5.6),
  checked only after the proof succeeded (RFC 4422 §3.4.1: authorization follows
  authentication), so an unauthenticated peer learns nothing from it;
* a right proof for credentials the provider holds back (`CredentialAnswer.held`:
  a registration awaiting approval, a locked account) -> the answer's
  `held_condition` (not-authorized, or account-disabled for a locked account) with
  the held text, no guess (`Failure.guess`); a wrong proof for them fails bare, as
  for an unknown user.  The proof is checked against `held_keys`, whose real salt and count
  the server-first message carries (as an account's would);
* the provider could not answer -> temporary-auth-failure (§6.5.11).

Channel binding: a class with ``requires_channel_binding = True`` is a -PLUS
mechanism (RFC 5802 §6); the same code then demands "p=<type>" with a type the
connection has (`ConnectionFacts.channel_bindings`, which holds exactly the types
the stream advertised with XEP-0440) and binds its data into c=.  The non-PLUS
classes accept "n" and "y" only; "y" after the stream offered a -PLUS mechanism
is a downgrade and fails (RFC 5802 §6).

Downgrade protection (XEP-0474 "SSDP", v0.5): when the driver passes the list of
mechanisms this stream `advertised`, the server-first message carries the
optional attribute ``h=`` (RFC 5802 §5.1 allows extensions after the iteration
count): the hash of that list and, when -PLUS was offered, of the XEP-0440
channel-binding types (see `sasl/channel_binding.ssdp_hash`).  The client checks
it, and since server-first is part of AuthMessage, the proof covers it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from typing import ClassVar, TypeVar

from chatgate.auth.credentials import DEFAULT_ITERATIONS, ScramKeys
from chatgate.auth.provider import SCRAM_CAPABILITY, Capability
from chatgate.jid import JID, InvalidJID, is_own_bare_jid, prepare_username
from chatgate.registry import Registry
from chatgate.sasl import b64
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    Mechanism,
    NeedCredentials,
    Step,
    Success,
)
from chatgate.sasl.channel_binding import advertised_types, ssdp_hash
from chatgate.vocabulary.errors import SaslFailureCondition

T = TypeVar("T")

__all__ = [
    "ScramFactory",
    "ScramMechanism",
    "ScramSha1Mechanism",
    "ScramSha1PlusMechanism",
    "ScramSha256Mechanism",
    "ScramSha256PlusMechanism",
    "ScramSha512Mechanism",
    "ScramSha512PlusMechanism",
    "with_unknown_user_iterations",
]

_MALFORMED = SaslFailureCondition.MALFORMED_REQUEST
_NOT_AUTHORIZED = SaslFailureCondition.NOT_AUTHORIZED

#: RFC 5802 §7: saslname = 1*(value-safe-char / "=2C" / "=3D"); value-safe-char is
#: any UTF-8 except NUL, "," and "=".
_SASLNAME = re.compile(r"(?:[^\x00,=]|=2C|=3D)+")
#: printable = %x21-2B / %x2D-7E  ;; Printable ASCII except ","
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
#: cb-name = 1*(ALPHA / DIGIT / "." / "-")
_CB_NAME = re.compile(r"[A-Za-z0-9.-]+")
#: attr-val = ALPHA "=" value; value = 1*value-char (any UTF-8 except NUL and ",")
_EXTENSION = re.compile(r"[A-Za-z]=[^\x00,]+")
#: Server nonce entropy, in bytes (base64 text has no "," so it is "printable").
_SERVER_NONCE_BYTES = 18
#: Length of the fake salt for unknown users: the same as `derive_scram_keys` uses.
_FAKE_SALT_BYTES = 16


class _State(enum.Enum):
    EXPECT_CLIENT_FIRST = "expect-client-first"
    WAIT_CREDENTIALS = "wait-credentials"
    EXPECT_CLIENT_FINAL = "expect-client-final"
    DONE = "done"


class _Reject(Exception):
    """Internal: stop processing a client message with this SASL failure."""

    def __init__(self, condition: SaslFailureCondition, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


_b64 = b64.encode


def _b64decode(text: str, what: str) -> bytes:
    data = b64.decode(text)
    if data is None:
        raise _Reject(SaslFailureCondition.INCORRECT_ENCODING, f"{what} is not base64")
    return data


def _saslname(text: str, what: str) -> str:
    """Decode a saslname (RFC 5802 §5.1): "=2C" is "," and "=3D" is "=".

    "If the server receives a username that contains '=' not followed by either
    '2C' or '3D', then the server MUST fail the authentication."
    """
    if not _SASLNAME.fullmatch(text):
        raise _Reject(_MALFORMED, f"invalid {what}")
    return text.replace("=2C", ",").replace("=3D", "=")


class ScramMechanism:
    """The server side of one SCRAM exchange; subclasses fix the hash (and -PLUS).

    Construct one per attempt: ``ScramSha256Mechanism(facts, server_secret,
    plus_offered)``.  `server_secret` keys the fake salts of unknown users and
    must be stable across restarts.  `plus_offered` says whether the server
    advertised any SCRAM-*-PLUS on this stream, which decides what the "y" flag
    means (RFC 5802 §6).  `advertised` is the mechanism list this stream
    offered, in any order; when given, server-first carries the XEP-0474 hash.
    `unknown_user_iterations` is the iteration count an unknown user is
    answered with: the one new passwords are stored with (`ScramFactory` passes
    `[auth] scram_iterations`).  `nonce` fixes the server nonce, for published
    test vectors only.
    """

    name: ClassVar[str]
    hash_name: ClassVar[str]  # hashlib name
    needs: ClassVar[frozenset[Capability]]
    requires_channel_binding: ClassVar[bool] = False
    requires_peer_certificate: ClassVar[bool] = False
    plaintext: ClassVar[bool] = False

    def __init__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes,
        plus_offered: bool = False,
        *,
        advertised: Sequence[str] | None = None,
        unknown_user_iterations: int = DEFAULT_ITERATIONS,
        nonce: str | None = None,
    ) -> None:
        if not hasattr(self, "hash_name"):
            raise TypeError("use a concrete SCRAM class such as ScramSha256Mechanism")
        if nonce is not None and not _NONCE.fullmatch(nonce):
            raise ValueError("a SCRAM nonce must be printable ASCII without ','")
        self._facts = facts
        self._secret = server_secret
        self._unknown_iterations = unknown_user_iterations
        self._plus_offered = plus_offered
        self._advertised = None if advertised is None else tuple(advertised)
        self._server_nonce = nonce
        self._state = _State.EXPECT_CLIENT_FIRST
        self._started = False
        self._username: str | None = None
        self._authzid: str | None = None
        self._gs2_header = b""
        self._cb_data = b""
        self._client_first_bare = ""
        self._nonce = ""
        self._server_first = ""
        self._keys: ScramKeys | None = None
        #: the text and condition for a right proof of credentials that may not log in yet
        self._held: str | None = None
        self._held_condition = _NOT_AUTHORIZED

    # -- Mechanism protocol --------------------------------------------------

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            raise ValueError("start() called twice")
        self._started = True
        if initial_response is None:
            # RFC 6120 §6.4.2: no initial response, so an empty challenge asks for it.
            return Challenge(b"")
        return self._client_first(initial_response)

    def respond(self, response: bytes) -> Step:
        if not self._started:
            raise ValueError("respond() before start()")
        state = self._state
        if state is _State.EXPECT_CLIENT_FIRST:
            return self._client_first(response)
        if state is _State.EXPECT_CLIENT_FINAL:
            return self._client_final(response)
        if state is _State.WAIT_CREDENTIALS:
            raise ValueError("respond() while waiting for credentials")
        # A replayed or second client-final after the exchange ended.
        return Failure(_MALFORMED, "the authentication exchange is over", self._username)

    def resume(self, answer: CredentialAnswer) -> Step:
        if self._state is not _State.WAIT_CREDENTIALS:
            raise ValueError("resume() without a pending credential request")
        if answer.temporary_failure:
            return self._fail(SaslFailureCondition.TEMPORARY_AUTH_FAILURE, "try again later")
        keys = answer.scram_keys
        if keys is None and answer.held is not None and answer.held_keys is not None:
            # Right credentials that may not log in yet: the proof is checked as for
            # an account, and only a right one hears why (`_verify_client_final`).
            keys, self._held = answer.held_keys, answer.held
            self._held_condition = answer.held_condition
        if keys is not None and keys.hash_name != self.hash_name:
            raise ValueError(f"{self.name} got {keys.hash_name} keys")
        self._keys = keys
        if keys is not None:
            salt, iterations = keys.salt, keys.iterations
        else:
            salt, iterations = self._fake_salt(), self._unknown_iterations
        server_nonce = self._server_nonce or _b64(os.urandom(_SERVER_NONCE_BYTES))
        self._nonce += server_nonce
        # server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
        self._server_first = f"r={self._nonce},s={_b64(salt)},i={iterations}"
        if self._advertised is not None:
            # XEP-0474 §4.1: "The server then adds the optional attribute "h" with
            # the base64 encoded hash ... to its server-first-message."
            cb_types = (
                advertised_types(self._facts.channel_bindings) if self._plus_offered else None
            )
            self._server_first += f",h={ssdp_hash(self.hash_name, self._advertised, cb_types)}"
        self._state = _State.EXPECT_CLIENT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    # -- client-first-message -------------------------------------------------

    def _client_first(self, data: bytes) -> Step:
        try:
            return self._parse_client_first(data)
        except _Reject as reject:
            return self._fail(reject.condition, reject.text)

    def _parse_client_first(self, data: bytes) -> Step:
        text = _utf8(data)
        # client-first-message = gs2-header client-first-message-bare
        # gs2-header = gs2-cbind-flag "," [ authzid ] ","
        flag, comma1, rest = text.partition(",")
        authzid, comma2, bare = rest.partition(",")
        if not comma1 or not comma2:
            raise _Reject(_MALFORMED, "missing GS2 header")
        self._cb_data = self._channel_binding(flag)
        if authzid:
            # authzid = "a=" saslname
            if not authzid.startswith("a="):
                raise _Reject(_MALFORMED, "invalid authzid in GS2 header")
            self._authzid = _saslname(authzid[2:], "authzid")
        header_len = len(flag) + len(authzid) + 2
        self._gs2_header = text[:header_len].encode("utf-8")

        # client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            # RFC 5802 §5.1 m: "its presence in a client or a server message MUST
            # cause authentication failure when the attribute is parsed by the
            # other end."
            raise _Reject(_MALFORMED, "mandatory extensions are not supported")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            raise _Reject(_MALFORMED, "expected n=username,r=nonce")
        username = _saslname(attrs[0][2:], "username")
        nonce = attrs[1][2:]
        if not _NONCE.fullmatch(nonce):
            raise _Reject(_MALFORMED, "invalid client nonce")
        _check_extensions(attrs[2:])
        try:
            self._username = prepare_username(username)
        except InvalidJID as exc:
            raise _Reject(_MALFORMED, f"invalid username: {exc}") from None
        self._client_first_bare = bare
        self._nonce = nonce
        self._state = _State.WAIT_CREDENTIALS
        return NeedCredentials(SCRAM_CAPABILITY[self.hash_name], self._username)

    def _channel_binding(self, flag: str) -> bytes:
        """Check the gs2-cbind-flag (RFC 5802 §6); return the binding data for c=."""
        if flag.startswith("p="):
            cb_name = flag[2:]
            if not _CB_NAME.fullmatch(cb_name):
                raise _Reject(_MALFORMED, "invalid channel-binding type name")
            if not self.requires_channel_binding:
                # RFC 5802 §6: "p" is for the -PLUS variant; a client that binds
                # must select it.
                raise _Reject(_MALFORMED, f"channel binding requested with {self.name}")
            data = self._facts.channel_bindings.get(cb_name)
            if data is None:
                raise _Reject(_MALFORMED, f"unsupported channel-binding type {cb_name}")
            return data
        if flag not in ("n", "y"):
            raise _Reject(_MALFORMED, "invalid GS2 channel-binding flag")
        if self.requires_channel_binding:
            raise _Reject(_MALFORMED, f"{self.name} requires channel binding")
        if flag == "y" and self._plus_offered:
            # RFC 5802 §6: "If the flag is set to "y" and the server supports
            # channel binding, the server MUST fail authentication.  This is
            # because ... there has been a downgrade attack".
            raise _Reject(_NOT_AUTHORIZED, "channel binding downgrade detected")
        return b""

    # -- client-final-message ---------------------------------------------------

    def _client_final(self, data: bytes) -> Step:
        try:
            return self._verify_client_final(data)
        except _Reject as reject:
            return self._fail(reject.condition, reject.text)

    def _verify_client_final(self, data: bytes) -> Step:
        text = _utf8(data)
        # client-final-message = channel-binding "," nonce ["," extensions] "," proof
        without_proof, comma, proof_attr = text.rpartition(",")
        attrs = without_proof.split(",")
        if (
            not comma
            or len(attrs) < 2
            or not attrs[0].startswith("c=")
            or not attrs[1].startswith("r=")
            or not proof_attr.startswith("p=")
        ):
            raise _Reject(_MALFORMED, "expected c=...,r=...,p=...")
        _check_extensions(attrs[2:])
        channel_binding = _b64decode(attrs[0][2:], "channel binding")
        proof = _b64decode(proof_attr[2:], "proof")
        # RFC 5802 §5.1 c: "This REQUIRED attribute specifies the base64-encoded
        # GS2 header and channel binding data."  The header must be the one the
        # client-first message carried, or a downgrade could go unnoticed.
        if not hmac.compare_digest(channel_binding, self._gs2_header + self._cb_data):
            raise _Reject(_NOT_AUTHORIZED, "channel binding does not match")
        # RFC 5802 §5.1 r: the nonce "MUST be the same as the one sent by the
        # server in server-first-message".
        if not hmac.compare_digest(attrs[1][2:].encode("utf-8"), self._nonce.encode("ascii")):
            raise _Reject(_NOT_AUTHORIZED, "nonce does not match")

        # RFC 5802 §3:
        #   AuthMessage     := client-first-message-bare + "," +
        #                      server-first-message + "," +
        #                      client-final-message-without-proof
        #   ClientSignature := HMAC(StoredKey, AuthMessage)
        #   ClientKey       := ClientProof XOR ClientSignature   (server side)
        #   ServerSignature := HMAC(ServerKey, AuthMessage)
        # "The server authenticates the client by computing the ClientSignature,
        # exclusive-ORing that with the ClientProof to recover the ClientKey and
        # verifying the correctness of the ClientKey by applying the hash
        # function and comparing the result to the StoredKey."
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        auth_bytes = auth_message.encode("utf-8")
        keys = self._keys or self._fake_keys()
        signature = hmac.digest(keys.stored_key, auth_bytes, self.hash_name)
        if len(proof) != len(signature):
            raise _Reject(_NOT_AUTHORIZED, "")
        # XOR as one big-integer operation: a generator over the bytes cost 2.5% of
        # the server's time in the login benchmark.
        client_key = (int.from_bytes(proof, "big") ^ int.from_bytes(signature, "big")).to_bytes(
            len(proof), "big"
        )
        stored = hashlib.new(self.hash_name, client_key).digest()
        if not hmac.compare_digest(stored, keys.stored_key) or self._keys is None:
            # Unknown user and wrong password fail identically.  RFC 5802 §7 has an
            # "unknown-user" server-error; we never use it, because it would tell
            # anyone which accounts exist (that is why the fake salt exists).
            raise _Reject(_NOT_AUTHORIZED, "")
        assert self._username is not None
        if self._held is not None:
            # The proof is right, so the client knows the password: it may hear that the
            # account cannot log in yet.  not-authorized, not account-disabled (§6.5.1
            # is for an account that exists and was switched off; a registration
            # awaiting approval has no account yet), with RFC 6120 §6.5's <text/>; no
            # guess, so brute-force protection neither counts nor holds it.  A locked
            # account, which exists, gets account-disabled (`held_condition`).
            self._state = _State.DONE
            return Failure(self._held_condition, self._held, self._username, guess=False)
        authzid = self._authzid
        if authzid is not None and not is_own_bare_jid(authzid, self._username, self._facts.domain):
            # RFC 6120 §6.3.8 / §6.5.6: the only identity we let a user act as is
            # its own bare JID.
            raise _Reject(SaslFailureCondition.INVALID_AUTHZID, "")
        server_signature = hmac.digest(keys.server_key, auth_bytes, self.hash_name)
        self._state = _State.DONE
        return Success(
            self._username,
            additional_data=b"v=" + _b64(server_signature).encode("ascii"),
            authzid=str(JID.parse(authzid)) if authzid is not None else None,
        )

    # -- helpers ------------------------------------------------------------------

    def _fail(self, condition: SaslFailureCondition, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition, text, self._username)

    def _fake_material(self, label: bytes) -> bytes:
        assert self._username is not None
        message = b"\0".join(
            (
                b"chatgate-scram-unknown-user",
                label,
                self.hash_name.encode("ascii"),
                self._facts.domain.encode("utf-8"),
                self._username.encode("utf-8"),
            )
        )
        return hmac.digest(self._secret, message, "sha256")

    def _fake_salt(self) -> bytes:
        """The salt an unknown user gets: stable per (secret, domain, hash, username)."""
        return self._fake_material(b"salt")[:_FAKE_SALT_BYTES]

    def _fake_keys(self) -> ScramKeys:
        """Keys that no proof matches in practice, so verification costs the same."""
        stored = hashlib.new(self.hash_name, self._fake_material(b"stored-key")).digest()
        return ScramKeys(
            self.hash_name, self._fake_salt(), self._unknown_iterations, stored, stored
        )


def _utf8(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(SaslFailureCondition.INCORRECT_ENCODING, "not UTF-8") from None
    if "\x00" in text:
        raise _Reject(_MALFORMED, "NUL in SCRAM message")
    return text


def _check_extensions(attrs: list[str]) -> None:
    # RFC 5802 §5.1: unknown optional extensions are ignored, but must be well formed.
    for attr in attrs:
        if not _EXTENSION.fullmatch(attr):
            raise _Reject(_MALFORMED, "invalid SCRAM attribute")


class ScramSha1Mechanism(ScramMechanism):
    """SCRAM-SHA-1 (RFC 5802)."""

    name = "SCRAM-SHA-1"
    hash_name = "sha1"
    needs = frozenset({Capability.SCRAM_SHA_1_KEYS})


class ScramSha256Mechanism(ScramMechanism):
    """SCRAM-SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"
    hash_name = "sha256"
    needs = frozenset({Capability.SCRAM_SHA_256_KEYS})


class ScramSha512Mechanism(ScramMechanism):
    """SCRAM-SHA-512 (draft-melnikov-scram-sha-512): RFC 5802 with SHA-512."""

    name = "SCRAM-SHA-512"
    hash_name = "sha512"
    needs = frozenset({Capability.SCRAM_SHA_512_KEYS})


class ScramSha1PlusMechanism(ScramMechanism):
    """SCRAM-SHA-1-PLUS (RFC 5802 §6): SCRAM-SHA-1 bound to the TLS channel."""

    name = "SCRAM-SHA-1-PLUS"
    hash_name = "sha1"
    needs = frozenset({Capability.SCRAM_SHA_1_KEYS})
    requires_channel_binding = True


class ScramSha256PlusMechanism(ScramMechanism):
    """SCRAM-SHA-256-PLUS (RFC 7677)."""

    name = "SCRAM-SHA-256-PLUS"
    hash_name = "sha256"
    needs = frozenset({Capability.SCRAM_SHA_256_KEYS})
    requires_channel_binding = True


class ScramSha512PlusMechanism(ScramMechanism):
    """SCRAM-SHA-512-PLUS."""

    name = "SCRAM-SHA-512-PLUS"
    hash_name = "sha512"
    needs = frozenset({Capability.SCRAM_SHA_512_KEYS})
    requires_channel_binding = True


class ScramFactory:
    """A SCRAM mechanism class bound to this installation's settings: what the
    mechanism registry holds once the server has read its configuration.

    It describes the mechanism as its class does (selection reads `name`,
    `needs` and the flags without building anything) and builds each attempt's
    mechanism with `unknown_user_iterations`, so an unknown user is answered
    with the iteration count a password set now gets, not a fixed 4096.
    """

    def __init__(self, mechanism: type[ScramMechanism], unknown_user_iterations: int) -> None:
        if unknown_user_iterations < 1:
            raise ValueError("the iteration count must be positive")
        self.mechanism = mechanism
        self.unknown_user_iterations = unknown_user_iterations
        self.name = mechanism.name
        self.needs = mechanism.needs
        self.requires_channel_binding = mechanism.requires_channel_binding
        self.requires_peer_certificate = mechanism.requires_peer_certificate
        self.plaintext = mechanism.plaintext

    def __call__(
        self,
        facts: ConnectionFacts,
        server_secret: bytes,
        plus_offered: bool = False,
        *,
        advertised: Sequence[str] | None = None,
    ) -> Mechanism:
        return self.mechanism(
            facts,
            server_secret,
            plus_offered,
            advertised=advertised,
            unknown_user_iterations=self.unknown_user_iterations,
        )


def with_unknown_user_iterations(registry: Registry[T], iterations: int) -> Registry[T]:
    """A copy of the mechanism `registry` in which every SCRAM class is a
    `ScramFactory` answering unknown users with `iterations` (the configured
    `[auth] scram_iterations`); other entries are kept as they are."""
    bound: Registry[T] = Registry(registry.kind)
    for name in registry.names():
        factory = registry.get(name)
        if isinstance(factory, type) and issubclass(factory, ScramMechanism):
            factory = ScramFactory(factory, iterations)  # type: ignore[assignment]
        elif isinstance(factory, ScramFactory):
            factory = ScramFactory(factory.mechanism, iterations)  # type: ignore[assignment]
        bound.register(name, factory)
    return bound
