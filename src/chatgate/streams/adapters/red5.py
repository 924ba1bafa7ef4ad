"""Red5 Pro's round-trip authentication (``RoundTripAuthValidator``): the
requests it sends and the answers it accepts (``streaming-contract.md``, "Red5
Pro"; seed ``001_…``).

Configuration (the webapp's ``red5-web.properties``): the validator's
protocol, host and port name chatgate's HTTP listener, and its two endpoint
properties are paths from that server's root (docs/streaming.md has the block)::

    server.validateCredentialsEndPoint=/hooks/red5/validateCredentials
    server.invalidateCredentialsEndPoint=/hooks/red5/invalidateCredentials

In ``chatgate.toml``, ``[streams] red5_application`` and
``red5_client_token_required`` set the adapter's options below.

Request: ``POST`` JSON ``{"username", "password", "token", "type",
"streamID"}``; ``type`` is ``publisher`` (PUBLISH) or ``subscriber`` (PLAY);
invalidate reports the end (PUBLISH_DONE, PLAY_DONE).  ``streamID`` is the name
within the webapp: the stream is ``<application>/<streamID>`` with the
adapter's configured application (``live`` by default), validated.  Red5 sends
neither the client's address nor a client id: both are None, so the authority
decides but does not track the session.

Credentials (seed ``001_…``: anonymous, dummy and session access):

- a non-empty ``token`` is a TOKEN (the username, if any, is kept for the log;
  the password is not read: the seed's session access sends dummy values);
- otherwise ``username`` empty or one of the configured dummy names
  (``anonymous``) is NONE, whatever the password;
- otherwise ``username`` + ``password`` is a PASSWORD, a username without a
  password INVALID.

With ``client_token_required``, a subscriber without a token is refused by the
adapter itself (Red5's ``clientTokenRequired``).

Answers: validate ``200 {"result": true}`` (with ``"url"`` when the verdict
carries a signed URL) or ``200 {"result": false}`` for any refusal (never an
HTTP error); invalidate ``200 {"result": true}``; malformed JSON, a body that
is not an object, a field of the wrong type, an unknown ``type`` or an empty
``streamID`` ``400 {"error": ...}``; unknown endpoint ``404``.  Red5 cannot
rename a stream nor take a key: those verdicts are ``200 {"result": false}``
(fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

from chatgate.streams.adapters.base import (
    MAX_SECRET_LENGTH,
    MAX_USERNAME_LENGTH,
    CredentialKind,
    Credentials,
    HookAction,
    HookRequest,
    HookResponse,
    Question,
    Verdict,
    VerdictKind,
)
from chatgate.streams.adapters.jsonbody import Malformed, optional_text, read_object
from chatgate.streams.policy import InvalidStreamName, join_stream_name

__all__ = ["Red5Adapter"]

_TYPES: Final = {
    "validateCredentials": {"publisher": HookAction.PUBLISH, "subscriber": HookAction.PLAY},
    "invalidateCredentials": {
        "publisher": HookAction.PUBLISH_DONE,
        "subscriber": HookAction.PLAY_DONE,
    },
}
_JSON: Final = (("Content-Type", "application/json"),)


def _json(status: int, value: object) -> HookResponse:
    return HookResponse(status, _JSON, json.dumps(value).encode())


_TRUE: Final = _json(200, {"result": True})
_FALSE: Final = _json(200, {"result": False})
_NOT_FOUND: Final = _json(404, {"error": "no such Red5 hook"})


class Red5Adapter:
    """Red5 Pro (module docstring)."""

    name: str = "red5"
    endpoints: frozenset[str] = frozenset(_TYPES)

    def __init__(
        self,
        node: str = "red5",
        *,
        application: str = "live",
        client_token_required: bool = False,
        dummy_usernames: Iterable[str] = ("anonymous",),
    ) -> None:
        self.node = node
        self.application = application
        self.client_token_required = client_token_required
        self.dummy_usernames = frozenset(dummy_usernames)

    def _credentials(self, username: str, password: str, token: str) -> Credentials:
        if len(username) > MAX_USERNAME_LENGTH:
            return Credentials.invalid(f"username longer than {MAX_USERNAME_LENGTH} characters")
        if len(token) > MAX_SECRET_LENGTH or len(password) > MAX_SECRET_LENGTH:
            return Credentials.invalid(f"secret longer than {MAX_SECRET_LENGTH} characters")
        dummy = not username or username in self.dummy_usernames
        if token:
            return Credentials.token(token, None if dummy else username)
        if dummy:
            return Credentials.none()
        if not password:
            return Credentials.invalid("username without password", username)
        return Credentials.password(username, password)

    def parse(self, request: HookRequest) -> Question | Verdict:
        types = _TYPES.get(request.path)
        if types is None:
            return Verdict.malformed("no such Red5 hook")
        if request.method != "POST":
            return Verdict.malformed("method not allowed")
        try:
            obj = read_object(request.body)
            kind = optional_text(obj, "type")
            action = types.get(kind)
            if action is None:
                raise Malformed("type is not publisher or subscriber")
            name = optional_text(obj, "streamID")
            if not name:
                raise Malformed("empty streamID")
            credentials = self._credentials(
                optional_text(obj, "username"),
                optional_text(obj, "password"),
                optional_text(obj, "token"),
            )
        except Malformed as exc:
            return Verdict.malformed(str(exc))
        try:
            stream = join_stream_name(self.application, name)
        except InvalidStreamName as exc:
            return Verdict.deny(str(exc))
        if (
            self.client_token_required
            and action is HookAction.PLAY
            and credentials.kind is not CredentialKind.TOKEN
        ):
            return Verdict.deny("token required")
        return Question(
            self.name,
            action,
            stream,
            credentials,
            node=self.node,
            app=self.application,
            name=name,
            detail=kind,
        )

    def respond(
        self, request: HookRequest, question: Question | None, verdict: Verdict
    ) -> HookResponse:
        if request.path not in _TYPES:
            return _NOT_FOUND
        kind = verdict.kind
        if kind is VerdictKind.MALFORMED:
            return _json(400, {"error": verdict.reason or "malformed request"})
        if request.path == "invalidateCredentials":
            return _TRUE
        if kind is VerdictKind.ALLOW and verdict.url is not None:
            return _json(200, {"result": True, "url": verdict.url})
        if kind is VerdictKind.ALLOW:
            return _TRUE
        return _FALSE
