"""Claims racing from several processes (separate `Database` objects, each with its
own engine and connections, as separate server processes have): a single-use
invitation is redeemed once, a name becomes an account or a held registration but
never both, and an approval happens once.

On SQLite every write transaction holds the file's write lock from BEGIN; on
PostgreSQL (READ COMMITTED) the repositories lock the invitation row and take a
per-name advisory lock, and these are the tests that show it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountExists
from chatgate.storage.repositories.invitations import InviteUnavailable
from chatgate.storage.repositories.legacy import LegacySecrets

from .conftest import rows

PROCESSES = 4
ROUNDS = 5


@pytest.fixture
async def processes(db: Database, db_url: str) -> AsyncIterator[list[Database]]:
    """`db` and three more openings of its database."""
    others = [await Database.open(db_url) for _ in range(PROCESSES - 1)]
    try:
        yield [db, *others]
    finally:
        for other in others:
            await other.close()


async def _outcome(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except AccountExists:
        return "exists"
    except InviteUnavailable:
        return "unavailable"
    return "ok"


async def test_a_single_use_invitation_makes_one_account(
    processes: list[Database], keys: dict[str, ScramKeys]
) -> None:
    db = processes[0]
    for n in range(ROUNDS):
        token = f"token-{n}"
        assert await db.invitations.add_invite(token, "localhost", uses=1)
        outcomes = await asyncio.gather(
            *(
                _outcome(
                    p.registration.create_account(
                        f"user{n}x{i}", "localhost", keys, LegacySecrets(), {}, invite=token
                    )
                )
                for i, p in enumerate(processes)
            )
        )
        assert sorted(outcomes) == ["ok"] + ["unavailable"] * (PROCESSES - 1), n
    assert await db.accounts.count() == ROUNDS
    assert await rows(db, "SELECT min(uses_left), max(uses_left) FROM registration_invites") == [
        (0, 0)
    ]


async def test_a_name_is_an_account_or_held_never_both(
    processes: list[Database], keys: dict[str, ScramKeys]
) -> None:
    db = processes[0]
    for n in range(ROUNDS):
        name = f"contested{n}"
        calls = [
            p.registration.create_account(name, "localhost", keys, LegacySecrets(), {})
            if i % 2 == 0
            else p.pending_registrations.create_pending(
                name, "localhost", keys, LegacySecrets(), {}
            )
            for i, p in enumerate(processes)
        ]
        outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
        assert sorted(outcomes) == ["exists"] * (PROCESSES - 1) + ["ok"], n
        account = await db.accounts.exists(name, "localhost")
        held = await db.pending_registrations.held_scram_keys(name, "localhost") is not None
        assert account != held, n


async def test_an_approval_happens_once(
    processes: list[Database], keys: dict[str, ScramKeys]
) -> None:
    db = processes[0]
    for n in range(ROUNDS):
        name = f"held{n}"
        await db.pending_registrations.create_pending(
            name, "localhost", keys, LegacySecrets(), {"email": f"{n}@x.org"}
        )
        approved = await asyncio.gather(
            *(p.pending_registrations.approve(name, "localhost") for p in processes)
        )
        assert sorted(approved) == [False] * (PROCESSES - 1) + [True], n
        assert await db.accounts.exists(name, "localhost")
        assert await db.registration.fields((name, "localhost")) == {"email": f"{n}@x.org"}
    assert await db.pending_registrations.pending() == []
