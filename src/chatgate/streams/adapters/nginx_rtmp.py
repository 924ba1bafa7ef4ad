"""nginx-rtmp's ``on_*`` notifications: the exact requests it sends and the
answers it acts on (``streaming-contract.md``, "nginx-rtmp").

Endpoints, one per directive (point each directive at its own URL)::

    on_connect        http://127.0.0.1:5280/hooks/nginx-rtmp/connect
    on_publish        http://127.0.0.1:5280/hooks/nginx-rtmp/publish
    on_play           http://127.0.0.1:5280/hooks/nginx-rtmp/play
    on_publish_done   http://127.0.0.1:5280/hooks/nginx-rtmp/publish_done
    on_play_done      http://127.0.0.1:5280/hooks/nginx-rtmp/play_done
    on_update         http://127.0.0.1:5280/hooks/nginx-rtmp/update

(not ``on_done``: its ``call=done`` does not say whether a publisher or a
player left; ``done`` is accepted on the two ``*_done`` endpoints, which say it.)

Request: ``POST`` with the fields form-encoded in the body, or ``GET`` with them
in the query string (``notify_method get``); HTTP/1.0, ``Connection: Close``.
nginx writes its own fields first, then appends the client's query string
verbatim, so **the first occurrence of every field is nginx's** and a client's
``&name=other``, ``&call=play`` or ``&app=x`` is a later occurrence, never read.
Of nginx's fields only ``app``, ``call``, ``addr``, ``name`` and ``clientid``
are read (``tcurl`` and the others are never decoded: ``tcurl`` may hold
credentials given on the application part).  ``call`` must be one the endpoint
receives (``publish`` on ``/publish``; ``publish_done`` or ``done`` on
``/publish_done``; ``update_publish`` or ``update_play`` on ``/update``).

Credentials: the client's query string, keys as `form` says:
``rtmp://host/live/alice?username=alice&password=s3cret``,
``rtmp://host/live/alice?token=1AQ...`` or ``rtmp://host/live/alice?key=8f3k...``.
nginx keeps at most 255 bytes of name, ``?`` and arguments and cuts the rest
without a word: a cut password or token simply fails.

Answers:

====================================  =============================================
verdict                               response
====================================  =============================================
allow                                 ``200``, empty body
rename (publish, play)                ``302`` with ``Location: NAME`` (the name in
                                      the same application; nginx then publishes
                                      or plays NAME)
deny, unauthenticated                 ``403``, the reason as text
malformed request                     ``400``, the reason as text
unknown endpoint                      ``404``
any verdict on ``*_done``             ``200`` (nginx does not wait for it)
====================================  =============================================

Never 3xx without ``Location`` (nginx takes it as an allow) and never a relay
``Location: rtmp://...``.  A rename on ``/update`` is answered ``200``: the
stream keeps the name it has.  A rename out of the application, to a name that
is not ASCII (it goes into a header) or any REVEAL is our own error: ``500``,
which nginx treats as a denial.  nginx reads an answer until the connection
closes: it sends HTTP/1.0 without keep-alive, so the route closes after each
answer; a client asking for keep-alive (an HTTP/1.1 load generator) keeps it.
"""

from __future__ import annotations

import re
from typing import Final

from chatgate.streams.adapters.base import (
    HookAction,
    HookRequest,
    HookResponse,
    Question,
    Verdict,
    VerdictKind,
    valid_client_address,
)
from chatgate.streams.adapters.form import credentials_from_form, read_form, text
from chatgate.streams.policy import InvalidStreamName, check_stream_name, join_stream_name

__all__ = ["MAX_BODY", "NginxRtmpAdapter"]

MAX_BODY: Final = 8192
"""Largest notification read, in bytes (nginx sends a few hundred)."""

_CALLS: Final[dict[str, dict[bytes, HookAction]]] = {
    "connect": {b"connect": HookAction.CONNECT},
    "publish": {b"publish": HookAction.PUBLISH},
    "play": {b"play": HookAction.PLAY},
    "publish_done": {b"publish_done": HookAction.PUBLISH_DONE, b"done": HookAction.PUBLISH_DONE},
    "play_done": {b"play_done": HookAction.PLAY_DONE, b"done": HookAction.PLAY_DONE},
    "update": {
        b"update_publish": HookAction.UPDATE_PUBLISH,
        b"update_play": HookAction.UPDATE_PLAY,
    },
}
_DONE_ENDPOINTS: Final = frozenset({"publish_done", "play_done"})
_CLIENT_ID: Final = re.compile(rb"[0-9]{1,20}")
_TEXT: Final = (("Content-Type", "text/plain; charset=utf-8"),)


def _text_response(status: int, message: str) -> HookResponse:
    # after a request we could not read (400, 404) the connection is not trusted on
    return HookResponse(status, _TEXT, (message + "\n").encode("utf-8"), close=status in (400, 404))


_OK: Final = HookResponse(200, _TEXT, b"")
_NOT_FOUND: Final = _text_response(404, "no such nginx-rtmp hook")
_INTERNAL: Final = _text_response(500, "internal error")


class NginxRtmpAdapter:
    """nginx-rtmp (module docstring).  ``node`` names this nginx in the live
    registry: give each nginx its own adapter object and node when several call
    the same chatgate."""

    name: str = "nginx-rtmp"
    endpoints: frozenset[str] = frozenset(_CALLS)

    def __init__(self, node: str = "nginx-rtmp") -> None:
        self.node = node

    def parse(self, request: HookRequest) -> Question | Verdict:
        calls = _CALLS.get(request.path)
        if calls is None:
            return Verdict.malformed("no such nginx-rtmp hook")
        if request.method == "POST":
            data = request.body
        elif request.method == "GET":
            data = request.query
        else:
            return Verdict.malformed("method not allowed")
        if len(data) > MAX_BODY:
            return Verdict.malformed("notification too large")
        form = read_form(data)
        first = form[0]
        action = calls.get(first.get(b"call", b""))
        if action is None:
            return Verdict.malformed(f"call is not one /{request.path} receives")
        address = text(first.get(b"addr"))
        if address is None or not valid_client_address(address):
            return Verdict.malformed("missing or invalid addr")
        if b"app" not in first:
            return Verdict.malformed("missing app")
        app = text(first[b"app"])
        if app is None:
            return Verdict.deny("invalid stream name: application is not UTF-8")
        credentials = credentials_from_form(form)
        if action is HookAction.CONNECT:
            try:
                check_stream_name(app)
            except InvalidStreamName as exc:
                return Verdict.deny(f"invalid application: {exc}")
            return Question(
                self.name,
                action,
                None,
                credentials,
                client_address=address,
                node=self.node,
                app=app,
            )
        client_id = first.get(b"clientid")
        if client_id is None or _CLIENT_ID.fullmatch(client_id) is None:
            return Verdict.malformed("missing or invalid clientid")
        name = text(first.get(b"name"))
        if name is None:
            if b"name" not in first:
                return Verdict.malformed("missing name")
            return Verdict.deny("invalid stream name: not UTF-8")
        try:
            stream = join_stream_name(app, name)
        except InvalidStreamName as exc:
            return Verdict.deny(str(exc))
        return Question(
            self.name,
            action,
            stream,
            credentials,
            client_address=address,
            client_id=client_id.decode("ascii"),
            node=self.node,
            app=app,
            name=name,
        )

    def respond(
        self, request: HookRequest, question: Question | None, verdict: Verdict
    ) -> HookResponse:
        if request.path not in _CALLS:
            return _NOT_FOUND
        kind = verdict.kind
        if kind is VerdictKind.MALFORMED:
            return _text_response(400, verdict.reason or "malformed notification")
        if request.path in _DONE_ENDPOINTS:
            return _OK
        if kind is VerdictKind.ALLOW:
            return _OK
        if kind is VerdictKind.DENY or kind is VerdictKind.UNAUTHENTICATED:
            return _text_response(403, verdict.reason or "denied")
        if kind is VerdictKind.RENAME and question is not None:
            if question.action in (HookAction.UPDATE_PUBLISH, HookAction.UPDATE_PLAY):
                return _OK
            if question.action in (HookAction.PUBLISH, HookAction.PLAY):
                location = _location(question, verdict.stream)
                if location is not None:
                    return HookResponse(302, (*_TEXT, ("Location", location)), b"")
        return _INTERNAL


def _location(question: Question, stream: str | None) -> str | None:
    """The name to put in ``Location``: `stream` without its application, when it
    is a valid ASCII name in the question's application."""
    prefix = f"{question.app}/"
    if stream is None or not stream.isascii() or not stream.startswith(prefix):
        return None
    try:
        check_stream_name(stream)
    except InvalidStreamName:
        return None
    return stream[len(prefix) :]
