"""One-time tokens: the first use wins, its own renewals pass, nobody else's;
atomic on the database (concurrent claims from several "processes"), bounded
in memory."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.storage.database import Database
from chatgate.streams.one_time import DatabaseOneTimeTokens, LocalOneTimeTokens
from chatgate.streams.stores import OneTimeTokens

EXPIRES = 1_800_000_000


@pytest.fixture(params=["memory", "database"])
def tokens(request: pytest.FixtureRequest, db: Database) -> OneTimeTokens:
    if request.param == "memory":
        return LocalOneTimeTokens()
    return DatabaseOneTimeTokens(db.stream_token_uses)


async def test_the_first_use_wins_and_may_renew(tokens: OneTimeTokens) -> None:
    assert await tokens.claim("tok-1", "client-6", "nginx-1", EXPIRES)
    assert await tokens.claim("tok-1", "client-6", "nginx-1", EXPIRES)  # its renewal
    assert not await tokens.claim("tok-1", "client-7", "nginx-1", EXPIRES)  # another client
    assert not await tokens.claim("tok-1", "client-6", "nginx-2", EXPIRES)  # another server
    assert await tokens.claim("tok-2", "client-7", "nginx-1", EXPIRES)  # another token


async def test_concurrent_claims_have_one_winner(tokens: OneTimeTokens) -> None:
    results = await asyncio.gather(
        *(tokens.claim("tok", f"client-{n}", "nginx-1", EXPIRES) for n in range(20))
    )
    assert results.count(True) == 1


async def test_concurrent_claims_from_several_processes_have_one_winner(db_url: str) -> None:
    databases = [await Database.open(db_url) for _ in range(4)]
    try:
        stores = [DatabaseOneTimeTokens(d.stream_token_uses) for d in databases]
        results = await asyncio.gather(
            *(
                store.claim("tok", f"client-{n}-{m}", "nginx-1", EXPIRES)
                for n, store in enumerate(stores)
                for m in range(5)
            )
        )
    finally:
        for d in databases:
            await d.close()
    assert results.count(True) == 1


async def test_expired_tokens_are_forgotten(tokens: OneTimeTokens) -> None:
    assert await tokens.claim("old", "1", "n", 1000)
    assert await tokens.claim("edge", "1", "n", 1001)
    assert await tokens.claim("new", "1", "n", 2000)
    assert await tokens.forget_expired(1000.5) == 1  # "edge" is valid until 1001
    assert await tokens.forget_expired(1001) == 1  # valid while now < expires_at
    assert await tokens.forget_expired(1001) == 0
    assert not await tokens.claim("new", "2", "n", 2000)  # still remembered


@pytest.mark.parametrize(
    ("token_id", "client_id", "node", "expires_at"),
    [
        ("", "1", "n", EXPIRES),
        ("t" * 65, "1", "n", EXPIRES),
        ("with space", "1", "n", EXPIRES),
        ("t", "", "n", EXPIRES),
        ("t", "1", "", EXPIRES),
        ("t", "1", "n\x00", EXPIRES),
        ("t", "1", "n", -1),
        ("t", "1", "n", True),
        ("t", "1", "n", 1.5),
    ],
)
async def test_invalid_claims_are_refused_and_not_stored(
    tokens: OneTimeTokens, token_id: str, client_id: str, node: str, expires_at: int
) -> None:
    assert not await tokens.claim(token_id, client_id, node, expires_at)
    assert await tokens.forget_expired(2**40) == 0


async def test_the_local_store_is_bounded_and_fails_closed() -> None:
    now = [1500.0]
    tokens = LocalOneTimeTokens(3, clock=lambda: now[0])
    assert await tokens.claim("a", "1", "n", 1000)
    assert await tokens.claim("b", "1", "n", 2000)
    assert await tokens.claim("c", "1", "n", 3000)
    assert await tokens.claim("d", "1", "n", 3000)  # full: "a" had expired, and goes
    assert len(tokens) == 3
    assert not await tokens.claim("e", "1", "n", 3000)  # full of live tokens: refused
    assert await tokens.claim("b", "1", "n", 2000)  # a known one still renews
    assert not await tokens.claim("b", "2", "n", 2000)  # and is not forgotten for another
    now[0] = 2500.0
    assert await tokens.claim("e", "1", "n", 3000)
    assert len(tokens) == 3
