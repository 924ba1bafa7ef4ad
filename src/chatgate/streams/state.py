"""The stream authority's state on the server's database, opened in one call.

`open_stream_state` is what the server (`streams/service.py`) and the
``chatgate streams`` commands call: the same stores on the same database, so a
key issued or a rule added by the command is what the running server finds
(its caches dropped through the stamp file ``data_dir/streams.stamp``).

Signals: each store that caches (the keys) watches the stamp with its own
`StampSignal`; `StreamState.signal` is one more watcher of the same file, for
one consumer (a `RuleBook`).  `changed` is true once per change *for each
watcher*, so give a second consumer its own (``StampSignal(data_dir)``).  The
keys also watch the credentials stamp (``credentials.stamp``, bumped when an
account is deleted): a deleted account's key goes with it (ON DELETE CASCADE),
and so must its cached owner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from chatgate.auth.internal import STAMP_NAME as CREDENTIALS_STAMP
from chatgate.streams.keys import DatabaseStreamKeys
from chatgate.streams.one_time import DatabaseOneTimeTokens
from chatgate.streams.revocations import DatabaseRevokedTokens
from chatgate.streams.rule_store import DatabaseRuleStore
from chatgate.streams.signal import STREAMS_STAMP, AnySignal, StampSignal
from chatgate.streams.snapshot import DatabaseLiveSnapshot
from chatgate.streams.stores import (
    ChangeSignal,
    LiveSnapshot,
    OneTimeTokens,
    RevokedTokens,
    RuleStore,
    StreamKeyStore,
)

if TYPE_CHECKING:
    from chatgate.storage.database import Database
    from chatgate.streams.signal import SignalFactory

__all__ = ["TOKEN_KEY_SECRET", "StreamState", "open_stream_state"]

#: The installation secret stream tokens are signed with, key id 1 (the name
#: `http/listener.py` used first).
TOKEN_KEY_SECRET: Final = "stream-token-key-1"


@dataclass
class StreamState:
    """Every store of the stream authority's state (see `stores.py`)."""

    keys: StreamKeyStore
    rules: RuleStore
    one_time: OneTimeTokens
    revoked: RevokedTokens
    snapshot: LiveSnapshot
    signal: ChangeSignal
    #: token key id -> key (`tokens.issue`/`verify`); key 1 only for now
    token_keys: dict[int, bytes]


async def open_stream_state(
    db: Database, data_dir: Path, *, signals: SignalFactory = StampSignal
) -> StreamState:
    """The stores on `db`, their installation secrets made on first use, their
    change signal the stamp file in `data_dir` (created when first raised), or
    what `signals` makes of it (on a cluster node: the stamp and a Redis channel,
    so that a key revoked or a rule added on one node reaches every node)."""
    signal = signals(data_dir, STREAMS_STAMP)
    keys_signal = AnySignal(signal.watcher(), StampSignal(data_dir, CREDENTIALS_STAMP))
    keys = await DatabaseStreamKeys.open(db.stream_keys, db.secrets, keys_signal)
    token_key = await db.secrets.get_or_create(TOKEN_KEY_SECRET, os.urandom(32))
    return StreamState(
        keys=keys,
        rules=DatabaseRuleStore(db.stream_rules, signal.watcher()),
        one_time=DatabaseOneTimeTokens(db.stream_token_uses),
        revoked=DatabaseRevokedTokens(db.stream_token_revocations, signal.watcher()),
        snapshot=DatabaseLiveSnapshot(db.live_sessions),
        signal=signal,
        token_keys={1: token_key},
    )
