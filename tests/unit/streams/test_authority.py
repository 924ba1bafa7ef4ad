"""The stream authority's core (streams/authority.py) answering nginx-rtmp's real
notifications: each request is read by the real adapter, passwords go through the
real login gate and `InternalProvider` over SQLite, tokens are real, the live
registry is the in-process one."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.auth.gate import LoginGate
from chatgate.auth.internal import InternalProvider
from chatgate.auth.throttle import AddressLimits, AuthThrottle, ThrottleOptions
from chatgate.storage.database import Database
from chatgate.streams import tokens
from chatgate.streams.adapters import HookRequest, Question, VerdictKind
from chatgate.streams.adapters.base import Credentials, HookAction
from chatgate.streams.adapters.nginx_rtmp import NginxRtmpAdapter
from chatgate.streams.authority import Answer, StreamAuthority
from chatgate.streams.keys import LocalStreamKeys
from chatgate.streams.live import LocalLiveStreams
from chatgate.streams.one_time import LocalOneTimeTokens
from chatgate.streams.policy import Rule, RuleSet
from chatgate.streams.revocations import LocalRevokedTokens

DOMAIN = "localhost"
PASSWORD = "correct horse battery"
NOW = 1_800_000_000.0
TOKEN_KEYS = {1: b"k" * 32}
RULES = [
    "publish live/alice user:alice@localhost",  # Wowza's "allowed stream names"
    "publish live/bob user:bob@localhost",
    "publish,play public/* authenticated",
    "play public/* anonymous",  # public to play, private to publish
    "play live/* token",
    "play live/* user:alice@localhost",
]
PREFIX = (
    b"app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl="
    b"&tcurl=rtmp://127.0.0.1:1935/live&pageurl=&addr=203.0.113.5"
)


def publish(name: str, args: bytes = b"", clientid: int = 6, app: bytes = b"live") -> bytes:
    body = (
        PREFIX.replace(b"app=live", b"app=" + app) + b"&clientid=%d&call=publish&name=" % clientid
    )
    return body + name.encode() + b"&type=live" + args


def play(name: str, args: bytes = b"", clientid: int = 7, app: bytes = b"live") -> bytes:
    body = PREFIX.replace(b"app=live", b"app=" + app) + b"&clientid=%d&call=play&name=" % clientid
    return body + name.encode() + b"&start=4294965296&duration=0&reset=0" + args


def done(call: str, name: str, clientid: int, app: bytes = b"live") -> bytes:
    body = PREFIX.replace(b"app=live", b"app=" + app) + b"&clientid=%d&call=%s&name=" % (
        clientid,
        call.encode(),
    )
    return body + name.encode()


@dataclass
class World:
    db: Database
    authority: StreamAuthority
    live: LocalLiveStreams
    keys: LocalStreamKeys
    adapter: NginxRtmpAdapter

    async def ask(self, hook: str, body: bytes) -> Answer:
        request = HookRequest(
            "POST",
            hook,
            b"",
            {"content-type": "application/x-www-form-urlencoded"},
            body,
            "127.0.0.1",
        )
        question = self.adapter.parse(request)
        assert isinstance(question, Question), question
        return await self.authority.answer(question)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}")
    try:
        for user in ("alice", "bob"):
            await db.accounts.create(user, DOMAIN, derive_all(PASSWORD, hashes=("sha256",)))
        provider = InternalProvider(db.accounts, cache_size=10, data_dir=None)
        await provider.warm()
        throttle = AuthThrottle(
            ThrottleOptions(address=AddressLimits(free_failures=1, base_delay=1.0, max_delay=1.0))
        )
        live = LocalLiveStreams()
        keys = LocalStreamKeys()
        authority = StreamAuthority(
            domain=DOMAIN,
            gate=LoginGate(throttle),
            provider=provider,
            rules=RuleSet(Rule.parse(r) for r in RULES),
            live=live,
            keys=keys,
            token_keys=TOKEN_KEYS,
            one_time=LocalOneTimeTokens(),
            revoked=LocalRevokedTokens(clock=lambda: NOW),
            clock=lambda: NOW,
        )
        yield World(db, authority, live, keys, NginxRtmpAdapter(node="edge1"))
        await provider.close()
    finally:
        await db.close()


def allowed(answer: Answer) -> bool:
    return answer.verdict.kind is VerdictKind.ALLOW


async def test_the_owner_publishes_with_the_right_password(world: World) -> None:
    answer = await world.ask(
        "publish",
        publish("alice", b"&username=alice&password=" + PASSWORD.replace(" ", "+").encode()),
    )
    assert allowed(answer), answer
    [stream] = await world.live.live()
    assert (stream.stream, stream.publisher) == ("live/alice", "alice@localhost")


@pytest.mark.parametrize(
    ("name", "args", "why"),
    [
        ("alice", b"&username=alice&password=wrong", "wrong-credentials"),
        ("alice", b"&username=nobody&password=wrong", "wrong-credentials"),
        ("bob", b"&username=alice&password=correct+horse+battery", "no rule admits this caller"),
        # field injection: the first name wins, so alice cannot publish into bob's stream
        ("alice", b"&username=alice&password=correct+horse+battery&name=bob", None),
        ("alice", b"", "no rule admits this caller"),  # and asked for credentials
    ],
)
async def test_refusals(world: World, name: str, args: bytes, why: str | None) -> None:
    answer = await world.ask("publish", publish(name, args))
    if why is None:  # the injection only published alice's own stream
        assert allowed(answer)
        assert [s.stream for s in await world.live.live()] == ["live/alice"]
        return
    assert not answer.verdict.allowed, answer
    assert why in answer.verdict.reason
    assert await world.live.live() == []


async def test_a_wrong_password_is_held_and_never_downgraded_to_anonymous(world: World) -> None:
    # public/* plays anonymously, but wrong credentials do not become "no credentials"
    first = await world.ask("play", play("news", b"&username=alice&password=bad", app=b"public"))
    second = await world.ask("play", play("news", b"&username=alice&password=bad", app=b"public"))
    assert first.verdict.kind is VerdictKind.DENY and second.verdict.kind is VerdictKind.DENY
    assert second.hold > 0  # past the free failures, brute-force protection holds the answer
    assert allowed(await world.ask("play", play("news", app=b"public")))


async def test_a_second_publisher_is_refused_until_the_first_is_done(world: World) -> None:
    creds = b"&username=alice&password=correct+horse+battery"
    assert allowed(await world.ask("publish", publish("alice", creds, clientid=6)))
    second = await world.ask("publish", publish("alice", creds, clientid=8))
    assert second.verdict.kind is VerdictKind.DENY and "another publisher" in second.verdict.reason
    assert allowed(await world.ask("publish_done", done("publish_done", "alice", 6)))
    assert await world.live.live() == []
    assert allowed(await world.ask("publish", publish("alice", creds, clientid=8)))


async def test_tokens_open_only_their_stream_action_and_time(world: World) -> None:
    token = tokens.issue(TOKEN_KEYS, 1, "live/alice", "play", int(NOW) + 60)
    assert allowed(await world.ask("play", play("alice", b"&token=" + token.encode())))
    for body in (
        play("bob", b"&token=" + token.encode()),  # another stream
        publish("alice", b"&token=" + token.encode()),  # another action
    ):
        answer = await world.ask("play" if b"call=play" in body else "publish", body)
        assert answer.verdict.kind is VerdictKind.DENY, answer
    expired = tokens.issue(TOKEN_KEYS, 1, "live/alice", "play", int(NOW))
    answer = await world.ask("play", play("alice", b"&token=" + expired.encode()))
    assert answer.verdict.kind is VerdictKind.DENY and "expired" in answer.verdict.reason
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    answer = await world.ask("play", play("alice", b"&token=" + tampered.encode()))
    assert answer.verdict.kind is VerdictKind.DENY


async def test_stream_keys_publish_as_their_owner_and_revoking_ends_them(world: World) -> None:
    key = await world.keys.issue("alice@localhost")
    assert allowed(await world.ask("publish", publish("alice", b"&key=" + key.encode())))
    assert not (
        await world.ask("publish", publish("bob", b"&key=" + key.encode(), clientid=9))
    ).verdict.allowed
    await world.keys.revoke("alice@localhost")
    answer = await world.ask("publish", publish("alice", b"&key=" + key.encode(), clientid=10))
    assert answer.verdict.kind is VerdictKind.DENY and "unknown stream key" in answer.verdict.reason


async def test_anonymous_without_a_rule_is_asked_for_credentials(world: World) -> None:
    answer = await world.ask("play", play("alice"))
    assert answer.verdict.kind is VerdictKind.UNAUTHENTICATED


async def test_no_secret_is_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = await world.keys.issue("alice@localhost")
    await world.ask("publish", publish("alice", b"&username=alice&password=hunter2-secret"))
    await world.ask("publish", publish("alice", b"&key=" + key.encode(), clientid=11))
    text = caplog.text
    assert "live/alice" in text and "denied" in text and "allowed" in text
    assert "hunter2-secret" not in text and key not in text


def update(name: str, args: bytes, clientid: int, call: str = "update_publish") -> bytes:
    body = PREFIX + b"&clientid=%d&call=%s&time=4&timestamp=4000&name=" % (
        clientid,
        call.encode(),
    )
    return body + name.encode() + args


async def test_a_renewal_refused_after_the_key_is_revoked_ends_the_live_session(
    world: World,
) -> None:
    key = await world.keys.issue("alice@localhost")
    args = b"&key=" + key.encode()
    assert allowed(await world.ask("publish", publish("alice", args, clientid=31)))
    assert allowed(await world.ask("update", update("alice", args, 31)))
    assert [s.stream for s in await world.live.live()] == ["live/alice"]
    await world.keys.revoke("alice@localhost")
    answer = await world.ask("update", update("alice", args, 31))
    assert answer.verdict.kind is VerdictKind.DENY
    assert await world.live.live() == []  # nginx drops it; the registry forgets it


async def test_a_stream_key_named_with_another_user_is_refused(world: World) -> None:
    key = await world.keys.issue("alice@localhost")
    answer = await world.ask(
        "publish", publish("alice", b"&username=bob&key=" + key.encode(), clientid=32)
    )
    assert answer.verdict.kind is VerdictKind.DENY
    assert "another account's stream key" in answer.verdict.reason
    assert allowed(
        await world.ask(
            "publish", publish("alice", b"&username=alice&key=" + key.encode(), clientid=33)
        )
    )


async def test_a_one_time_token_plays_once_and_its_renewals_pass(world: World) -> None:
    token = tokens.issue(TOKEN_KEYS, 1, "live/alice", "play", int(NOW) + 60, one_time=True)
    args = b"&token=" + token.encode()
    assert allowed(await world.ask("play", play("alice", args, clientid=41)))
    assert allowed(await world.ask("play", play("alice", args, clientid=41)))  # a retry
    assert allowed(await world.ask("update", update("alice", args, 41, "update_play")))
    answer = await world.ask("play", play("alice", args, clientid=42))
    assert answer.verdict.kind is VerdictKind.DENY
    assert "one-time token already used" in answer.verdict.reason


async def test_a_question_without_a_client_id_is_decided_but_not_tracked(
    world: World,
) -> None:
    question = Question(
        "red5",
        HookAction.PUBLISH,
        "live/alice",
        Credentials.password("alice", PASSWORD),
        client_address="203.0.113.9",
    )
    assert allowed(await world.authority.answer(question))
    assert allowed(await world.authority.answer(question))  # no "another publisher"
    assert await world.live.live() == []


async def test_decisions_are_counted_by_adapter_action_and_verdict(world: World) -> None:
    await world.ask("play", play("alice"))  # no credentials, live/* not public
    await world.ask("publish", publish("alice", b"&username=alice&password=wrong"))
    key = await world.keys.issue("alice@localhost")
    await world.ask("publish", publish("alice", b"&key=" + key.encode(), clientid=51))
    await world.ask("publish_done", done("publish_done", "alice", 51))
    assert world.authority.counters.snapshot() == {
        ("nginx-rtmp", "play", "unauthenticated"): 1,
        ("nginx-rtmp", "publish", "deny"): 1,
        ("nginx-rtmp", "publish", "allow"): 1,
        ("nginx-rtmp", "publish_done", "allow"): 1,
    }


async def test_a_revoked_token_is_refused_and_its_renewal_ends_the_play(world: World) -> None:
    token = tokens.issue(TOKEN_KEYS, 1, "live/alice", "play", int(NOW) + 60)
    args = b"&token=" + token.encode()
    assert allowed(await world.ask("play", play("alice", args, clientid=61)))
    verdict = tokens.identify(token, TOKEN_KEYS)
    revoked = world.authority.revoked
    assert revoked is not None and verdict.token_id and verdict.expires_at
    assert await revoked.revoke(verdict.token_id, verdict.expires_at)
    answer = await world.ask("update", update("alice", args, 61, "update_play"))
    assert answer.verdict.kind is VerdictKind.DENY and "token revoked" in answer.verdict.reason
    assert not (await world.ask("play", play("alice", args, clientid=62))).verdict.allowed


async def test_a_locked_accounts_password_and_stream_key_open_nothing(world: World) -> None:
    locking = world.db
    key = await world.keys.issue("alice@localhost")
    password = b"&username=alice&password=" + PASSWORD.replace(" ", "+").encode()
    assert allowed(await world.ask("publish", publish("alice", password, clientid=71)))
    await world.ask("publish_done", done("publish_done", "alice", 71))
    await locking.accounts.set_locked("alice", DOMAIN, True)
    world.authority.provider.invalidate("alice", DOMAIN)  # type: ignore[attr-defined]
    by_key = await world.ask("publish", publish("alice", b"&key=" + key.encode(), clientid=72))
    assert by_key.verdict.kind is VerdictKind.DENY
    assert "the key's account is locked" in by_key.verdict.reason
    by_password = await world.ask("publish", publish("alice", password, clientid=73))
    assert by_password.verdict.kind is VerdictKind.DENY
    assert by_password.verdict.reason == "account-disabled"


async def test_a_refused_renewal_is_no_guess_and_is_not_held(world: World) -> None:
    throttle = world.authority.gate.throttle
    key = await world.keys.issue("bob@localhost")
    args = b"&key=" + key.encode()
    assert allowed(await world.ask("publish", publish("bob", args, clientid=81)))
    await world.keys.revoke("bob@localhost")
    for _ in range(3):  # every period until nginx drops it: none counts, none held
        answer = await world.ask("update", update("bob", args, 81))
        assert answer.verdict.kind is VerdictKind.DENY and answer.hold == 0
    assert throttle.stats.failures == 0  # type: ignore[attr-defined]
    # a password renewal: right (remembered or derived) passes, wrong is refused at once
    password = b"&username=bob&password=" + PASSWORD.replace(" ", "+").encode()
    assert allowed(await world.ask("publish", publish("bob", password, clientid=82)))
    assert allowed(await world.ask("update", update("bob", password, 82)))
    wrong = await world.ask("update", update("bob", b"&username=bob&password=nope", 82))
    assert wrong.verdict.kind is VerdictKind.DENY and wrong.hold == 0
    assert throttle.stats.failures == 0  # type: ignore[attr-defined]
