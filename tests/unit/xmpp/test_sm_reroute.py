"""What a session that ends for good never acknowledged (XEP-0198 §4, RFC 6121
§8.5.3.2.1): messages back to the bare JID (another resource, else offline
storage) in order, IQ requests answered with an error, the rest dropped.

A real router and session directory; each session records what it is written,
parsed back with the stream's own fragment parser."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from chatgate.config import ResourceConflict
from chatgate.hooks import Hooks
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.framed import parse_fragment
from chatgate.xmpp.directory import LocalSessionDirectory
from chatgate.xmpp.router import MessageUndeliverable, Router
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_stream import reroute_unacked


class Context:
    """The part of `ServerContext` rerouting uses: the router, and `spawn`."""

    def __init__(self) -> None:
        self.directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
        self.hooks = Hooks()
        self.router = Router("localhost", self.hooks, self._exists, self.directory)
        self.tasks: list[asyncio.Future[None]] = []
        self.stored: list[str] = []
        self.out: dict[str, list[bytes]] = {}
        self.hooks.add(MessageUndeliverable, self._store)

    async def _exists(self, local: str, domain: str) -> bool:
        return True

    async def _store(self, event: MessageUndeliverable) -> bool:
        await asyncio.sleep(0.01 if not self.stored else 0)  # the first is the slowest
        body = event.stanza.find("body")
        self.stored.append(body.text if body is not None else "")
        return True

    def spawn(self, coro: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    def session(self, full: str, *, available: bool = True, bind: bool = True) -> C2SSession:
        local, _, rest = full.partition("@")
        domain, _, resource = rest.partition("/")
        out = self.out.setdefault(full, [])

        def close(_c: StreamErrorCondition | None, _t: str) -> None:
            raise AssertionError("not closed here")

        session = C2SSession(
            username=local,
            domain=domain,
            resource=resource,
            stream_id="s",
            write=out.append,
            close=close,
            transport="tcp",
        )
        if bind:
            claimed = self.directory.claim(lambda res: session, resource)
            assert claimed[0] is session
            if available:
                presence = parse_fragment(b"<presence/>")
                self.directory.mark_available(session, 0, presence)
        return session


def stanza(text: str) -> bytes:
    return text.encode()


UNACKED = [
    stanza(
        '<message from="bob@localhost/a" to="alice@localhost/phone" type="chat"><body>one</body></message>'
    ),
    stanza('<presence from="bob@localhost/a" to="alice@localhost/phone"/>'),
    stanza(
        '<message from="room@conf/x" to="alice@localhost/phone" type="groupchat"><body>gc</body></message>'
    ),
    stanza(
        '<message from="bob@localhost/a" to="alice@localhost/phone" type="error"><body>e</body></message>'
    ),
    stanza(
        '<iq from="bob@localhost/a" to="alice@localhost/phone" type="get" id="q1"><query xmlns="jabber:iq:version"/></iq>'
    ),
    stanza(
        '<iq from="localhost" to="alice@localhost/phone" type="set" id="push1"><query xmlns="jabber:iq:roster"/></iq>'
    ),
    stanza('<message from="bob@localhost/a" to="alice@localhost" ><body>two</body></message>'),
]


async def test_messages_go_to_another_resource_and_iqs_are_answered() -> None:
    ctx = Context()
    gone = ctx.session("alice@localhost/phone", bind=False)
    ctx.session("alice@localhost/desk")
    ctx.session("bob@localhost/a")
    assert reroute_unacked(ctx, gone, UNACKED) == 2  # type: ignore[arg-type]
    await asyncio.gather(*ctx.tasks)
    desk = [parse_fragment(d) for d in ctx.out["alice@localhost/desk"]]
    assert [m.name for m in desk] == ["message", "message"]
    assert [m.find("body").text for m in desk] == ["one", "two"]  # type: ignore[union-attr]
    # bob's IQ get is answered (the roster push from the server is not: no one waits).
    (reply,) = [parse_fragment(d) for d in ctx.out["bob@localhost/a"]]
    assert reply.name == "iq" and reply.get("type") == "error" and reply.get("id") == "q1"
    assert reply.get("from") == "alice@localhost/phone"
    assert reply.find("error") is not None
    assert ctx.stored == []


async def test_with_no_other_resource_messages_are_stored_in_order() -> None:
    ctx = Context()
    gone = ctx.session("alice@localhost/phone", bind=False)
    ctx.session("bob@localhost/a")
    reroute_unacked(ctx, gone, UNACKED)  # type: ignore[arg-type]
    await asyncio.gather(*ctx.tasks)
    # In the order they were sent, though the first one's storage was the slowest.
    assert ctx.stored == ["one", "two"]
    assert ctx.out["bob@localhost/a"]  # the IQ error only: nothing bounced for messages
    assert all(b"<iq" in d for d in ctx.out["bob@localhost/a"])


async def test_nothing_unacknowledged_does_nothing() -> None:
    ctx = Context()
    gone = ctx.session("alice@localhost/phone", bind=False)
    assert reroute_unacked(ctx, gone, []) == 0  # type: ignore[arg-type]
    assert ctx.tasks == []


async def test_a_session_bound_again_on_the_resource_gets_the_messages() -> None:
    ctx = Context()
    gone = ctx.session("alice@localhost/phone", bind=False)
    ctx.session("alice@localhost/phone", available=False)  # back, not yet available
    ctx.session("alice@localhost/desk")
    ctx.session("bob@localhost/a")
    reroute_unacked(ctx, gone, UNACKED)  # type: ignore[arg-type]
    await asyncio.gather(*ctx.tasks)
    again = [parse_fragment(d) for d in ctx.out["alice@localhost/phone"]]
    assert [m.find("body").text for m in again] == ["one", "two"]  # type: ignore[union-attr]
    assert "alice@localhost/desk" not in ctx.out or not ctx.out["alice@localhost/desk"]
    assert ctx.stored == []
