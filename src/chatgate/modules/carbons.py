"""XEP-0280 message carbons: every resource of a user sees the user's conversations.

A resource enables carbons with an IQ (`urn:xmpp:carbons:2`); from then on it
gets a `<sent/>` copy of each eligible message the user's other resources send,
and a `<received/>` copy of each eligible message for the user that went to
other resources (or to none), each wrapped in a XEP-0297 `<forwarded/>`.

`CarbonsStage` (priority 0: after blocking and archiving, so a refused message is
never copied and a copy carries the archive's stanza-id) sends the `<sent/>`
copies while routing and the `<received/>` ones once the router says where the
message went.  Which sessions enabled carbons is `CarbonsState`'s
(`carbons_state.py`), cleared when a session closes.  Copies go out through the
router (`deliver_to_full`), never straight to a session.  Never awaits; never
touches storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from chatgate.jid import JID
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    OnEvent,
    OnStart,
    Registration,
    Spec,
    Stage,
)
from chatgate.modules.carbons_state import CarbonsState, LocalCarbonsState
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import CARBONS, FORWARD, HINTS, MUC_USER
from chatgate.xml.element import Element
from chatgate.xmpp.events import SessionClosed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionMovedIn, SessionMovedOut, SessionMovingOut
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.router import Router

#: payloads that make a bodiless normal message part of a conversation (§6):
#: chat states, receipts, chat markers
IM_PAYLOADS = frozenset(
    {
        "http://jabber.org/protocol/chatstates",
        "urn:xmpp:receipts",
        "urn:xmpp:chat-markers:0",
    }
)


class Options(BaseModel):
    """``[modules.carbons]``"""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer XEP-0280 message carbons (XEP-0479 Advanced IM); off: no IQs, no copies."""


def eligible(stanza: Element) -> bool:
    """XEP-0280 §6 (and §7, §8): whether a message is copied.

    Chat messages are; normal ones with a body or an IM payload (chat states,
    receipts, markers) are.  Never copied: groupchat and headline (the room or the
    service delivers those), errors, messages marked `<private/>` or
    `<no-copy/>`, MUC private messages (the other resources are not in the room),
    and messages that already carry a carbon (a client must not forge them)."""
    mtype = stanza.get("type") or "normal"
    if mtype == "chat":
        im = True
    elif mtype == "normal":
        im = False
    else:
        return False
    for child in stanza.children:
        if not isinstance(child, Element):
            continue
        child_ns = child.ns
        if child_ns == CARBONS:
            return False  # <private/>, or a <sent/>/<received/> a client wrote
        if child_ns == HINTS and child.name == "no-copy":
            return False
        if child_ns == MUC_USER:
            return False
        if not im and ((child.name == "body" and child_ns == ns.CLIENT) or child_ns in IM_PAYLOADS):
            im = True
    return im


def wrap(kind: str, stanza: Element, to: str, account: str) -> Element:
    """A carbon: `<message from=account to=to><kind><forwarded>stanza` (§4, XEP-0297)."""
    carbon = Element(
        "message",
        ns.CLIENT,
        {"from": account, "to": to, "type": stanza.get("type") or "normal"},
    )
    forwarded = carbon.sub(kind, CARBONS).sub("forwarded", FORWARD)
    forwarded.append(stanza.copy())
    return carbon


# ------------------------------------------------------------------ the module


class Carbons:
    name: ClassVar[str] = "carbons"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0280", "1.0.1"),)
    Options = Options

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, Options)
        if not options.enabled:
            return
        self.state: CarbonsState
        if ctx.cluster is not None and ctx.peers.clustered:
            from chatgate.cluster.carbons import ClusterCarbonsState

            shared = ClusterCarbonsState(ctx.cluster, ctx.peers)
            self.state = shared
            yield OnStart(shared.start)
        else:
            self.state = LocalCarbonsState()
        self.stage = CarbonsStage(ctx.router, self.state)
        yield IqHandler(CARBONS, "set", self._set)
        yield DiscoFeature(CARBONS)
        yield Stage(self.stage, priority=0)
        yield OnEvent(SessionClosed, self._session_closed)
        # A session resumed on another node (XEP-0198 across a cluster) keeps carbons.
        yield OnEvent(SessionMovingOut, self._moving_out)
        yield OnEvent(SessionMovedOut, self._moved_out)
        yield OnEvent(SessionMovedIn, self._moved_in)

    async def _set(self, session: C2SSession, iq: Element) -> None:
        """§3.1 enable, §3.2 disable: for this session only."""
        to = iq.get("to")
        if to and to not in (session.bare, session.domain):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "carbons are your own")
        if iq.find("enable", CARBONS) is not None:
            self.state.enable(session)
        elif iq.find("disable", CARBONS) is not None:
            self.state.disable(session)
        else:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "expected <enable/> or <disable/>")
        pending = self.state.settled()
        if pending is not None:
            await pending
        reply = iq_result(iq)
        reply.attrs["to"] = session.full
        reply.attrs.pop("from", None)
        session.send(reply)

    def _session_closed(self, event: SessionClosed) -> None:
        self.state.disable(event.session)

    def _moving_out(self, event: SessionMovingOut) -> None:
        if self.state.enabled(event.session):
            event.carry[self.name] = "1"

    def _moved_out(self, event: SessionMovedOut) -> None:
        self.state.disable(event.session)

    def _moved_in(self, event: SessionMovedIn) -> None:
        if event.carry.get(self.name) == "1":
            self.state.enable(event.session)


class CarbonsStage:
    """Copies of messages between accounts (§4 sent, §5 received)."""

    def __init__(self, router: Router, state: CarbonsState) -> None:
        self.router = router
        self.state = state

    def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
        state = self.state
        if not state or stanza.name != "message":
            return True
        copies = state.of(origin.bare)
        if not copies or f"{to.local}@{to.domain}" == origin.bare:
            return True  # nobody to copy to, or a message within the account
        me = origin.full
        others = [full for full in copies if full != me]
        if others and eligible(stanza):
            # §4: a <sent/> copy to each other resource with carbons on.
            for full in others:
                self._send(full, wrap("sent", stanza, full, origin.bare))
        return True

    def delivered(self, stanza: Element, to: JID, targets: Sequence[C2SSession]) -> None:
        state = self.state
        if not state:
            return
        bare = f"{to.local}@{to.domain}"
        copies = state.of(bare)
        if not copies:
            return
        sender = stanza.get("from") or ""
        if sender.partition("/")[0] == bare:
            return  # within the account: the resources see it as it is
        reached = {t.full for t in targets}
        others = [full for full in copies if full not in reached]
        if others and eligible(stanza):
            # §5: a <received/> copy to each resource with carbons on that did not
            # get the message itself.
            for full in others:
                self._send(full, wrap("received", stanza, full, bare))

    def _send(self, full: str, carbon: Element) -> None:
        # A session elsewhere in a cluster is reached through its stand-in; one
        # that left meanwhile is skipped (False).
        self.router.deliver_to_full(JID.parse(full), carbon)
