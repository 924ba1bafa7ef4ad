"""What stream management (`sm_driver.py`) uses of a client connection: its side
of XEP-0198 and XEP-0352 (the managed stream, the CSI filter, the resumption
timer, the session it moves) and the few driver steps resumption repeats.

`xmpp/c2s.py`'s `C2SConnection` is the implementation; naming it here rather
than importing it keeps the driver and its SM part out of an import cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.vocabulary.errors import StreamErrorCondition
    from chatgate.vocabulary.facts import ConnectionFacts
    from chatgate.xmpp import negotiation as neg
    from chatgate.xmpp.framing import StreamOutput
    from chatgate.xmpp.session import C2SSession
    from chatgate.xmpp.sm_client_state import ClientStateFilter
    from chatgate.xmpp.sm_stream import ManagedStream


class NamedTransport(Protocol):
    @property
    def name(self) -> str: ...


class SmConnection(Protocol):
    sm: ManagedStream | None
    csi: ClientStateFilter | None
    session: C2SSession | None
    resume_timer: asyncio.TimerHandle | None
    _moved: bool

    @property
    def ctx(self) -> ServerContext: ...

    @property
    def output(self) -> StreamOutput: ...

    @property
    def transport(self) -> NamedTransport: ...

    @property
    def negotiation(self) -> neg.C2SNegotiation: ...

    @property
    def closed(self) -> bool: ...

    @property
    def _loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def domain(self) -> str: ...

    @property
    def facts(self) -> ConnectionFacts: ...

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str = ""
    ) -> None: ...

    def count_stanzas(self) -> None: ...

    def _apply(self, actions: list[neg.Action]) -> Awaitable[None] | None: ...

    def _established(self) -> None: ...

    def _end_session(self, session: C2SSession) -> None: ...

    def _spawn(self, coro: Awaitable[None]) -> None: ...

    def hand_over(self) -> None:
        """`sm_resumption.Resumable`: the session moves to a resuming connection."""
        ...
