"""A parsing budget per event-loop turn: once a turn has parsed client input for
`TURN_BUDGET` seconds, connections read later in that turn wait for the next one,
and the next turn serves them first, in the order they were held back.

Why it exists: what a turn writes leaves at the end of the turn (each connection's
`output.TurnBuffer`, the cluster's `Forwarder`).  A turn that parses every ready
connection before it ends holds all of that output back for as long as the parsing
takes, which under load was 5-34 ms.  Whoever waits for that output waits that long:
a client for its answer, and under `--workers N` the other worker, whose input is
this worker's output once users talk across workers (it sat idle for 11 % of the
bench's across-worker window, docs/benchmarks.md).  With the budget, a loaded
worker hands its output on every few milliseconds, and input that arrives meanwhile
is parsed in its turn rather than after a long one.

Fairness: the per-connection slice (`pacing.PacedReader`) keeps one connection from
taking a turn; this keeps one busy turn from delaying everyone's output.  A
connection held back is served before any input read in the next turn, so no
connection waits more than its place in the queue; the first in line is served
whatever the clock says, so every turn serves at least one.  A connection held
back is not paused at once (a pause and a resume are two system calls, and cost
same-worker pairs 8 % when every wait paused): it is paused when a second read
comes, or when it must wait longer than the next turn, so what it holds is at
most two reads.  Under light load a turn never reaches the budget and nothing
changes.

The clock is wall time from the turn's first parse (or from the start of the
turn that serves who waits), so time the turn spends on other callbacks counts
too: what bounds the turn's length is what matters, not parsing alone.

The budget is per process, held by the event loop's one `TurnBudget`
(`turn_budget(loop)`), because the loop turn is what it bounds.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import Protocol

#: seconds of parsing per loop turn before further connections wait for the next
#: turn (measured: 1-3 ms raised messages/s across workers by 10-15 % and cost
#: same-worker pairs no more than the noise; 4 ms was seldom reached under the
#: bench's load, docs/benchmarks.md)
TURN_BUDGET = 0.002

_monotonic = time.monotonic


class Deferred(Protocol):
    """A connection whose input waits for the next turn (`PacedReader`)."""

    def _go_on(self) -> None:
        """Parse what was held back (called once, at the start of a later turn)."""
        ...

    def _keep_waiting(self) -> None:
        """A turn's budget ran out before this connection's turn came: it stops
        reading its socket until it comes (it keeps reading until then, which
        spares the two system calls of a pause for most waits)."""
        ...


class TurnBudget:
    """The budget of one event loop (see the module docstring)."""

    __slots__ = ("_deadline", "_loop", "_seconds", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float = TURN_BUDGET) -> None:
        #: weak: the budget is the value of its loop's key in `_budgets`, and a
        #: strong reference would keep every loop alive (one per test, say)
        self._loop = weakref.ref(loop)
        self._seconds = seconds
        #: when this turn's budget runs out; 0.0 until something parses in this turn
        self._deadline = 0.0
        #: connections held back, in order
        self._waiting: deque[Deferred] = deque()

    def spent(self) -> bool:
        """True when this turn has parsed for its budget; the first call of a turn
        starts the clock (and schedules the next turn's start)."""
        deadline = self._deadline
        if not deadline:
            self._deadline = _monotonic() + self._seconds
            loop = self._loop()
            if loop is not None:
                loop.call_soon(self._next_turn)
            return False
        return _monotonic() > deadline

    def defer(self, connection: Deferred) -> None:
        """Serve `connection` at the start of a later turn, after those before it."""
        self._waiting.append(connection)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _next_turn(self) -> None:
        """A new turn: serve who waits, in order, while the fresh budget lasts."""
        self._deadline = 0.0
        waiting = self._waiting
        while waiting and not self.spent():
            waiting.popleft()._go_on()
        for connection in waiting:
            connection._keep_waiting()


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnBudget] = (
    weakref.WeakKeyDictionary()
)


def turn_budget(loop: asyncio.AbstractEventLoop) -> TurnBudget:
    """The budget of `loop` (one per loop; looked up once per connection).  A loop
    that is dropped goes with its budget, unless it stopped with connections still
    waiting in it (they hold the loop)."""
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = TurnBudget(loop)
    return budget
