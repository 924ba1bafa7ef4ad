"""Wowza's third-party token provider (seed ``000_…``): ``clientid=TEA(username)``
in, ``{"publisherToken": TEA(stream key)}`` out (``streaming-contract.md``,
"Wowza").

Configuration: the Wowza module's ``serverTokenValidatorURL`` is
``http://127.0.0.1:5280/hooks/wowza/tea-token`` and its ``sharedSecret`` the
adapter's ``shared_secret`` (at least 16 characters; only the first 16 are the
key, as in Wowza's ``TEA`` class, `chatgate.streams.xxtea`).

Request: ``POST`` form ``clientid=<hex>``.  The decrypted username is the
question's ``name``; the action is STREAM_KEY (no stream: Wowza asks for the
user's password and compares it itself).  The authority answers REVEAL with the
user's stream key (kept reversibly for this adapter), never an account's XMPP
password, which is stored as SCRAM keys only.

Answers: REVEAL ``200 {"publisherToken":"<TEA(key)>"}``; anything else
``200 {"error":"Invalid Client"}`` (an unknown user, a clientid that does not
decode under the secret, a key that has no latin-1 form); a missing, empty or
repeated clientid, another method or an oversized body ``400`` with the same
error body; unknown endpoint ``404``.  Never 5xx.
"""

from __future__ import annotations

from typing import Final

from chatgate.streams import xxtea
from chatgate.streams.adapters.base import (
    MAX_USERNAME_LENGTH,
    Credentials,
    HookAction,
    HookRequest,
    HookResponse,
    Question,
    Verdict,
    VerdictKind,
)
from chatgate.streams.adapters.form import read_form, text

__all__ = ["WowzaTokenAdapter"]

MAX_BODY: Final = 16384
_JSON: Final = (("Content-Type", "application/json"),)
_INVALID_BODY: Final = b'{"error":"Invalid Client"}'
_INVALID: Final = HookResponse(200, _JSON, _INVALID_BODY)
_BAD_REQUEST: Final = HookResponse(400, _JSON, _INVALID_BODY)
_NOT_FOUND: Final = HookResponse(404, _JSON, b'{"error":"no such Wowza hook"}')


class WowzaTokenAdapter:
    """Wowza's token provider (module docstring); `ValueError` for a shared
    secret shorter than 16 characters or outside latin-1."""

    name: str = "wowza"
    endpoints: frozenset[str] = frozenset({"tea-token"})

    def __init__(self, node: str = "wowza", *, shared_secret: str) -> None:
        xxtea.encrypt("", shared_secret)  # raises ValueError for an unusable secret
        self.node = node
        self._secret = shared_secret

    def __repr__(self) -> str:
        return f"WowzaTokenAdapter(node={self.node!r}, shared_secret=<hidden>)"

    def parse(self, request: HookRequest) -> Question | Verdict:
        if request.path != "tea-token":
            return Verdict.malformed("no such Wowza hook")
        if request.method != "POST" or len(request.body) > MAX_BODY:
            return Verdict.malformed("not a clientid form")
        first, repeated = read_form(request.body)
        raw = first.get(b"clientid")
        if not raw or b"clientid" in repeated:
            return Verdict.malformed("missing, empty or repeated clientid")
        client = text(raw)
        username = None if client is None else xxtea.decrypt(client, self._secret)
        if (
            not username
            or len(username) > MAX_USERNAME_LENGTH
            or not username.isprintable()
            or username != username.strip()
        ):
            return Verdict.deny("invalid client")
        return Question(
            self.name,
            HookAction.STREAM_KEY,
            None,
            Credentials.none(),
            node=self.node,
            name=username,
        )

    def respond(
        self, request: HookRequest, question: Question | None, verdict: Verdict
    ) -> HookResponse:
        if request.path != "tea-token":
            return _NOT_FOUND
        if verdict.kind is VerdictKind.MALFORMED:
            return _BAD_REQUEST
        if verdict.kind is VerdictKind.REVEAL and verdict.secret:
            try:
                token = xxtea.encrypt(verdict.secret, self._secret)
            except ValueError:
                return _INVALID
            # lowercase hex: nothing to escape, the seed's exact shape
            return HookResponse(200, _JSON, b'{"publisherToken":"%s"}' % token.encode("ascii"))
        return _INVALID
