"""The archiving stage: what the router's stages (`xmpp/stages.py`) give the archive.

Runs at priority 50: after blocking (100: a blocked message is not archived)
and before carbons (0: the carbon copies carry the stanza-id).  Synchronous;
it queues, never awaits.  IQs pass untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatgate.jid import JID

if TYPE_CHECKING:
    from chatgate.modules.mam.service import ArchiveService
    from chatgate.xml.element import Element
    from chatgate.xmpp.session import C2SSession

#: the `Stage` priority: after blocking (100), before carbons (0)
PRIORITY = 50


class ArchiveStage:
    def __init__(self, service: ArchiveService) -> None:
        self.service = service

    def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
        if stanza.name != "message":
            return True
        self.service.archive_chat(stanza, JID(origin.username, origin.domain, origin.resource), to)
        return True

    def delivered(self, stanza: Element, to: JID, targets: Sequence[C2SSession]) -> None:
        return None
