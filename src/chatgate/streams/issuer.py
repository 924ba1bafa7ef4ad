"""Issuing signed stream tokens to accounts: what the XMPP IQ (and later the REST
API) call, so a logged-in chat client fetches a play or publish token for a
media URL without ever putting its password there.

An account gets a token only for what the rules already let it do itself, and
only where the rules honour tokens (a ``token`` grantee): a token never widens
anyone's rights, and a token that no media server would accept is refused
rather than issued.  The token carries the account (when it fits) so the
authority's log says whose token played; it is signed with the newest key.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chatgate.streams import tokens
from chatgate.streams.policy import InvalidStreamName, Subject, check_stream_name
from chatgate.streams.rulebook import RuleBook
from chatgate.streams.tokens import StreamAction

__all__ = ["IssuedToken", "Refusal", "TokenIssuer", "TokenRefused"]


class Refusal(enum.Enum):
    """Why no token was issued (each maps to one XMPP error condition)."""

    INVALID = "invalid request"  # bad stream name, action, lifetime or address
    NOT_GRANTED = "the rules do not let this account do that"
    NO_TOKENS = "the rules do not honour tokens on this stream"


class TokenRefused(Exception):
    def __init__(self, refusal: Refusal, detail: str = "") -> None:
        super().__init__(detail or refusal.value)
        self.refusal = refusal
        self.detail = detail or refusal.value


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    stream: str
    action: StreamAction
    expires_at: int
    one_time: bool


class TokenIssuer:
    """Tokens for accounts, within the rules (module docstring).  `token_keys`
    maps key ids to keys; the highest id signs."""

    def __init__(
        self,
        rules: RuleBook,
        token_keys: Mapping[int, bytes],
        *,
        default_ttl: int,
        max_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.token_keys = dict(token_keys)
        self.key_id = max(self.token_keys)
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.clock = clock

    async def issue(
        self,
        account: str,
        groups: frozenset[str],
        stream: str,
        action: str,
        *,
        ttl: int | None = None,
        address: str | None = None,
        one_time: bool = False,
    ) -> IssuedToken:
        """A token for `account` (a prepared bare JID, in `groups`) to do `action` on
        `stream`, valid `ttl` seconds (the default when None; at most `max_ttl`,
        longer is cut to it).  Raises `TokenRefused`."""
        try:
            act = StreamAction(action)
            check_stream_name(stream)
        except (ValueError, InvalidStreamName):
            raise TokenRefused(Refusal.INVALID, "a stream name and publish or play") from None
        if ttl is None:
            ttl = self.default_ttl
        if ttl <= 0:
            raise TokenRefused(Refusal.INVALID, "the lifetime must be positive")
        rules = await self.rules.current()
        if not rules.decide(Subject.for_account(account, groups), stream, act).allowed:
            raise TokenRefused(Refusal.NOT_GRANTED)
        if not rules.decide(Subject.token_bearer(stream, act), stream, act).allowed:
            raise TokenRefused(Refusal.NO_TOKENS)
        expires_at = math.floor(self.clock()) + min(ttl, self.max_ttl)
        user = account if len(account.encode("utf-8")) <= tokens.MAX_USER_BYTES else None
        try:
            token = tokens.issue(
                self.token_keys,
                self.key_id,
                stream,
                act,
                expires_at,
                address=address,
                user=user,
                one_time=one_time,
            )
        except ValueError as exc:  # an address that is not one
            raise TokenRefused(Refusal.INVALID, str(exc)) from None
        return IssuedToken(token, stream, act, expires_at, one_time)
