"""InternalProvider: cached SCRAM keys, invalidation in-process and across processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatgate.auth import internal
from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.internal import (
    ACCOUNT_LOCKED,
    AWAITING_APPROVAL,
    InternalProvider,
    bump_credentials_stamp,
)
from chatgate.auth.provider import NO_SUCH_KEYS, Capability
from chatgate.storage.database import Database
from chatgate.storage.repositories.accounts import AccountRepository, LoadedKeys
from chatgate.storage.repositories.legacy_records import DigestMd5Secret, LegacySecrets
from chatgate.vocabulary.errors import SaslFailureCondition

from .conftest import BOB


class CountingAccounts:
    """Wraps the real repository and counts key lookups (the database round trips)."""

    def __init__(self, inner: AccountRepository) -> None:
        self.inner = inner
        self.reads = 0

    async def login_keys(self, username: str, domain: str) -> tuple[dict[str, ScramKeys], bool]:
        self.reads += 1
        return await self.inner.login_keys(username, domain)

    async def locked(self, username: str, domain: str) -> bool | None:
        self.reads += 1
        return await self.inner.locked(username, domain)

    async def exists(self, username: str, domain: str) -> bool:
        return await self.inner.exists(username, domain)

    async def scram_keys_of_many(self, limit: int) -> LoadedKeys:
        return await self.inner.scram_keys_of_many(limit)


def _provider(
    db: Database, data_dir: Path | None, size: int = 10
) -> tuple[InternalProvider, CountingAccounts]:
    counting = CountingAccounts(db.accounts)
    provider = InternalProvider(counting, cache_size=size, data_dir=data_dir)  # type: ignore[arg-type]
    return provider, counting


def test_offers_password_and_every_scram_hash() -> None:
    assert InternalProvider.offers == {
        Capability.VERIFY_PASSWORD,
        Capability.SCRAM_SHA_1_KEYS,
        Capability.SCRAM_SHA_256_KEYS,
        Capability.SCRAM_SHA_512_KEYS,
        Capability.CERT_IDENTITY,
    }


async def test_second_lookup_needs_no_database_read(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    provider, counting = _provider(db, tmp_path)
    assert await provider.scram_keys(*alice, "sha1") == keys["sha1"]
    assert await provider.scram_keys(*alice, "sha512") == keys["sha512"]
    assert await provider.verify_password(*alice, "correct horse")
    assert counting.reads == 1


async def test_verify_password_rejects_wrong_password(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, _ = _provider(db, tmp_path)
    assert not await provider.verify_password(*alice, "wrong horse")
    assert not await provider.verify_password(*BOB, "correct horse")


async def test_unknown_user_is_not_cached(db: Database, tmp_path: Path) -> None:
    provider, counting = _provider(db, tmp_path)
    assert await provider.scram_keys(*BOB, "sha256") is None
    assert not await provider.user_exists(*BOB)
    await db.accounts.create(*BOB, derive_all("bob"))  # e.g. by the CLI, no bump needed
    assert await provider.scram_keys(*BOB, "sha256") is not None
    assert await provider.user_exists(*BOB)
    assert counting.reads == 2


async def test_stamp_bump_from_another_process_drops_the_cache(
    db: Database, alice: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    provider, counting = _provider(db, tmp_path)
    assert await provider.verify_password(*alice, "correct horse")
    await db.accounts.set_credentials(*alice, derive_all("new password"))
    assert await provider.verify_password(*alice, "correct horse")  # cached, as designed
    bump_credentials_stamp(tmp_path)
    assert not await provider.verify_password(*alice, "correct horse")
    assert await provider.verify_password(*alice, "new password")
    bump_credentials_stamp(tmp_path)  # twice within one mtime tick still differs
    await db.accounts.delete(*alice)
    bump_credentials_stamp(tmp_path)
    assert await provider.scram_keys(*alice, "sha256") is None
    assert not await provider.user_exists(*alice)
    assert counting.reads == 3


async def test_invalidate_forgets_one_account(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, _ = _provider(db, tmp_path)
    await provider.scram_keys(*alice, "sha256")
    new = derive_all("changed")
    await db.accounts.set_credentials(*alice, new)
    provider.invalidate(*alice)
    assert await provider.scram_keys(*alice, "sha256") == new["sha256"]


async def test_cache_is_bounded_least_recently_used_first(db: Database, tmp_path: Path) -> None:
    provider, counting = _provider(db, tmp_path, size=2)
    for name in ("a", "b", "c"):
        await db.accounts.create(name, "localhost", derive_all(name, hashes=("sha256",)))
    await provider.scram_keys("a", "localhost", "sha256")
    await provider.scram_keys("b", "localhost", "sha256")
    await provider.scram_keys("a", "localhost", "sha256")  # a is now the most recent
    await provider.scram_keys("c", "localhost", "sha256")  # evicts b
    assert provider.cached == 2
    reads = counting.reads
    await provider.scram_keys("a", "localhost", "sha256")
    assert counting.reads == reads
    await provider.scram_keys("b", "localhost", "sha256")
    assert counting.reads == reads + 1


async def test_cache_size_zero_always_reads(db: Database, alice: tuple[str, str]) -> None:
    provider, counting = _provider(db, None, size=0)
    await provider.scram_keys(*alice, "sha256")
    await provider.scram_keys(*alice, "sha256")
    assert counting.reads == 2 and provider.cached == 0


async def test_password_verified_with_any_stored_hash(db: Database, tmp_path: Path) -> None:
    await db.accounts.create(*BOB, derive_all("only sha1", hashes=("sha1",)))
    provider, _ = _provider(db, tmp_path)
    assert await provider.verify_password(*BOB, "only sha1")
    assert not await provider.verify_password(*BOB, "not it")


async def test_stamp_is_checked_at_most_once_per_interval(
    db: Database, alice: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(internal.time, "monotonic", lambda: clock[0])
    provider, _counting = _provider(db, tmp_path)
    assert await provider.verify_password(*alice, "correct horse")
    await db.accounts.set_credentials(*alice, derive_all("new password"))
    bump_credentials_stamp(tmp_path)
    clock[0] += internal.STAMP_CHECK_INTERVAL / 2
    assert await provider.verify_password(*alice, "correct horse")  # not looked at yet
    clock[0] += internal.STAMP_CHECK_INTERVAL
    assert await provider.verify_password(*alice, "new password")


async def test_warm_loads_keys_so_logins_need_no_database_read(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, counting = _provider(db, tmp_path)
    assert await provider.warm() == 1
    reads = counting.reads
    assert provider.cached_scram_keys(*alice, "sha256") is not None
    assert await provider.verify_password(*alice, "correct horse")
    assert counting.reads == reads


async def test_warm_cache_holding_every_account_answers_unknown_users_without_reads(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, counting = _provider(db, tmp_path)
    await provider.warm()
    assert provider.complete
    reads = counting.reads
    assert provider.cached_scram_keys(*BOB, "sha256") is NO_SUCH_KEYS
    assert await provider.scram_keys(*BOB, "sha256") is None
    assert not await provider.verify_password(*BOB, "anything")
    assert counting.reads == reads


async def test_complete_cache_sees_an_account_created_in_process(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, _ = _provider(db, tmp_path)
    await provider.warm()
    await db.accounts.create(*BOB, derive_all("bob"))
    provider.invalidate(*BOB)  # what in-band registration does after creating it
    assert provider.cached_scram_keys(*BOB, "sha256") is None  # ask the database
    assert await provider.scram_keys(*BOB, "sha256") is not None
    assert provider.complete
    assert provider.cached_scram_keys(*BOB, "sha256") is not NO_SUCH_KEYS


async def test_stamp_bump_reloads_a_complete_cache(
    db: Database, alice: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    provider, _ = _provider(db, tmp_path)
    await provider.warm()
    await db.accounts.create(*BOB, derive_all("bob"))  # by `chatgate user add`
    bump_credentials_stamp(tmp_path)
    assert provider.cached_scram_keys(*BOB, "sha256") is None  # not complete any more
    assert not provider.complete
    assert await provider.verify_password(*BOB, "bob")
    for _ in range(100):
        if provider.complete:
            break
        await asyncio.sleep(0.01)
    assert provider.complete
    assert isinstance(provider.cached_scram_keys(*BOB, "sha256"), ScramKeys)


async def test_more_accounts_than_the_cache_holds_is_not_complete(
    db: Database, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        await db.accounts.create(name, "localhost", derive_all(name, hashes=("sha256",)))
    provider, counting = _provider(db, tmp_path, size=2)
    assert await provider.warm() == 2
    assert not provider.complete
    assert provider.cached_scram_keys("a", "localhost", "sha256") is None  # the oldest
    assert await provider.scram_keys("a", "localhost", "sha256") is not None
    assert counting.reads == 1


async def test_filling_a_complete_cache_past_its_size_ends_completeness(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, _ = _provider(db, tmp_path, size=1)
    await provider.warm()
    assert provider.complete
    await db.accounts.create(*BOB, derive_all("bob"))
    provider.invalidate(*BOB)
    assert await provider.scram_keys(*BOB, "sha256") is not None  # evicts alice
    assert not provider.complete
    assert provider.cached_scram_keys(*alice, "sha256") is None


async def test_an_eviction_while_warming_ends_completeness(db: Database, tmp_path: Path) -> None:
    """The database holds no more accounts than the cache, but the cache still holds
    one more (deleted by a process that did not bump the stamp): warming evicts it, so
    the cache does not claim to know every account, and unknown users are read."""
    for name in ("a", "b"):
        await db.accounts.create(name, "localhost", derive_all(name, hashes=("sha256",)))
    provider, counting = _provider(db, None, size=2)
    assert await provider.scram_keys("a", "localhost", "sha256") is not None
    assert await db.accounts.delete("a", "localhost")
    await db.accounts.create("c", "localhost", derive_all("c", hashes=("sha256",)))
    assert await provider.warm() == 2
    assert provider.cached == 2
    assert not provider.complete
    assert provider.cached_scram_keys("nobody", "localhost", "sha256") is None
    reads = counting.reads
    assert await provider.scram_keys("nobody", "localhost", "sha256") is None
    assert counting.reads == reads + 1


class SlowAccounts(CountingAccounts):
    """The bulk read of a re-load takes a while, as it does on a large table."""

    def __init__(self, inner: AccountRepository, delay: float) -> None:
        super().__init__(inner)
        self.delay = delay
        self.finished = 0

    async def scram_keys_of_many(self, limit: int) -> LoadedKeys:
        await asyncio.sleep(self.delay)
        answer = await self.inner.scram_keys_of_many(limit)
        self.finished += 1
        return answer


async def test_close_lets_a_running_reload_finish_its_query(
    db: Database, alice: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server closes the provider and then the database: a re-load cut off
    # mid-query left SQLAlchemy a cancelled rollback to log as a traceback.
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    slow = SlowAccounts(db.accounts, delay=0.05)
    provider = InternalProvider(slow, cache_size=10, data_dir=tmp_path)  # type: ignore[arg-type]
    await provider.warm()
    bump_credentials_stamp(tmp_path)
    provider.cached_scram_keys(*alice, "sha256")  # sees the stamp: starts a re-load
    assert provider.reloading
    await provider.close()
    assert not provider.reloading
    assert slow.finished == 2  # the warm-up and the whole re-load


async def test_close_cancels_a_reload_past_the_grace(
    db: Database, alice: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    monkeypatch.setattr(internal, "CLOSE_GRACE", 0.01)
    slow = SlowAccounts(db.accounts, delay=0.0)
    provider = InternalProvider(slow, cache_size=10, data_dir=tmp_path)  # type: ignore[arg-type]
    await provider.warm()
    slow.delay = 30.0
    bump_credentials_stamp(tmp_path)
    provider.cached_scram_keys(*alice, "sha256")
    await asyncio.wait_for(provider.close(), 2.0)
    assert not provider.reloading
    assert slow.finished == 1


async def test_close_without_start_or_reload_is_a_no_op(db: Database, tmp_path: Path) -> None:
    provider, _ = _provider(db, tmp_path)
    await provider.close()
    await provider.close()


# ---------------------------------------------------------------- locked accounts


async def test_a_locked_account_logs_in_with_nothing_and_is_told_only_with_its_password(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    await db.accounts.set_locked(*alice, True)
    provider, _ = _provider(db, tmp_path)
    # The plain protocol: as an unknown name.
    assert await provider.scram_keys(*alice, "sha256") is None
    assert not await provider.verify_password(*alice, "correct horse")
    # The held answers: its keys with the text, and the text only for the right password.
    assert await provider.scram_keys_or_held(*alice, "sha256") == (keys["sha256"], ACCOUNT_LOCKED)
    assert await provider.verify_password_or_held(*alice, "correct horse") == (
        False,
        ACCOUNT_LOCKED,
    )
    assert await provider.verify_password_or_held(*alice, "wrong horse") == (False, None)
    assert await provider.user_exists(*alice)
    assert await provider.user_exists_or_held(*alice) == (True, ACCOUNT_LOCKED)
    assert await provider.user_exists_or_held(*BOB) == (False, None)
    assert provider.held_condition(ACCOUNT_LOCKED) is SaslFailureCondition.ACCOUNT_DISABLED
    assert provider.held_condition(AWAITING_APPROVAL) is SaslFailureCondition.NOT_AUTHORIZED
    assert provider.cached == 0
    assert provider.cached_scram_keys(*alice, "sha256") is None


async def test_a_complete_cache_never_answers_a_locked_name_from_memory(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    await db.accounts.create(*BOB, derive_all("bob"))
    await db.accounts.set_locked(*alice, True)
    provider, counting = _provider(db, tmp_path)
    assert await provider.warm() == 1  # bob's keys only
    assert provider.complete
    assert provider.cached_scram_keys(*BOB, "sha256") is not None
    assert provider.cached_scram_keys("nobody", "localhost", "sha256") is NO_SUCH_KEYS
    assert provider.cached_scram_keys(*alice, "sha256") is None  # ask: it may be told
    for _ in range(2):
        reads = counting.reads
        assert await provider.scram_keys_or_held(*alice, "sha512") == (
            keys["sha512"],
            ACCOUNT_LOCKED,
        )
        assert counting.reads == reads + 1
        assert provider.cached_scram_keys(*alice, "sha256") is None
    assert provider.complete


async def test_a_lock_from_another_process_takes_effect_at_the_stamp(
    db: Database, alice: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    provider, _ = _provider(db, tmp_path)
    await provider.warm()
    assert await provider.verify_password(*alice, "correct horse")
    await db.accounts.set_locked(*alice, True)  # `chatgate user lock`, then its bump:
    bump_credentials_stamp(tmp_path)
    assert not await provider.verify_password(*alice, "correct horse")
    await provider.close()  # the re-load the stamp started
    assert provider.complete
    assert provider.cached_scram_keys(*alice, "sha256") is None
    assert await provider.verify_password_or_held(*alice, "correct horse") == (
        False,
        ACCOUNT_LOCKED,
    )
    await db.accounts.set_locked(*alice, False)
    bump_credentials_stamp(tmp_path)
    assert await provider.verify_password(*alice, "correct horse")
    assert provider.cached == 1
    await provider.close()


async def test_a_lock_in_this_process_takes_effect_at_invalidate(
    db: Database, alice: tuple[str, str], tmp_path: Path
) -> None:
    provider, _ = _provider(db, tmp_path)
    await provider.warm()
    assert provider.cached_scram_keys(*alice, "sha256") is not None
    await db.accounts.set_locked(*alice, True)
    provider.invalidate(*alice)  # what the account service's notifier does
    assert provider.cached_scram_keys(*alice, "sha256") is None
    assert await provider.scram_keys(*alice, "sha256") is None
    assert provider.cached_scram_keys(*alice, "sha256") is None  # still looked up
    await db.accounts.set_locked(*alice, False)
    provider.invalidate(*alice)
    assert await provider.scram_keys(*alice, "sha256") is not None
    assert provider.cached_scram_keys(*alice, "sha256") is not None


async def test_digest_md5_secret_of_a_locked_account_is_not_handed_out(
    db: Database, keys: dict[str, ScramKeys], tmp_path: Path
) -> None:
    secret = DigestMd5Secret("localhost", b"\x01" * 16)
    await db.registration.create_account(*BOB, keys, LegacySecrets(digest_md5=secret), {})
    provider = InternalProvider(db.accounts, cache_size=10, data_dir=tmp_path, legacy=db.legacy)
    assert await provider.digest_md5_ha1(*BOB) == secret.ha1
    await db.accounts.set_locked(*BOB, True)
    assert await provider.digest_md5_ha1(*BOB) is None
