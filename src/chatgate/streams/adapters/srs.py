"""SRS's HTTP callbacks (``http_hooks``): the requests it sends and the answers
it acts on (``streaming-contract.md``, "SRS").

Configuration (in a ``vhost``)::

    http_hooks {
        enabled         on;
        on_connect      http://127.0.0.1:5280/hooks/srs/on_connect;
        on_publish      http://127.0.0.1:5280/hooks/srs/on_publish;
        on_unpublish    http://127.0.0.1:5280/hooks/srs/on_unpublish;
        on_play         http://127.0.0.1:5280/hooks/srs/on_play;
        on_stop         http://127.0.0.1:5280/hooks/srs/on_stop;
    }

Request: ``POST`` JSON with ``action`` (which must be the endpoint's name),
``client_id`` (a string in SRS 5, an integer before), ``ip``, ``vhost``,
``app``, ``stream``, ``param`` (the client's query string, with its ``?``),
``tcUrl``, ``server_id``, ``stream_url``, ``stream_id``.  The stream is
``app/stream``, validated; ``on_connect`` has none.  The ``vhost`` goes into the
detail only: rules name streams by application and name, so two vhosts sharing
an application share its rules (give them different applications).
``server_id`` is the question's ``instance``: SRS picks a new one when it
restarts.

Credentials: ``param``, read with the keys of `form`
(``rtmp://host/live/alice?token=1AQ...``, ``?key=...``,
``?username=alice&password=...``).  ``tcUrl`` is never read (it may carry
credentials given on the application part).

Answers: allow ``200`` with body ``0`` (SRS needs 200 and a body that is the
number 0 or an object whose ``code`` is 0); deny and unauthenticated ``403``
with ``{"code": 403, "msg": reason}``; malformed ``400`` with
``{"code": 400, ...}``; unknown endpoint ``404``.  ``on_unpublish`` and
``on_stop`` are answered ``200`` ``0`` whatever the verdict (SRS only logs their
failures).  SRS cannot rename a stream nor take a key: such verdicts are our
own error, ``500`` (a denial for SRS).
"""

from __future__ import annotations

import json
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
from chatgate.streams.adapters.form import credentials_from_form, read_form
from chatgate.streams.adapters.jsonbody import Malformed, client_id, optional_text, read_object
from chatgate.streams.policy import InvalidStreamName, check_stream_name, join_stream_name

__all__ = ["SrsAdapter"]

_ACTIONS: Final = {
    "on_connect": HookAction.CONNECT,
    "on_publish": HookAction.PUBLISH,
    "on_unpublish": HookAction.PUBLISH_DONE,
    "on_play": HookAction.PLAY,
    "on_stop": HookAction.PLAY_DONE,
}
_JSON: Final = (("Content-Type", "application/json"),)


def _error(status: int, message: str) -> HookResponse:
    return HookResponse(status, _JSON, json.dumps({"code": status, "msg": message}).encode())


_OK: Final = HookResponse(200, _JSON, b"0")
_NOT_FOUND: Final = _error(404, "no such SRS hook")
_INTERNAL: Final = _error(500, "internal error")


class SrsAdapter:
    """SRS (module docstring)."""

    name: str = "srs"
    endpoints: frozenset[str] = frozenset(_ACTIONS)

    def __init__(self, node: str = "srs") -> None:
        self.node = node

    def parse(self, request: HookRequest) -> Question | Verdict:
        action = _ACTIONS.get(request.path)
        if action is None:
            return Verdict.malformed("no such SRS hook")
        if request.method != "POST":
            return Verdict.malformed("method not allowed")
        try:
            obj = read_object(request.body)
            if optional_text(obj, "action") != request.path:
                raise Malformed(f"action is not {request.path}")
            address = optional_text(obj, "ip")
            if not valid_client_address(address):
                raise Malformed("missing or invalid ip")
            session = client_id(obj, "client_id")
            if session is None:
                raise Malformed("missing client_id")
            instance = client_id(obj, "server_id")
            vhost = optional_text(obj, "vhost")
            app = optional_text(obj, "app")
            name = optional_text(obj, "stream")
            param = optional_text(obj, "param")
        except Malformed as exc:
            return Verdict.malformed(str(exc))
        credentials = credentials_from_form(
            read_form(param.removeprefix("?").encode("utf-8", "surrogatepass"))
        )
        detail = f"vhost {vhost}" if vhost.isprintable() else "vhost ?"
        stream: str | None = None
        try:
            if action is HookAction.CONNECT:
                check_stream_name(app)
            else:
                stream = join_stream_name(app, name)
        except InvalidStreamName as exc:
            return Verdict.deny(str(exc))
        return Question(
            self.name,
            action,
            stream,
            credentials,
            client_address=address,
            client_id=session,
            node=self.node,
            app=app,
            name=name if stream is not None else None,
            detail=detail[:80],
            instance=instance,
        )

    def respond(
        self, request: HookRequest, question: Question | None, verdict: Verdict
    ) -> HookResponse:
        action = _ACTIONS.get(request.path)
        if action is None:
            return _NOT_FOUND
        kind = verdict.kind
        if kind is VerdictKind.MALFORMED:
            return _error(400, verdict.reason or "malformed request")
        if kind is VerdictKind.ALLOW or not action.decides:
            return _OK
        if kind is VerdictKind.DENY or kind is VerdictKind.UNAUTHENTICATED:
            return _error(403, verdict.reason or "denied")
        return _INTERNAL
