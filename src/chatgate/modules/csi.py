"""XEP-0352 client state indication: the `<csi xmlns='urn:xmpp:csi:0'/>` feature.

While a client says it is inactive, its session holds presence updates and
chat states and delivers the rest at once (`xmpp/sm_client_state.py`, installed
by the connection driver only while inactive).  Off, this module registers
nothing and `<inactive/>` is refused.  See docs/stream-management.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from chatgate.modules.base import Registration, Spec
from chatgate.vocabulary.ns import CSI
from chatgate.xmpp.sm_client_state import HoldLimits
from chatgate.xmpp.sm_resumption import ClientStateFeature

if TYPE_CHECKING:
    from chatgate.context import ServerContext


class Options(BaseModel):
    """``[modules.csi]``"""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer XEP-0352 (XEP-0479 Advanced Mobile)."""
    max_held_stanzas: int = Field(100, ge=1, le=10_000)
    """Stanzas held for an inactive client; past it everything held is sent."""
    max_held_bytes: int = Field(262_144, ge=1024, le=1 << 26)
    """Bytes held for an inactive client; past it everything held is sent."""


class ClientStateIndication:
    name: ClassVar[str] = "csi"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0352", "1.0.0"),)
    Options = Options

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, Options)
        if not options.enabled:
            return
        limits = HoldLimits(options.max_held_stanzas, options.max_held_bytes)
        yield ClientStateFeature(f"<csi xmlns='{CSI}'/>", limits=limits)
