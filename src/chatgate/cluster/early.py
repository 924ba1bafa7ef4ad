"""What reaches a starting node before the module that takes it is set up.

The other nodes count a node in from its first heartbeat (`ClusterNode.start`):
a room may be its now, and stanzas for it come.  Its modules register their
handlers of other nodes' messages and requests a moment later (`Server.start`
joins the cluster, reads the session directory, then sets every module up).
What arrives for a topic in between is kept here, in arrival order, and goes to
the handler when it registers, ahead of anything after it on that topic:

- a **message** is kept until its handler registers; at `end` (the end of the
  start) what no handler took is dropped with a warning, as a message for a
  topic nobody handles is from then on;
- a **request** is kept at most `REQUEST_SECONDS`, then refused as "starting",
  which its asker takes as a node it cannot reach now (it tries again); every
  asker waits at least 2 s, so a kept request is answered while its asker still
  waits: answering one it gave up on would do what it reported as failed.  At
  `end`, requests still kept are refused the same way.

Bounded: `MAX_BYTES` of payloads in all; beyond it a message is dropped (with
a warning) and a request refused as "starting".  Other nodes are trusted peers,
but a flood of them must not grow a starting node's memory without end.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: bytes of payloads kept at once, at most
MAX_BYTES = 8 << 20
#: seconds a request is kept at most (every asker waits at least 2 s)
REQUEST_SECONDS = 1.0
#: seconds between looks for requests kept too long
SWEEP_SECONDS = 0.25


@dataclass(slots=True)
class Arrival:
    """A message (`request_id` 0) or a request that came before its handler."""

    sender: str
    payload: bytes
    request_id: int
    at: float


#: (is a request, topic): what a handler registers for
Slot = tuple[bool, str]


class EarlyArrivals:
    """Arrivals kept for handlers still to come (see the module docstring).

    `take(slot, arrival)` hands a kept arrival to its handler (now registered);
    `refuse(topic, arrival)` tells a request's asker that this node is starting.
    """

    def __init__(
        self,
        take: Callable[[Slot, Arrival], None],
        refuse: Callable[[str, Arrival], None],
    ) -> None:
        self._take = take
        self._refuse = refuse
        self._kept: dict[Slot, collections.deque[Arrival]] = {}
        #: slots whose handler registered (what is kept for them goes on soon)
        self._handled: set[Slot] = set()
        self.bytes = 0
        #: the start is over: nothing more is kept
        self.ended = False
        self._sweep: asyncio.TimerHandle | None = None

    def waiting(self, slot: Slot) -> bool:
        """Whether arrivals are kept for `slot`: a new one goes behind them."""
        return slot in self._kept

    def keep(self, slot: Slot, arrival: Arrival) -> None:
        is_request, topic = slot
        if self.bytes + len(arrival.payload) > MAX_BYTES:
            if is_request:
                self._refuse(topic, arrival)
            else:
                log.warning(
                    "cluster: a message on topic %r from %s came while starting, past %d"
                    " bytes kept; dropped",
                    topic,
                    arrival.sender,
                    MAX_BYTES,
                )
            return
        self._kept.setdefault(slot, collections.deque()).append(arrival)
        self.bytes += len(arrival.payload)
        if is_request and self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._expire)

    def registered(self, slot: Slot) -> None:
        """A handler for `slot` is there: what was kept for it goes on the next
        loop turn (the module registering may not be fully set up yet)."""
        self._handled.add(slot)
        if slot in self._kept:
            asyncio.get_running_loop().call_soon(self._hand_over, slot)

    def end(self) -> None:
        """The start is over: what is kept for a handler goes to it now, what no
        handler took goes (messages dropped, requests refused); from now on
        nothing is kept."""
        self.ended = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for slot in list(self._kept):
            if slot in self._handled:
                self._hand_over(slot)
            else:
                self._drop(slot)
        self._handled.clear()

    # ------------------------------------------------------------ internals

    def _hand_over(self, slot: Slot) -> None:
        kept = self._kept.pop(slot, None)
        for arrival in kept or ():
            self.bytes -= len(arrival.payload)
            try:
                self._take(slot, arrival)
            except Exception:  # as `ClusterNode._deliver`: one bad arrival stops nothing
                log.exception("cluster: handler for topic %r failed", slot[1])

    def _drop(self, slot: Slot) -> None:
        is_request, topic = slot
        kept = self._kept.pop(slot)
        for arrival in kept:
            self.bytes -= len(arrival.payload)
            if is_request:
                self._refuse(topic, arrival)
        if not is_request:
            log.warning(
                "cluster: %d messages on topic %r came while starting and no handler took them",
                len(kept),
                topic,
            )

    def _expire(self) -> None:
        """Requests kept longer than `REQUEST_SECONDS` are refused."""
        self._sweep = None
        oldest = time.monotonic() - REQUEST_SECONDS
        left = False
        for slot in [s for s in self._kept if s[0]]:
            kept = self._kept[slot]
            while kept and kept[0].at <= oldest:
                arrival = kept.popleft()
                self.bytes -= len(arrival.payload)
                self._refuse(slot[1], arrival)
            if not kept:
                del self._kept[slot]
            else:
                left = True
        if left:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._expire)
