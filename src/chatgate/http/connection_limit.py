"""Open HTTP(S) connections per peer address, and refusals logged once per address
per interval.

Why: an HTTP connection lives until its keep-alive timeout, and nothing else
bounds how many one address holds: one address could take every file
descriptor of the process.  On the plain port the listener's lane
(`lane.py`) counts each connection as it is accepted; the HTTPS site
(`tls.py`) counts in its own protocol, from the TCP accept, handshake included.

The address is the TCP peer's: connections through a reverse proxy all count
for the proxy (raise `[http] max_connections_per_address` behind one).

Must not: do anything per request (only when a connection opens or closes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from chatgate.config import Config

log = logging.getLogger(__name__)

#: seconds between two log lines about the same address's refusals
REFUSAL_LOG_INTERVAL = 60.0
#: addresses remembered by a RefusalLog before the quiet ones are forgotten
_MAX_REMEMBERED = 10_000


class RefusalLog:
    """Logs a refusal the first time an address meets it, then once per interval with
    how many were refused meanwhile: a flood makes a few lines, not thousands."""

    __slots__ = ("_clock", "_interval", "_log", "_message", "_seen")

    def __init__(
        self,
        message: str,
        interval: float = REFUSAL_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._log = logger
        #: %-format with (address, refusals since the last line, extra...)
        self._message = message
        self._interval = interval
        self._clock = clock
        #: address -> [when last logged, refusals not logged since]
        self._seen: dict[str, list[float]] = {}

    def refused(self, address: str, *extra: object) -> None:
        now = self._clock()
        seen = self._seen.get(address)
        if seen is not None and now - seen[0] < self._interval:
            seen[1] += 1
            return
        count = 1 + (int(seen[1]) if seen is not None else 0)
        if seen is None and len(self._seen) >= _MAX_REMEMBERED:
            self._forget(now)
        self._seen[address] = [now, 0]
        self._log.warning(self._message, address, count, *extra)

    def _forget(self, now: float) -> None:
        for address in [a for a, (t, _) in self._seen.items() if now - t >= self._interval]:
            del self._seen[address]
        if len(self._seen) >= _MAX_REMEMBERED:
            self._seen.clear()


class AddressCounter:
    """Open connections per peer address, at most `limit` each."""

    __slots__ = ("_counts", "_log", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._log = RefusalLog(
            "HTTP: refused connections from %s (%d since the last line): "
            "more than %d open (max_connections_per_address)"
        )

    def acquire(self, address: str) -> bool:
        """Count a new connection; False (and nothing counted) past the limit."""
        count = self._counts.get(address, 0)
        if count >= self.limit:
            self._log.refused(address, self.limit)
            return False
        self._counts[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._counts.get(address, 0) - 1
        if count > 0:
            self._counts[address] = count
        else:
            self._counts.pop(address, None)

    def open(self, address: str) -> int:
        """Connections open from `address` (for tests)."""
        return self._counts.get(address, 0)


def shares_ports(config: Config) -> bool:
    """Whether the HTTP(S) ports are bound with SO_REUSEPORT, like the c2s listeners:
    when this process is one of several on the same ports (`chatgate serve --workers`,
    or nodes started by hand with `[[listeners]] reuse_port`), every one of them must
    set it, or the second fails with "address in use".  `Config` refuses `reuse_port`
    without `[cluster] enabled`, so this is never true for a lone process."""
    return config.cluster.enabled and any(listener.reuse_port for listener in config.listeners)


def peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else "-"


class FactoryTCPSite(web.TCPSite):
    """aiohttp's plain TCP site, serving the protocols `factory` makes (the
    listener's lane, `lane.py`, which counts its connections and hands
    aiohttp the requests it does not answer) instead of aiohttp's own."""

    __slots__ = ("_factory",)

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._factory = factory

    async def start(self) -> None:
        await web.BaseSite.start(self)  # what TCPSite.start does, with our factory
        self._server = await asyncio.get_running_loop().create_server(
            self._factory,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
