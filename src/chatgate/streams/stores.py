"""Where the stream authority keeps its state: the interfaces.

chatgate will run as several processes and nodes, so every piece of the
authority's state sits behind one of these protocols.  Each has an in-process
implementation (tests, one process) and one on the database (`storage/`); a
shared store (PostgreSQL, Redis) implements the same calls.

- `StreamKeyStore`: per-account stream keys.  A key is looked up by a keyed hash
  (one indexed read), and kept encrypted at rest for the one adapter that must
  send it back (Wowza's token provider).
- `RuleStore`: the rules added at run time (``chatgate streams rules add``), on
  top of the ones in the configuration file.
- `OneTimeTokens`: ids of one-time tokens already used, until they expire.
- `RevokedTokens`: ids of tokens revoked before they expire, until then.
- `LiveSnapshot`: the live registry's sessions, saved so that a restart of
  chatgate does not forget who is publishing (they come back unconfirmed and
  must be confirmed by the media server's next callback, `live.py`).
- `ChangeSignal`: "the keys or rules changed": the process that changed them
  raises it, the others drop what they cached.  A stamp file in the data
  directory today (one host); Redis pub/sub when clustered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatgate.streams.live import Session

__all__ = [
    "ChangeSignal",
    "KeyInfo",
    "KeyOwner",
    "LiveSnapshot",
    "OneTimeTokens",
    "RevokedTokens",
    "RuleStore",
    "StreamKeyStore",
    "StreamKeys",
]


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Whose stream key it is: the account (``localpart@domain``) and the key's
    id (short public text, logged and recorded with live sessions, so revoking
    the key ends them)."""

    account: str
    key_id: str


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A row of a key listing: never the key itself."""

    account: str
    key_id: str
    created_at: float
    """Unix seconds."""


class StreamKeys(Protocol):
    """What the authority asks of stream keys on every hook call."""

    async def owner(self, key: str) -> KeyOwner | None:
        """The key's owner, or None for a key nobody has (any text: never raises)."""
        ...

    async def key_of(self, account: str) -> str | None:
        """The account's current key in clear (for Wowza's token provider only)."""
        ...


class StreamKeyStore(StreamKeys, Protocol):
    """Stream keys, also as the CLI and the REST API manage them."""

    async def issue(self, account: str) -> str:
        """A new random key for `account`, replacing (revoking) any it had."""
        ...

    async def put(self, account: str, key: str) -> KeyOwner:
        """Set `account`'s key to a given one (an imported Wowza
        ``publish.password`` entry); `ValueError` for a key unfit as one."""
        ...

    async def revoke(self, account: str) -> KeyOwner | None:
        """Remove `account`'s key; the removed key's owner, or None if it had none."""
        ...

    async def listing(self) -> list[KeyInfo]:
        """Every account that has a key, by account."""
        ...


class RuleStore(Protocol):
    """Rules added at run time, in their text form (``"publish,play live/* token"``)."""

    async def rules(self) -> list[str]:
        """Every stored rule, in the order they were added."""
        ...

    async def add(self, rule: str) -> bool:
        """Store a rule (already validated by the caller); False if it was there."""
        ...

    async def remove(self, rule: str) -> bool:
        """Remove a rule; False if there was no such rule."""
        ...


class OneTimeTokens(Protocol):
    """The ids of one-time tokens that were used, kept until they expire."""

    async def claim(self, token_id: str, client_id: str, node: str, expires_at: int) -> bool:
        """Whether this use of the token may go ahead: True for its first use, and
        again for the same client on the same media-server node (a renewal or a
        retried hook of that one session); False for any other client."""
        ...

    async def forget_expired(self, now: float) -> int:
        """Drop the ids of tokens expired before `now`; how many were dropped."""
        ...


class RevokedTokens(Protocol):
    """Signed tokens revoked before they expire, remembered until then."""

    async def revoke(self, token_id: str, expires_at: int) -> bool:
        """Revoke a token by its id; False if it was revoked already."""
        ...

    async def is_revoked(self, token_id: str) -> bool:
        """Asked for every valid token: cheap (no database read in the common case)."""
        ...

    async def forget_expired(self, now: float) -> int:
        """Drop revocations of tokens expired before `now`; how many."""
        ...


class LiveSnapshot(Protocol):
    """The live registry's sessions as last saved (rows of `live.Session`)."""

    async def save(self, sessions: Sequence[Session]) -> None:
        """Replace what is saved by `sessions`."""
        ...

    async def load(self) -> list[Session]:
        """What was saved."""
        ...


class ChangeSignal(Protocol):
    """A cross-process "something changed" for one kind of state."""

    def raise_(self) -> None:
        """Tell every process (this one included) that the state changed."""
        ...

    def changed(self) -> bool:
        """True once after each change since the last call (cheap: called per hook)."""
        ...
