"""One warning line per place while the database is out of reach, not a traceback
per failed call.

During a PostgreSQL outage every login that needs the database, every offline
message and every lookup of an unknown user fails with `StorageUnavailable`.
The callers already answer the client (temporary-auth-failure,
internal-server-error); what they log must tell the operator once that the
database is unreachable, not bury the log under identical tracebacks.  An
`OutageLog` writes one WARNING line without a traceback, then at most one per
`interval` seconds, counting the failures it did not write.

The state (when the last line was written) is per process on purpose: it bounds
this process's log, which is all it is for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chatgate.storage.errors import StorageUnavailable

__all__ = ["OUTAGE_LOG_INTERVAL", "OutageLog"]

#: seconds between two warnings of one place while the outage lasts
OUTAGE_LOG_INTERVAL = 10.0


class OutageLog:
    """The warnings of one place (`place` names it in every line)."""

    def __init__(
        self,
        logger: logging.Logger,
        place: str,
        interval: float = OUTAGE_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._place = place
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._unlogged = 0

    def failed(self, what: str, exc: StorageUnavailable) -> bool:
        """Log that `what` failed because of `exc`, unless this place logged less than
        `interval` seconds ago; True when a line was written."""
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._unlogged += 1
            return False
        self._last = now
        since = ""
        if self._unlogged:
            since = f"; {self._unlogged} more such failures since the last line"
            self._unlogged = 0
        reason = exc.__cause__ if exc.__cause__ is not None else exc
        self._logger.warning(
            "%s: %s failed: the database is unreachable (%s)%s",
            self._place,
            what,
            _one_line(reason),
            since,
        )
        return True


def _one_line(reason: BaseException) -> str:
    text = str(reason).strip().splitlines()
    return f"{type(reason).__name__}: {text[0]}" if text else type(reason).__name__
