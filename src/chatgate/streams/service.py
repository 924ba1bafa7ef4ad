"""The stream authority as the running server holds it: the state opened on the
server's database, the authority the hooks ask, the issuer the XMPP IQ asks,
and the keeper that saves the live registry.

Made once at start when ``[streams] enabled`` (`Server.start`) and closed at
stop, after the HTTP listener, so the last hooks are recorded and saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatgate.auth.internal import STAMP_NAME as CREDENTIALS_STAMP
from chatgate.auth.password_memo import PasswordMemo
from chatgate.jid import JID
from chatgate.streams.authority import StreamAuthority
from chatgate.streams.issuer import TokenIssuer
from chatgate.streams.live import LiveLimits, LiveStreams, LiveUnavailable, LocalLiveStreams
from chatgate.streams.options import StreamsOptions
from chatgate.streams.rulebook import RuleBook
from chatgate.streams.signal import STREAMS_STAMP, StampSignal
from chatgate.streams.snapshot import SnapshotKeeper
from chatgate.streams.state import StreamState, open_stream_state

if TYPE_CHECKING:
    from pathlib import Path

    from chatgate.auth.gate import LoginGate
    from chatgate.auth.provider import CredentialProvider
    from chatgate.cluster.node import ClusterNode
    from chatgate.storage.database import Database
    from chatgate.streams.signal import SignalFactory

__all__ = ["ConfiguredGroups", "StreamService"]

log = logging.getLogger(__name__)

#: How many renewal periods a session may miss before it is forgotten.
MISSED_UPDATES = 3
#: Seconds between two sweeps of expired live sessions and used one-time tokens.
SWEEP_INTERVAL = 30.0


class ConfiguredGroups:
    """`Groups` from ``[streams.groups]``: group name -> member accounts."""

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        members: dict[str, set[str]] = {}
        for group, accounts in groups.items():
            for account in accounts:
                members.setdefault(str(JID.parse(account).bare), set()).add(group)
        self._of = {account: frozenset(names) for account, names in members.items()}

    async def of(self, account: str) -> frozenset[str]:
        return self._of.get(account, frozenset())


@dataclass
class StreamService:
    state: StreamState
    live: LiveStreams
    authority: StreamAuthority
    issuer: TokenIssuer
    groups: ConfiguredGroups
    #: saves the in-process registry; None when the registry is shared (Redis)
    keeper: SnapshotKeeper | None
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    async def open(
        cls,
        options: StreamsOptions,
        *,
        domain: str,
        db: Database,
        data_dir: Path,
        gate: LoginGate,
        provider: CredentialProvider,
        cluster: ClusterNode | None = None,
    ) -> StreamService:
        """The service on the server's database, login gate and credential provider.
        On a node of a cluster (`cluster`) the live registry is the cluster's
        (Redis), with no snapshot (Redis outlives the nodes), and the keys' and
        rules' change signal reaches the other nodes (`cluster/signal.py`)."""
        signals: SignalFactory = StampSignal
        stale = (
            None if options.update_interval is None else options.update_interval * MISSED_UPDATES
        )
        limits = LiveLimits(takeover=options.takeover, stale_after=stale)
        live: LiveStreams
        keeper: SnapshotKeeper | None = None
        if cluster is not None:
            from chatgate.cluster.live_streams import RedisLiveStreams
            from chatgate.cluster.signal import StreamSignals

            signals = StreamSignals(cluster)
            state = await open_stream_state(db, data_dir, signals=signals)
            live = RedisLiveStreams(cluster.redis, cluster.key("live", ""), limits)
        else:
            state = await open_stream_state(db, data_dir)
            local = live = LocalLiveStreams(limits)
            keeper = SnapshotKeeper(local, state.snapshot)
            await keeper.start()
        # Its own signal: each reader of a stamp tracks what it has seen.
        rules = RuleBook(options.rules, state.rules, signals(data_dir, STREAMS_STAMP))
        groups = ConfiguredGroups(options.groups)
        authority = StreamAuthority(
            domain=domain,
            gate=gate,
            provider=provider,
            rules=rules,
            live=live,
            keys=state.keys,
            token_keys=state.token_keys,
            one_time=state.one_time,
            revoked=state.revoked,
            # forgotten whenever any credentials change, here or in another process
            memo=PasswordMemo(StampSignal(data_dir, CREDENTIALS_STAMP).changed),
            groups=groups,
        )
        issuer = TokenIssuer(
            rules,
            state.token_keys,
            default_ttl=options.token_default_ttl,
            max_ttl=options.token_max_ttl,
        )
        service = cls(state, live, authority, issuer, groups, keeper)
        service._sweeper = asyncio.get_running_loop().create_task(service._sweep_forever())
        return service

    async def sweep(self) -> None:
        """Forget live sessions past their grace (restored and never confirmed, or
        without renewals) and the ids of used or revoked tokens that expired."""
        now = time.time()
        ended = await self.live.expire(now)
        forgotten = await self.state.one_time.forget_expired(now)
        forgotten += await self.state.revoked.forget_expired(now)
        if ended or forgotten:
            log.info(
                "streams: %d live sessions expired, %d used or revoked tokens forgotten",
                len(ended),
                forgotten,
            )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except LiveUnavailable as exc:  # a shared registry's Redis: try next time
                log.warning("streams: sweep skipped: %s", exc)
            except Exception:  # the database may be away for a moment: try next time
                log.exception("streams: sweep failed")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.keeper is not None:
            await self.keeper.stop()
