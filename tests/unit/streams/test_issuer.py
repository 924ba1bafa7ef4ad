"""Issuing tokens to accounts (streams/issuer.py): only what the rules let the
account do itself, only where tokens are honoured, and the tokens verify."""

from __future__ import annotations

import pytest

from chatgate.streams import tokens
from chatgate.streams.issuer import Refusal, TokenIssuer, TokenRefused
from chatgate.streams.rulebook import RuleBook

KEYS = {1: b"a" * 32, 2: b"b" * 32}
NOW = 1_800_000_000.5
RULES = [
    "publish,play live/alice user:alice@localhost",
    "play live/* token",
    "play live/* authenticated",
    "play staff/* group:staff",  # no token rule under staff/
]


def issuer(max_ttl: int = 3600) -> TokenIssuer:
    return TokenIssuer(RuleBook(RULES), KEYS, default_ttl=600, max_ttl=max_ttl, clock=lambda: NOW)


async def test_a_token_for_what_the_account_may_do_verifies_for_that_stream_only() -> None:
    issued = await issuer().issue("alice@localhost", frozenset(), "live/alice", "play")
    assert issued.expires_at == int(NOW) + 600
    assert len(issued.token) <= tokens.MAX_TOKEN_LENGTH

    def check(stream: str, action: str = "play") -> tokens.TokenVerdict:
        return tokens.verify(
            issued.token, KEYS, stream=stream, action=action, now=NOW, address=None
        )

    verdict = check("live/alice")
    assert verdict.valid and verdict.user == "alice@localhost" and verdict.key_id == 2
    assert check("live/bob").reason is tokens.TokenReason.WRONG_STREAM
    assert check("live/alice", "publish").reason is tokens.TokenReason.WRONG_ACTION


async def test_the_lifetime_is_cut_to_the_maximum_and_must_be_positive() -> None:
    issued = await issuer(max_ttl=900).issue(
        "bob@localhost", frozenset(), "live/x", "play", ttl=10**6
    )
    assert issued.expires_at == int(NOW) + 900
    with pytest.raises(TokenRefused) as refused:
        await issuer().issue("bob@localhost", frozenset(), "live/x", "play", ttl=0)
    assert refused.value.refusal is Refusal.INVALID


@pytest.mark.parametrize(
    ("account", "groups", "stream", "action", "refusal"),
    [
        ("bob@localhost", frozenset(), "live/alice", "publish", Refusal.NOT_GRANTED),
        ("bob@localhost", frozenset(), "other/x", "play", Refusal.NOT_GRANTED),
        ("bob@localhost", frozenset({"staff"}), "staff/meeting", "play", Refusal.NO_TOKENS),
        ("alice@localhost", frozenset(), "live/alice", "publish", Refusal.NO_TOKENS),
        ("alice@localhost", frozenset(), "live/../bob", "play", Refusal.INVALID),
        ("alice@localhost", frozenset(), "live/alice&name=bob", "play", Refusal.INVALID),
        ("alice@localhost", frozenset(), "live/alice", "delete", Refusal.INVALID),
    ],
)
async def test_refusals(
    account: str, groups: frozenset[str], stream: str, action: str, refusal: Refusal
) -> None:
    with pytest.raises(TokenRefused) as refused:
        await issuer().issue(account, groups, stream, action)
    assert refused.value.refusal is refusal


async def test_one_time_and_address_bound_tokens_say_so() -> None:
    issued = await issuer().issue(
        "bob@localhost", frozenset(), "live/x", "play", one_time=True, address="192.0.2.1"
    )
    verdict = tokens.verify(
        issued.token, KEYS, stream="live/x", action="play", now=NOW, address="192.0.2.1"
    )
    assert verdict.valid and verdict.one_time and issued.one_time
    other = tokens.verify(
        issued.token, KEYS, stream="live/x", action="play", now=NOW, address="192.0.2.2"
    )
    assert other.reason is tokens.TokenReason.WRONG_ADDRESS
    with pytest.raises(TokenRefused) as refused:
        await issuer().issue("bob@localhost", frozenset(), "live/x", "play", address="nope")
    assert refused.value.refusal is Refusal.INVALID


async def test_a_long_account_is_not_carried_but_still_gets_a_token() -> None:
    account = "a" * 60 + "@localhost"
    issued = await issuer().issue(account, frozenset(), "live/x", "play")
    verdict = tokens.verify(
        issued.token, KEYS, stream="live/x", action="play", now=NOW, address=None
    )
    assert verdict.valid and verdict.user is None
