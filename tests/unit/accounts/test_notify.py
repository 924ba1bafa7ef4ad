"""LocalCredentialsChanged: a change reaches this process's provider at once, and the
other processes on the data directory through the credentials stamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.accounts import AccountService, LocalCredentialsChanged
from chatgate.auth import internal
from chatgate.auth.internal import (
    ACCOUNT_LOCKED,
    AWAITING_APPROVAL,
    InternalProvider,
    stamp_path,
)
from chatgate.storage.database import Database

from .conftest import RULES

ALICE = ("alice", "localhost")


def stamp(data_dir: Path) -> bytes | None:
    path = stamp_path(data_dir)
    return path.read_bytes() if path.exists() else None


async def test_the_server_learns_its_own_changes_at_once(db: Database, tmp_path: Path) -> None:
    provider = InternalProvider(db.accounts, cache_size=10, data_dir=tmp_path)
    await provider.track_pending(db.pending_registrations)
    changed = LocalCredentialsChanged(
        tmp_path,
        lambda domain: provider if domain == "localhost" else None,
        announce_new_names=False,
    )
    service = AccountService(db, RULES, changed)
    await provider.warm()
    assert provider.complete

    await service.create(*ALICE, "correct horse")
    assert stamp(tmp_path) is None  # a new name: nobody else caches names
    assert await provider.verify_password(*ALICE, "correct horse")  # complete, yet seen

    await service.lock(*ALICE)
    assert stamp(tmp_path) is not None
    assert await provider.verify_password_or_held(*ALICE, "correct horse") == (
        False,
        ACCOUNT_LOCKED,
    )
    await service.unlock(*ALICE)
    assert await provider.verify_password(*ALICE, "correct horse")

    await service.hold("newbie", "localhost", "newbie-pw-1")
    assert provider.pending == 1
    assert await provider.verify_password_or_held("newbie", "localhost", "newbie-pw-1") == (
        False,
        AWAITING_APPROVAL,
    )
    await service.approve("newbie", "localhost")
    assert provider.pending == 0
    assert await provider.verify_password("newbie", "localhost", "newbie-pw-1")

    await service.delete(*ALICE)
    assert not await provider.verify_password(*ALICE, "correct horse")
    await provider.close()


async def test_another_process_learns_through_the_stamp(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    server = InternalProvider(db.accounts, cache_size=10, data_dir=tmp_path)  # the server
    await server.warm()
    command_line = AccountService(db, RULES, LocalCredentialsChanged(tmp_path))
    seen = stamp(tmp_path)

    await command_line.create(*ALICE, "correct horse")
    assert stamp(tmp_path) != seen  # the command line announces new names
    assert await server.verify_password(*ALICE, "correct horse")

    await command_line.change_password(*ALICE, "battery staple")
    assert await server.verify_password(*ALICE, "battery staple")
    assert not await server.verify_password(*ALICE, "correct horse")

    await command_line.lock(*ALICE)
    assert not await server.verify_password(*ALICE, "battery staple")
    await command_line.unlock(*ALICE)
    assert await server.verify_password(*ALICE, "battery staple")
    await command_line.delete(*ALICE)
    assert not await server.verify_password(*ALICE, "battery staple")
    await server.close()
