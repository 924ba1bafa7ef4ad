"""Media servers' hooks (issue 12) at `/hooks/ADAPTER/ENDPOINT` on the HTTP
listener: the request is read by its media server's adapter
(`streams/adapters/`), answered by the stream authority
(`streams/authority.py`) and written back as that media server expects.

Only the networks in `[streams] hook_networks` are answered (403 otherwise):
the callers are media servers, whose own clients' addresses come in the
payload and are what brute-force protection and address-bound tokens use.
nginx-rtmp's HTTP/1.0 requests with `Connection: Close` are served as they
come.  A wrong password's answer is held as long as brute-force protection
says, as an XMPP login's failure is; an attempt the throttle refused
unevaluated (every slot of the client's address taken) is answered at once, as
XMPP answers it: holding those would let one client with many connections
keep as many requests of its media server waiting, with nothing to bound them.
A refused renewal (nginx-rtmp's ``on_update``) is not held either: the session
was allowed when it started with the same credentials, so its refusal is a
revocation or an expiry, and the media server should end the stream at once.
A shared live registry that cannot be reached (Redis, on a cluster) is answered
503 with Retry-After: no decision without it.
Bodies are bounded by `[http] max_request_size`.  Refused callers are logged
once per address per minute, and a logged endpoint is cut to
`LOGGED_PATH` characters: what a peer sends never grows the log faster than
the requests themselves.

Read by the listener's lane (`lane.py`: one Content-Length, the common case,
as fast as a BOSH request) or by aiohttp (anything else the lane hands over);
both call `HookEndpoint.answer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiohttp import web

from chatgate.auth.gate import Reason
from chatgate.http.client_address import Networks
from chatgate.http.connection_limit import RefusalLog
from chatgate.streams.adapters import HookAction, HookRequest, Verdict
from chatgate.streams.adapters.base import Adapter, HookResponse
from chatgate.streams.authority import StreamAuthority
from chatgate.streams.live import LiveUnavailable

log = logging.getLogger(__name__)

_TEXT = (("Content-Type", "text/plain; charset=utf-8"),)
_NOT_A_MEDIA_SERVER = HookResponse(403, _TEXT, b"hooks answer only the configured media servers\n")
_NO_ADAPTER = HookResponse(404, _TEXT, b"no such media-server adapter\n")
#: a shared live registry (cluster) cannot be reached: nothing is decided
_UNAVAILABLE = HookResponse(
    503, (*_TEXT, ("Retry-After", "5")), b"the live stream registry is unavailable\n"
)

PREFIX = "/hooks/"
PATH = PREFIX + "{route:.+}"
#: seconds a hook's body may take to arrive
BODY_TIMEOUT = 10.0
#: characters of a request's endpoint written to the log
LOGGED_PATH = 64
#: the reason of a refusal the throttle gave without evaluating the credential
#: (`authority.StreamAuthority` puts the gate's reason there): never held
_THROTTLED = Reason.THROTTLED.value
#: renewals of a session its start allowed (nginx-rtmp's on_update, with the
#: client's URL of that start): a refusal there is a revocation or an expiry,
#: never a guess, and holding it only keeps the revoked stream going longer
_RENEWALS = frozenset((HookAction.UPDATE_PUBLISH, HookAction.UPDATE_PLAY))


class HookEndpoint:
    """The `/hooks/` route: one adapter per media server kind."""

    #: seconds a hook's body may take to arrive (the lane's and aiohttp's alike)
    body_timeout: float = BODY_TIMEOUT

    def __init__(
        self,
        authority: StreamAuthority,
        adapters: Mapping[str, Adapter],
        networks: list[str],
    ) -> None:
        self.authority = authority
        self.adapters = dict(adapters)
        self.networks = Networks(networks)
        self._outsiders = RefusalLog(
            "stream hooks: refused calls from %s (%d since the last line): not in hook_networks",
            logger=log,
        )

    async def answer(
        self,
        method: str,
        route: str,
        query: bytes,
        headers: Mapping[str, str],
        body: bytes,
        address: str | None,
    ) -> HookResponse:
        """The answer to a hook call, whichever HTTP code read it: `route` is the
        path after ``/hooks/`` (``nginx-rtmp/publish``), `headers` by lower-case
        name, `address` the TCP peer's."""
        if address not in self.networks:
            self._outsiders.refused(address or "-")
            return _NOT_A_MEDIA_SERVER
        name, _, endpoint = route.partition("/")
        adapter = self.adapters.get(name)
        if adapter is None or not endpoint:
            return _NO_ADAPTER
        hook = HookRequest(method, endpoint, query, headers, body, address)
        parsed = adapter.parse(hook)
        if isinstance(parsed, Verdict):
            question, verdict = None, parsed
            log.info(
                "stream hooks: %s %r: %s",
                adapter.name,
                hook.path[:LOGGED_PATH],
                parsed.reason or "-",
            )
        else:
            question = parsed
            try:
                answer = await self.authority.answer(parsed)
            except LiveUnavailable as exc:
                log.warning(
                    "stream hooks: %s %s: answered 503: %s", adapter.name, parsed.action, exc
                )
                return _UNAVAILABLE
            verdict = answer.verdict
            if answer.hold > 0 and verdict.reason != _THROTTLED and parsed.action not in _RENEWALS:
                await asyncio.sleep(answer.hold)  # only evaluated failures are held
        return adapter.respond(hook, question, verdict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp route (requests the lane hands over: chunked bodies,
        ``Expect``, anything its strict reader leaves to aiohttp)."""
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        address = str(peer[0]) if isinstance(peer, tuple) else None
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except TimeoutError:
            return web.Response(status=408, text="the request body took too long\n")
        path, _, query = _origin_form(request.raw_path).partition("?")
        reply = await self.answer(
            request.method,
            path.removeprefix(PREFIX),
            query.encode("utf-8", "surrogateescape"),
            {name.lower(): value for name, value in request.headers.items()},
            body,
            address,
        )
        response = web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))
        if reply.close:
            response.force_close()
        return response


def _origin_form(target: str) -> str:
    """The path and query of a request target as the client sent them, percent
    escapes and all (the lane reads the same bytes): an absolute-form target
    (``http://host/hooks/...``, which a server must accept, RFC 9112 §3.2.2)
    loses its scheme and authority.  Not aiohttp's `rel_url`, which decodes
    escapes in the path and the query and would read a form value another way
    than the lane does."""
    if target.startswith("/"):
        return target
    _, separator, rest = target.partition("://")
    if not separator:
        return target  # asterisk-form or garbage: no adapter is named so
    return "/" + rest.partition("/")[2]
