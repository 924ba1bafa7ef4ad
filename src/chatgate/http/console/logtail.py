"""The server log's tail for the console: a bounded in-memory ring of records.

`LogTail` is a `logging.Handler` the console installs on the root logger while
the HTTP listener runs (and removes at its stop).  It keeps the last `capacity`
records already formatted (each message cut at `MAX_MESSAGE` characters), so a
page reads them without touching the logging machinery; older ones fall off.
It never writes anywhere, and records below the root logger's level never
reach it (the operator's `log_level` decides).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

CAPACITY = 500
#: characters kept of one record's message (a record quoting a client's request
#: line or header could be kilobytes; the ring stays under CAPACITY * this)
MAX_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class LogLine:
    at: float
    level: str
    logger: str
    message: str


class LogTail(logging.Handler):
    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[LogLine] = collections.deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if len(message) > MAX_MESSAGE:
                message = message[:MAX_MESSAGE] + "… (cut)"
            if record.exc_info and record.exc_info[0] is not None:
                message += " (" + record.exc_info[0].__name__ + ")"
            self.lines.append(LogLine(record.created, record.levelname, record.name, message))
        except Exception:
            self.handleError(record)

    def tail(self, count: int = CAPACITY, min_level: int = logging.NOTSET) -> list[LogLine]:
        """The newest `count` lines at or above `min_level`, newest last."""
        chosen = [line for line in self.lines if logging.getLevelName(line.level) >= min_level]
        return chosen[-count:]

    def install(self) -> None:
        logging.getLogger().addHandler(self)

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
