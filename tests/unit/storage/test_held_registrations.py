"""InternalProvider and registrations awaiting approval: a login with such a name is
checked against the registration's own keys, and only a right password hears why
it is refused (`scram_keys_or_held`, `verify_password_or_held`).  The complete
cache never answers "no such keys" for a pending name; an approval, in this
process or by `chatgate registration approve` in another, makes it an account.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatgate.auth import internal
from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.internal import AWAITING_APPROVAL, InternalProvider, bump_credentials_stamp
from chatgate.auth.provider import NO_SUCH_KEYS
from chatgate.storage.database import Database
from chatgate.storage.repositories.legacy import LegacySecrets

from .conftest import BOB

NEWBIE = ("newbie", "localhost")


@pytest.fixture
def newbie_keys() -> dict[str, ScramKeys]:
    return derive_all("newbie-pw-1", hashes=("sha256",))


async def hold(db: Database, owner: tuple[str, str], keys: dict[str, ScramKeys]) -> None:
    """An in-band registration with `[modules.register] approval = true`."""
    await db.pending_registrations.create_pending(*owner, keys, LegacySecrets(), {})


async def tracking(db: Database, data_dir: Path | None, size: int = 10) -> InternalProvider:
    provider = InternalProvider(db.accounts, cache_size=size, data_dir=data_dir)
    await provider.warm()
    await provider.track_pending(db.pending_registrations)  # the register module, at start
    return provider


async def settled(provider: InternalProvider) -> None:
    """Wait for the background re-loads a stamp change started (bounded)."""
    for _ in range(200):
        if provider.complete and not provider.reloading:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the provider did not settle")


async def test_a_pending_name_is_answered_with_its_keys_and_the_held_text(
    db: Database, alice: tuple[str, str], newbie_keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    await hold(db, NEWBIE, newbie_keys)
    provider = await tracking(db, tmp_path)
    assert await provider.scram_keys_or_held(*NEWBIE, "sha256") == (
        newbie_keys["sha256"],
        AWAITING_APPROVAL,
    )
    assert await provider.scram_keys_or_held(*NEWBIE, "sha1") == (None, None)  # not stored
    assert await provider.verify_password_or_held(*NEWBIE, "newbie-pw-1") == (
        False,
        AWAITING_APPROVAL,
    )
    assert await provider.verify_password_or_held(*NEWBIE, "wrong") == (False, None)
    # The plain protocol knows nothing of held registrations: an unknown name.
    assert await provider.scram_keys(*NEWBIE, "sha256") is None
    assert not await provider.verify_password(*NEWBIE, "newbie-pw-1")
    # Accounts and unknown names are answered as before.
    keys = await provider.scram_keys_or_held(*alice, "sha256")
    assert keys[0] is not None and keys[1] is None
    assert await provider.verify_password_or_held(*alice, "correct horse") == (True, None)
    assert await provider.scram_keys_or_held(*BOB, "sha256") == (None, None)
    assert await provider.verify_password_or_held(*BOB, "anything") == (False, None)


async def test_the_complete_cache_never_says_no_such_keys_for_a_pending_name(
    db: Database, alice: tuple[str, str], newbie_keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    await hold(db, NEWBIE, newbie_keys)
    provider = await tracking(db, tmp_path)
    assert provider.complete
    assert provider.cached_scram_keys(*BOB, "sha256") is NO_SUCH_KEYS
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is None  # ask: it is held


async def test_a_registration_held_in_this_process_is_known_at_once(
    db: Database, alice: tuple[str, str], newbie_keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    provider = await tracking(db, tmp_path)
    await hold(db, NEWBIE, newbie_keys)
    provider.pending_added(*NEWBIE)  # what in-band registration does after holding it
    provider.invalidate(*NEWBIE)
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is None
    assert (await provider.scram_keys_or_held(*NEWBIE, "sha256"))[1] == AWAITING_APPROVAL
    # Still held on the next attempt (a looked-up pending name stays "ask").
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is None


async def test_an_approval_in_this_process_makes_it_an_account(
    db: Database, alice: tuple[str, str], newbie_keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    await hold(db, NEWBIE, newbie_keys)
    provider = await tracking(db, tmp_path)
    assert await db.pending_registrations.approve(*NEWBIE)
    provider.pending_resolved(*NEWBIE)
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is None  # read the new account
    assert await provider.scram_keys_or_held(*NEWBIE, "sha256") == (newbie_keys["sha256"], None)
    assert await provider.verify_password_or_held(*NEWBIE, "newbie-pw-1") == (True, None)
    assert provider.cached_scram_keys(*NEWBIE, "sha256") == newbie_keys["sha256"]


async def test_an_approval_from_another_process_makes_it_an_account(
    db: Database,
    alice: tuple[str, str],
    newbie_keys: dict[str, ScramKeys],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    await hold(db, NEWBIE, newbie_keys)
    provider = await tracking(db, tmp_path)
    # `chatgate registration approve newbie`: its own database connection, then the stamp.
    assert await db.pending_registrations.approve(*NEWBIE)
    bump_credentials_stamp(tmp_path)
    assert await provider.verify_password_or_held(*NEWBIE, "newbie-pw-1") == (True, None)
    await settled(provider)
    assert provider.cached_scram_keys(*NEWBIE, "sha256") == newbie_keys["sha256"]


async def test_a_stamp_change_reloads_the_pending_names(
    db: Database,
    alice: tuple[str, str],
    newbie_keys: dict[str, ScramKeys],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    provider = await tracking(db, tmp_path)
    await hold(db, NEWBIE, newbie_keys)  # by another process (another server node)
    bump_credentials_stamp(tmp_path)
    provider.cached_scram_keys(*BOB, "sha256")  # any look-up sees the stamp
    await settled(provider)
    assert provider.cached_scram_keys(*BOB, "sha256") is NO_SUCH_KEYS
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is None
    assert (await provider.scram_keys_or_held(*NEWBIE, "sha256"))[1] == AWAITING_APPROVAL


async def test_a_rejected_name_is_unknown_again_after_one_look_up(
    db: Database, alice: tuple[str, str], newbie_keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    await hold(db, NEWBIE, newbie_keys)
    provider = await tracking(db, tmp_path)
    # `chatgate registration reject` in another process, with no stamp bump.
    assert await db.pending_registrations.reject(*NEWBIE)
    assert await provider.scram_keys_or_held(*NEWBIE, "sha256") == (None, None)
    assert provider.complete
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is NO_SUCH_KEYS


async def test_pending_names_in_memory_are_bounded(
    db: Database,
    alice: tuple[str, str],
    newbie_keys: dict[str, ScramKeys],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `PENDING_NAMES_LIMIT` a pending name is answered as an unknown one (bare
    not-authorized, as before held logins were told anything)."""
    monkeypatch.setattr(internal, "PENDING_NAMES_LIMIT", 1)
    await hold(db, NEWBIE, newbie_keys)
    await hold(db, ("later", "localhost"), newbie_keys)
    provider = await tracking(db, tmp_path)
    assert provider.pending == 1
    assert provider.cached_scram_keys(*NEWBIE, "sha256") is None  # the oldest is kept
    assert provider.cached_scram_keys("later", "localhost", "sha256") is NO_SUCH_KEYS
    provider.pending_added("third", "localhost")
    assert provider.pending == 1


async def test_without_a_cache_pending_names_are_still_held(
    db: Database, newbie_keys: dict[str, ScramKeys]
) -> None:
    await hold(db, NEWBIE, newbie_keys)
    provider = await tracking(db, None, size=0)
    assert await provider.verify_password_or_held(*NEWBIE, "newbie-pw-1") == (
        False,
        AWAITING_APPROVAL,
    )
