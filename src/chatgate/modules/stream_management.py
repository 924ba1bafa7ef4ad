"""XEP-0198 stream management: the `<sm xmlns='urn:xmpp:sm:3'/>` feature and its options.

The protocol itself runs in the connection driver (`xmpp/sm_driver.py`,
`xmpp/sm_stream.py`, `xmpp/sm_queue.py`): this module offers the feature after
authentication and hands connections its policy and the resumption table
(`xmpp/sm_resumption.py`) through the feature's registration.  Off, it
registers nothing: `<enable/>` and `<resume/>` are refused with
feature-not-implemented.  In a cluster it also answers the other nodes'
resumptions of its sessions (`cluster/sm_handover.py`).  See
docs/stream-management.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from chatgate.modules.base import OnStart, Registration, Spec
from chatgate.xmpp.sm_queue import SM, QueueLimits
from chatgate.xmpp.sm_resumption import (
    LocalResumptionTable,
    ResumptionTable,
    SmPolicy,
    StreamManagementFeature,
)
from chatgate.xmpp.sm_tokens import SECRET_NAME, TokenSigner

if TYPE_CHECKING:
    from chatgate.cluster.sm_handover import SessionHandover
    from chatgate.context import ServerContext


class Options(BaseModel):
    """``[modules.stream_management]``"""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer XEP-0198 (acknowledgements and resumption; XEP-0479 Advanced Mobile)."""
    resume_timeout: int = Field(300, ge=0, le=86_400)
    """Seconds a dropped session waits for its client to resume it, when the client
    asks for no other time; 0: no resumption (acknowledgements only)."""
    max_resume_timeout: int = Field(900, ge=0, le=86_400)
    """The longest a client may ask for with `<enable max/>` (its session, queue
    included, is kept that long)."""
    max_unacked_stanzas: int = Field(500, ge=1, le=100_000)
    """Stanzas a session may have unacknowledged; past it the session is closed with
    resource-constraint and the stanzas rerouted (offline storage, other resources)."""
    max_unacked_bytes: int = Field(1_048_576, ge=1024, le=1 << 30)
    """Bytes of unacknowledged stanzas a session may have (same outcome past it)."""
    ack_after_stanzas: int = Field(5, ge=1, le=10_000)
    """Ask the client for an ack (`<r/>`) after this many stanzas since the last ask."""
    ack_after_ms: int = Field(2000, ge=10, le=600_000)
    """... or this many milliseconds after a stanza went out unasked."""


class StreamManagement:
    name: ClassVar[str] = "stream_management"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0198", "1.6.3"),)
    Options = Options

    def __init__(self, table: ResumptionTable | None = None) -> None:
        #: the resumption table (a shared one may be given; in-process by default)
        self.table = table if table is not None else LocalResumptionTable()
        #: resumption across cluster nodes (None alone)
        self.handover: SessionHandover | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, Options)
        if not options.enabled:
            return
        handover = None
        peers = getattr(ctx, "peers", None)  # a bare test context may have none
        if peers is not None and peers.clustered:
            # Resumption across nodes (`cluster/sm_handover.py`): tokens name their
            # node, signed with a secret every node reads from the database.  Imported
            # here: nothing of `chatgate.cluster` is loaded without a cluster.
            from chatgate.cluster.sm_handover import SessionHandover

            handover = self.handover = SessionHandover(ctx, peers, self.table)

            async def start() -> None:
                key = await ctx.db.secrets.get_or_create(SECRET_NAME, secrets.token_bytes(32))
                handover.signer = TokenSigner(key, peers.name)

            yield OnStart(start)
        policy = SmPolicy(
            resume_timeout=options.resume_timeout,
            max_resume_timeout=options.max_resume_timeout,
            limits=QueueLimits(options.max_unacked_stanzas, options.max_unacked_bytes),
            ack_after_stanzas=options.ack_after_stanzas,
            ack_after_seconds=options.ack_after_ms / 1000,
            table=self.table,
            handover=handover,
        )
        yield StreamManagementFeature(f"<sm xmlns='{SM}'/>", policy=policy)
