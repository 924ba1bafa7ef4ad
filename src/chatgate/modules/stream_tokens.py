"""Stream tokens over XMPP: a logged-in client asks its server for a signed token
to publish or play a live stream, and puts it in the media URL
(``rtmp://host/live/alice?token=...``) instead of its password.

There is no XEP for this; the protocol is chatgate's own, in the namespace
`NAMESPACE` (advertised in the server's disco#info when ``[streams]`` is
enabled)::

    <iq type='get' to='example.org' id='t1'>
      <token xmlns='urn:chatgate:stream-token:0'
             stream='live/alice' action='play' ttl='600' one-time='true'/>
    </iq>

    <iq type='result' id='t1'>
      <token xmlns='urn:chatgate:stream-token:0' stream='live/alice'
             action='play' expires='2026-12-05T10:00:00Z'>1AQ…</token>
    </iq>

``ttl`` (seconds) is optional, the server's default when absent and cut to
``[streams] token_max_ttl``; ``expires`` says what was granted.  ``one-time``
makes a token the media server accepts for one client only.  A token is issued
only for what the rules let the account do itself, and only on streams whose
rules honour tokens (`streams/issuer.py`).  Errors (RFC 6120 §8.3.3):
``bad-request`` for a missing or invalid stream, action, ttl or one-time, or
a payload that is not ``<token/>``;
``forbidden`` when the account may not do that; ``not-allowed`` when tokens
are not honoured on that stream.  A get, as XEP-0363 asks for an upload slot:
issuing stores nothing (a signed token is checked by its MAC).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Final

from chatgate.modules.base import DiscoFeature, IqHandler, Registration, Spec
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext

__all__ = ["NAMESPACE", "StreamTokens"]

NAMESPACE: Final = "urn:chatgate:stream-token:0"
#: Longest ``ttl`` text read (a lifetime is at most 30 days: 7 digits).
_MAX_TTL_DIGITS: Final = 9

_CONDITIONS: Final = {
    "invalid request": StanzaErrorCondition.BAD_REQUEST,
    "the rules do not let this account do that": StanzaErrorCondition.FORBIDDEN,
    "the rules do not honour tokens on this stream": StanzaErrorCondition.NOT_ALLOWED,
}


def _stamp(seconds: int) -> str:
    """XEP-0082 DateTime, UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ttl(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_TTL_DIGITS:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "ttl is a number of seconds")
    return int(text)


def _flag(text: str | None) -> bool:
    if text is None or text in ("false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "one-time is a boolean")


class StreamTokens:
    """The ``urn:chatgate:stream-token:0`` IQ (module docstring)."""

    name: ClassVar[str] = "stream_tokens"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        if not ctx.config.streams.enabled:
            return

        async def get(session: C2SSession, iq: Element) -> None:
            from chatgate.streams.issuer import TokenRefused

            service = ctx.streams
            if service is None:  # the server is starting or stopping
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            request = iq.find("token", NAMESPACE)
            if request is None:  # another element in the namespace
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the request is <token/>")
            stream, action = request.get("stream"), request.get("action")
            if not stream or action not in ("publish", "play"):
                raise StanzaError(
                    StanzaErrorCondition.BAD_REQUEST, "a stream and an action (publish or play)"
                )
            account = f"{session.username}@{session.domain}"
            try:
                issued = await service.issuer.issue(
                    account,
                    await service.groups.of(account),
                    stream,
                    action,
                    ttl=_ttl(request.get("ttl")),
                    one_time=_flag(request.get("one-time")),
                )
            except TokenRefused as refused:
                condition = _CONDITIONS[refused.refusal.value]
                raise StanzaError(condition, refused.detail) from None
            answer = Element(
                "token",
                NAMESPACE,
                {
                    "stream": issued.stream,
                    "action": issued.action.value,
                    "expires": _stamp(issued.expires_at),
                },
            )
            if issued.one_time:
                answer.attrs["one-time"] = "true"
            answer.children.append(issued.token)
            reply = iq_result(iq, answer)
            reply.attrs["to"] = session.full
            session.send(reply)

        yield IqHandler(NAMESPACE, "get", get)
        yield DiscoFeature(NAMESPACE)
