"""Stages: features that see the messages and IQs clients send one another.

Blocking (XEP-0191), message archiving (XEP-0313) and carbons (XEP-0280) each
need a look at a stanza between two accounts before it is delivered, and carbons
at where it went after.  Rather than each of them wrapping the router, the
router calls its stages in order at those two points; with no stage registered
(every such feature off) it takes its plain hot path and pays nothing.

Stages run synchronously, inside routing: whatever needs storage (an archive
row) is queued by the stage and written later, never awaited here, so one slow
database does not stall delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chatgate.jid import JID
    from chatgate.xml.element import Element
    from chatgate.xmpp.session import C2SSession


class StanzaStage(Protocol):
    """One feature's view of client-to-client traffic; the router calls every
    stage, in priority order (higher first), at each point."""

    def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
        """A message or IQ get/set that `origin` sent to an account `to` on a served
        domain (its bare JID, or a full JID), 'from' already stamped, before any
        delivery.  The stage may change `stanza` (add a XEP-0359 stanza-id, drop a
        forged one) or send stanzas of its own (a carbon of what was sent).

        Returns False when the stage has dealt with the stanza itself (answered it
        with an error, or dropped it as XEP-0191 asks): routing stops there and the
        stages after it do not see it."""
        ...

    def delivered(self, stanza: Element, to: JID, targets: Sequence[C2SSession]) -> None:
        """A message that passed `routing` was written to `targets` (empty when it
        went to offline storage or was bounced): what a stage does after delivery
        (the carbon copies other resources get)."""
        ...
