"""A typed event bus: events are dataclasses, handlers declare how their results combine.

Run kinds (after ejabberd's run/run_fold and Prosody's fire_event, without strings):

- ``notify``: every handler runs; one handler's exception is logged and the rest still run.
- ``decide``: handlers run in priority order; the first non-None result wins (vetoes
  are results such as ``Deny(...)``, never mutations of a shared object).

Priority convention: higher runs first; 0 is the default; built-ins use multiples of 10
so a third party can slot in between.  Handlers may be plain functions or coroutines;
``notify``/``decide`` await coroutine results.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog

log = logging.getLogger(__name__)
#: handlers that failed because the database is out of reach
_OUTAGE = OutageLog(log, "event handlers")

E = TypeVar("E")
Handler = Callable[[Any], Any | Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Subscription:
    event: type
    handler: Handler
    priority: int


class Hooks:
    """Handlers per event class, kept sorted by priority (higher first)."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Subscription]] = defaultdict(list)

    def add(self, event: type, handler: Handler, priority: int = 0) -> Subscription:
        sub = Subscription(event, handler, priority)
        handlers = self._handlers[event]
        handlers.append(sub)
        handlers.sort(key=lambda s: -s.priority)
        return sub

    def remove(self, sub: Subscription) -> None:
        handlers = self._handlers.get(sub.event)
        if handlers and sub in handlers:
            handlers.remove(sub)

    def has(self, event: type) -> bool:
        return bool(self._handlers.get(event))

    def fire(self, event: object) -> Awaitable[None] | None:
        """`notify` without a task when every handler is synchronous.

        Handlers run now, in priority order; those that return an awaitable are
        awaited, in that order, by the awaitable returned here (None when there
        is nothing to await).  For lifecycle events on the login path, where a
        task per event costs more than the handlers themselves.
        """
        pending: list[tuple[Subscription, Awaitable[Any]]] | None = None
        for sub in tuple(self._handlers.get(type(event), ())):
            try:
                result = sub.handler(event)
            except Exception as exc:
                _handler_failed(sub, event, exc)
                continue
            if inspect.isawaitable(result):
                if pending is None:
                    pending = []
                pending.append((sub, result))
        return None if pending is None else self._await_all(pending, event)

    async def _await_all(
        self, pending: list[tuple[Subscription, Awaitable[Any]]], event: object
    ) -> None:
        for sub, awaitable in pending:
            try:
                await awaitable
            except Exception as exc:
                _handler_failed(sub, event, exc)

    async def notify(self, event: object) -> None:
        for sub in tuple(self._handlers.get(type(event), ())):
            try:
                result = sub.handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                _handler_failed(sub, event, exc)

    async def decide(self, event: object) -> Any:
        for sub in tuple(self._handlers.get(type(event), ())):
            result = sub.handler(event)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return None


def _handler_failed(sub: Subscription, event: object, exc: Exception) -> None:
    """Log a `notify` handler's failure: with its traceback, except when the database
    is out of reach (one line now and then: `OutageLog`)."""
    if isinstance(exc, StorageUnavailable):
        _OUTAGE.failed(f"handler {sub.handler!r} for {type(event).__name__}", exc)
    else:
        log.error("handler %r failed for %s", sub.handler, type(event).__name__, exc_info=exc)
