"""MediaMTX's HTTP authentication (``authMethod: http``): the request it sends
and the answers it acts on (``streaming-contract.md``, "MediaMTX").

Configuration::

    authMethod: http
    authHTTPAddress: http://127.0.0.1:5280/hooks/mediamtx/auth

Request: ``POST`` JSON ``{"user", "password", "token", "ip", "action", "path",
"protocol", "id", "query"}`` (newer builds add ``"userAgent"``; ``id`` may be
null).  ``action`` is ``publish``, ``read``, ``playback`` (asked as PLAY, with
``playback`` in the detail), or ``api``, ``metrics``, ``pprof`` (asked as
ADMIN, without a stream).  The stream is MediaMTX's ``path`` as it is
(``live/alice``, ``cam1``): it must be a valid stream name or it is denied.

Credentials: MediaMTX's own fields first: ``user`` + ``password`` (what the
client put in the URL, RTSP auth, HTTP Basic or, for RTMP, ``?user=&pass=``) or
``token`` (a bearer token).  Only when all three are empty is the client's
``query`` read with the keys of `form` (``?token=...``, ``?key=...``,
``?username=&password=``).  A ``user`` without a ``password`` (or the reverse),
or a ``password`` with a ``token``, is an INVALID credential.

Answers: allow ``200``; deny ``403``, but ``401`` when the client sent no
credential at all (so that RTSP clients retry with credentials, and browsers
ask for them over HLS and WebRTC); unauthenticated ``401``; malformed ``400``;
unknown endpoint ``404``.  MediaMTX cannot rename a stream nor take a key: such
verdicts are our own error, ``500`` (a denial for MediaMTX).
"""

from __future__ import annotations

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
    valid_client_address,
)
from chatgate.streams.adapters.form import combine, credentials_from_form, read_form
from chatgate.streams.adapters.jsonbody import Malformed, client_id, optional_text, read_object
from chatgate.streams.policy import InvalidStreamName, check_stream_name

__all__ = ["MediaMtxAdapter"]

_ACTIONS: Final = {
    "publish": HookAction.PUBLISH,
    "read": HookAction.PLAY,
    "playback": HookAction.PLAY,
    "api": HookAction.ADMIN,
    "metrics": HookAction.ADMIN,
    "pprof": HookAction.ADMIN,
}
_TEXT: Final = (("Content-Type", "text/plain; charset=utf-8"),)


def _text_response(status: int, message: str) -> HookResponse:
    return HookResponse(status, _TEXT, (message + "\n").encode("utf-8"))


_OK: Final = HookResponse(200, _TEXT, b"")
_NOT_FOUND: Final = _text_response(404, "no such MediaMTX hook")
_INTERNAL: Final = _text_response(500, "internal error")


def _credentials(user: str, password: str, token: str, query: str) -> Credentials:
    if not (user or password or token):
        return credentials_from_form(read_form(query.encode("utf-8", "surrogatepass")))
    if len(user) > MAX_USERNAME_LENGTH:
        return Credentials.invalid(f"username longer than {MAX_USERNAME_LENGTH} characters")
    if len(password) > MAX_SECRET_LENGTH or len(token) > MAX_SECRET_LENGTH:
        return Credentials.invalid(f"secret longer than {MAX_SECRET_LENGTH} characters")
    return combine(user or None, password or None, token or None, None)


class MediaMtxAdapter:
    """MediaMTX (module docstring)."""

    name: str = "mediamtx"
    endpoints: frozenset[str] = frozenset({"auth"})

    def __init__(self, node: str = "mediamtx") -> None:
        self.node = node

    def parse(self, request: HookRequest) -> Question | Verdict:
        if request.path != "auth":
            return Verdict.malformed("no such MediaMTX hook")
        if request.method != "POST":
            return Verdict.malformed("method not allowed")
        try:
            obj = read_object(request.body)
            word = optional_text(obj, "action")
            action = _ACTIONS.get(word)
            if action is None:
                raise Malformed("unknown action")
            address = optional_text(obj, "ip")
            if not valid_client_address(address):
                raise Malformed("missing or invalid ip")
            path = optional_text(obj, "path")
            protocol = optional_text(obj, "protocol")
            credentials = _credentials(
                optional_text(obj, "user"),
                optional_text(obj, "password"),
                optional_text(obj, "token"),
                optional_text(obj, "query"),
            )
            session = client_id(obj, "id")
        except Malformed as exc:
            return Verdict.malformed(str(exc))
        stream: str | None = None
        if action is not HookAction.ADMIN:
            try:
                stream = check_stream_name(path)
            except InvalidStreamName as exc:
                return Verdict.deny(str(exc))
        detail = f"{word} via {protocol}" if protocol.isprintable() and protocol else word
        if session is not None:
            detail = f"{detail} (session {session})"
        return Question(
            self.name,
            action,
            stream,
            credentials,
            client_address=address,
            # MediaMTX sends no "done": a session recorded in the live registry would
            # never end.  It keeps one publisher per path itself; its id is logged.
            client_id=None,
            node=self.node,
            name=path if stream is not None else None,
            detail=detail[:80],
        )

    def respond(
        self, request: HookRequest, question: Question | None, verdict: Verdict
    ) -> HookResponse:
        if request.path != "auth":
            return _NOT_FOUND
        kind = verdict.kind
        if kind is VerdictKind.ALLOW:
            return _OK
        if kind is VerdictKind.MALFORMED:
            return _text_response(400, verdict.reason or "malformed request")
        if kind is VerdictKind.UNAUTHENTICATED or (
            kind is VerdictKind.DENY
            and question is not None
            and question.credentials.kind is CredentialKind.NONE
        ):
            return _text_response(401, verdict.reason or "credentials required")
        if kind is VerdictKind.DENY:
            return _text_response(403, verdict.reason or "denied")
        return _INTERNAL
