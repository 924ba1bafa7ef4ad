"""The ANONYMOUS mechanism (RFC 4505), server side.

This module owns the single ANONYMOUS message (optional trace information)
and the random localpart the session gets.  Whether an anonymous login is
allowed right now (its rate limit) is not the mechanism's business: it asks
with ``NeedCredentials(ANONYMOUS, localpart)`` and the connection answers from
the virtual host's limiter.  Only an anonymous virtual host's provider offers
the `ANONYMOUS` capability, so selection never offers this mechanism on a host
whose accounts are real.

A client that sends no initial response at all (`<auth mechanism='ANONYMOUS'/>`,
as Strophe.js and converse.js do) is logged in at once, exactly like one that
sent an empty trace: no empty challenge asks for the optional trace (see `start`).

Failure conditions: trace information that is not UTF-8 -> incorrect-encoding
(RFC 6120 §6.5.5); longer than RFC 4505's 255 characters -> malformed-request
(§6.5.8); the host's rate limit reached -> temporary-auth-failure (§6.5.11).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import ClassVar

from chatgate.auth.provider import Capability
from chatgate.randomness import random_bytes
from chatgate.sasl.base import (
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Step,
    Success,
)
from chatgate.vocabulary.errors import SaslFailureCondition

__all__ = ["AnonymousMechanism", "random_localpart"]

#: RFC 4505 §3: `token = 1*255TCHAR` (an email address is shorter still).
MAX_TRACE_CHARS = 255


def random_localpart() -> str:
    """80 random bits as 16 lower-case base32 characters: unguessable, and a valid
    localpart under any PRECIS profile."""
    return base64.b32encode(random_bytes(10)).decode("ascii").lower()


class AnonymousMechanism:
    """ANONYMOUS (RFC 4505): one optional message of trace information, then success
    as a fresh random localpart.  The trace is kept for the log only (`trace`).
    A missing initial response counts as an empty trace (never a challenge)."""

    name: ClassVar[str] = "ANONYMOUS"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.ANONYMOUS})
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
    ) -> None:
        self.trace: str | None = None
        self._started = False
        self._localpart: str | None = None
        self._done = False

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            raise ValueError("start() called twice")
        self._started = True
        # No initial response is taken as an empty trace, with no challenge asking for
        # one: RFC 4505 §2 makes the trace optional, and Strophe.js (hence converse.js)
        # sends `<auth mechanism='ANONYMOUS'/>` and fails on any challenge.  Prosody
        # and ejabberd answer <success/> at once too.
        return self._message(b"" if initial_response is None else initial_response)

    def respond(self, response: bytes) -> Step:
        if not self._started:
            raise ValueError("respond() before start()")
        if self._localpart is None and not self._done:
            return self._message(response)
        if not self._done:
            raise ValueError("respond() while waiting for the rate limit's answer")
        return Failure(
            SaslFailureCondition.MALFORMED_REQUEST, "the authentication exchange is over"
        )

    def resume(self, answer: CredentialAnswer) -> Step:
        if self._localpart is None or self._done:
            raise ValueError("resume() without a pending request")
        self._done = True
        if answer.temporary_failure or not answer.verified:
            return Failure(
                SaslFailureCondition.TEMPORARY_AUTH_FAILURE,
                "too many anonymous logins; try again later",
            )
        return Success(self._localpart)

    def _message(self, data: bytes) -> Step:
        try:
            trace = data.decode("utf-8")
        except UnicodeDecodeError:
            self._done = True
            return Failure(
                SaslFailureCondition.INCORRECT_ENCODING, "trace information is not UTF-8"
            )
        if len(trace) > MAX_TRACE_CHARS:
            self._done = True
            return Failure(
                SaslFailureCondition.MALFORMED_REQUEST,
                f"trace information longer than {MAX_TRACE_CHARS} characters",
            )
        self.trace = trace or None
        self._localpart = random_localpart()
        return NeedCredentials(Capability.ANONYMOUS, self._localpart)
