"""The http provider's pure parts: reply interpretation and the cache of successes."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.auth.http import HttpProvider, SuccessCache, interpret_reply
from chatgate.auth.options import HttpProviderOptions
from chatgate.auth.provider import ProviderUnavailable
from chatgate.vocabulary.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, b'{"result": true}', True),
        (200, b'{"result": false}', False),
        (204, b'{"result": true}', True),
        (200, b'{"result": true, "extra": 1}', True),
        (401, b"", False),
        (403, b"forbidden", False),
    ],
)
def test_reply_verdicts(status: int, body: bytes, verdict: bool) -> None:
    assert interpret_reply(status, body) is verdict


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b""),  # an empty 200 is not a success: a success must be said
        (200, b"OK"),
        (200, b'{"result": "true"}'),
        (200, b'{"result": 1}'),
        (200, b"[true]"),
        (200, b"\xff\xfe"),
        (302, b""),
        (400, b'{"result": false}'),
        (404, b""),
        (500, b'{"result": false}'),
        (503, b""),
    ],
)
def test_replies_that_are_not_answers_mean_unavailable(status: int, body: bytes) -> None:
    with pytest.raises(ProviderUnavailable):
        interpret_reply(status, body)


def test_cache_remembers_a_success() -> None:
    cache = SuccessCache(10, 60, FakeClock())
    cache.store("alice", "localhost", "correct horse")
    assert cache.hit("alice", "localhost", "correct horse")


def test_cache_does_not_match_another_password_user_or_server() -> None:
    cache = SuccessCache(10, 60, FakeClock())
    cache.store("alice", "localhost", "correct horse")
    assert not cache.hit("alice", "localhost", "correct horsE")
    assert not cache.hit("bob", "localhost", "correct horse")
    assert not cache.hit("alice", "example.org", "correct horse")


def test_cache_entry_expires_after_ttl() -> None:
    clock = FakeClock()
    cache = SuccessCache(10, 60, clock)
    cache.store("alice", "localhost", "pw")
    clock.now += 59.9
    assert cache.hit("alice", "localhost", "pw")
    clock.now += 0.1
    assert not cache.hit("alice", "localhost", "pw")
    assert len(cache) == 0


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = SuccessCache(2, 60, FakeClock())
    cache.store("a", "d", "pa")
    cache.store("b", "d", "pb")
    assert cache.hit("a", "d", "pa")  # a is now the most recently used
    cache.store("c", "d", "pc")
    assert len(cache) == 2
    assert cache.hit("a", "d", "pa") and cache.hit("c", "d", "pc")
    assert not cache.hit("b", "d", "pb")


def test_a_wrong_password_does_not_keep_an_entry_recent() -> None:
    cache = SuccessCache(2, 60, FakeClock())
    cache.store("a", "d", "pa")
    cache.store("b", "d", "pb")
    assert not cache.hit("a", "d", "guess")
    cache.store("c", "d", "pc")  # evicts a: only successes refresh
    assert not cache.hit("a", "d", "pa")
    assert cache.hit("b", "d", "pb") and cache.hit("c", "d", "pc")


def test_cache_keeps_one_entry_per_account() -> None:
    cache = SuccessCache(10, 60, FakeClock())
    cache.store("alice", "d", "old")
    cache.store("alice", "d", "new")
    assert len(cache) == 1
    assert cache.hit("alice", "d", "new") and not cache.hit("alice", "d", "old")


@pytest.mark.parametrize(("size", "ttl"), [(0, 60), (10, 0)])
def test_cache_disabled_by_zero(size: int, ttl: float) -> None:
    cache = SuccessCache(size, ttl, FakeClock())
    cache.store("alice", "d", "pw")
    assert not cache.hit("alice", "d", "pw")
    assert len(cache) == 0


def test_cache_never_holds_the_password() -> None:
    cache = SuccessCache(10, 60, FakeClock())
    cache.store("alice", "d", "correct horse")
    entries = cache._entries.mapping
    held = repr(entries).encode() + b"".join(d for d, _ in entries.values())
    assert b"correct horse" not in held
    assert b"correct horse".hex().encode() not in held


def test_two_caches_hash_differently() -> None:
    one, two = SuccessCache(10, 60, FakeClock()), SuccessCache(10, 60, FakeClock())
    assert one._digest("pw") != two._digest("pw")


def test_cache_forget_and_clear() -> None:
    cache = SuccessCache(10, 60, FakeClock())
    cache.store("a", "d", "p")
    cache.store("b", "d", "p")
    cache.forget("a", "d")
    assert not cache.hit("a", "d", "p") and cache.hit("b", "d", "p")
    cache.clear()
    assert len(cache) == 0


async def test_empty_password_is_refused_without_asking() -> None:
    provider = HttpProvider(HttpProviderOptions(url="https://auth.example.org/"))
    assert await provider.verify_password("alice", "localhost", "") is False


async def test_question_before_start_is_a_programming_error() -> None:
    provider = HttpProvider(HttpProviderOptions(url="https://auth.example.org/"))
    with pytest.raises(RuntimeError, match="start"):
        await provider.verify_password("alice", "localhost", "pw")


async def test_scram_keys_are_never_given() -> None:
    provider = HttpProvider(HttpProviderOptions(url="https://auth.example.org/"))
    assert await provider.scram_keys("alice", "localhost", "sha256") is None


async def test_start_with_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    provider = HttpProvider(
        HttpProviderOptions(url="https://auth.example.org/"), ca_file=tmp_path / "missing.pem"
    )
    with pytest.raises(ConfigError, match=r"auth\.provider\.http\.ca_file"):
        await provider.start()
    await provider.close()
