"""Used one-time tokens (`stores.OneTimeTokens`): a one-time token opens one
session, on one media server, for one client.

The first `claim` of a token id records who used it (client id and media-server
node) until the token expires; a claim by the same client on the same node
(its renewals, a retried hook) passes again, any other fails.  After expiry the
token itself no longer verifies, so the record can go (`forget_expired`).

`DatabaseOneTimeTokens` is shared by every process on the database: the claim
is one ``INSERT ... ON CONFLICT DO NOTHING`` and a read of the row that won, so
of two concurrent claims exactly one client gets it.  `LocalOneTimeTokens` is
the same in one process, bounded in entries: when full and nothing has
expired, a new token is refused (fail closed: forgetting a live one would let
it be used twice).

Ids, client ids and nodes are 1 to 64 printable ASCII characters (as in
`live.py`); anything else is refused, never stored.
"""

from __future__ import annotations

import heapq
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from chatgate.storage.repositories.streams import TokenUseRepository

__all__ = ["DEFAULT_MAX_TOKENS", "DatabaseOneTimeTokens", "LocalOneTimeTokens"]

log = logging.getLogger(__name__)

#: Used tokens a `LocalOneTimeTokens` remembers at once (about 300 bytes each).
DEFAULT_MAX_TOKENS: Final = 100_000

_ID_TEXT: Final = re.compile(r"[\x21-\x7e]{1,64}")
_MAX_EXPIRES_AT: Final = 2**63 - 1


def _valid(token_id: object, client_id: object, node: object, expires_at: object) -> bool:
    return (
        isinstance(token_id, str)
        and isinstance(client_id, str)
        and isinstance(node, str)
        and _ID_TEXT.fullmatch(token_id) is not None
        and _ID_TEXT.fullmatch(client_id) is not None
        and _ID_TEXT.fullmatch(node) is not None
        and isinstance(expires_at, int)
        and not isinstance(expires_at, bool)
        and 0 <= expires_at <= _MAX_EXPIRES_AT
    )


class LocalOneTimeTokens:
    """`OneTimeTokens` in this process, at most `max_entries` remembered."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_TOKENS, *, clock: Callable[[], float] = time.time
    ) -> None:
        """`clock` (Unix seconds) is read only when full, to forget expired tokens first."""
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._clock = clock
        self._used: dict[str, tuple[str, str, int]] = {}  # id -> (client, node, expires_at)
        self._expiry: list[tuple[int, str]] = []  # heap of (expires_at, id)

    def __len__(self) -> int:
        return len(self._used)

    async def claim(self, token_id: str, client_id: str, node: str, expires_at: int) -> bool:
        if not _valid(token_id, client_id, node, expires_at):
            return False
        held = self._used.get(token_id)
        if held is not None:
            return held[0] == client_id and held[1] == node
        if len(self._used) >= self.max_entries:
            self._forget(self._clock())
            if len(self._used) >= self.max_entries:
                log.warning("one-time tokens: %d in use, refusing another", len(self._used))
                return False
        self._used[token_id] = (client_id, node, expires_at)
        heapq.heappush(self._expiry, (expires_at, token_id))
        return True

    async def forget_expired(self, now: float) -> int:
        return self._forget(now)

    def _forget(self, now: float) -> int:
        """Drop the tokens with ``expires_at <= now`` (a token is valid while
        ``now < expires_at``); oldest first, so the cost is what is dropped."""
        expiry, used = self._expiry, self._used
        dropped = 0
        while expiry and expiry[0][0] <= now:
            _, token_id = heapq.heappop(expiry)
            del used[token_id]
            dropped += 1
        return dropped


class DatabaseOneTimeTokens:
    """`OneTimeTokens` on the database (``stream_token_uses``)."""

    def __init__(self, repository: TokenUseRepository) -> None:
        self._repository = repository

    async def claim(self, token_id: str, client_id: str, node: str, expires_at: int) -> bool:
        if not _valid(token_id, client_id, node, expires_at):
            return False
        first = await self._repository.claim(token_id, client_id, node, expires_at)
        return first == (client_id, node)

    async def forget_expired(self, now: float) -> int:
        # Whole seconds: a token expired at or before floor(now) is past.
        return await self._repository.forget_expired(int(now // 1))
