"""`share_auth_state` on two server contexts (two nodes, one SQLite file, one real
redis-server): logins, registrations and unknown users look the same from both."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatgate.accounts.server import server_account_service
from chatgate.auth.anonymous import AnonymousLoginLimit, AnonymousProvider
from chatgate.auth.gate import Reason
from chatgate.auth.internal import InternalProvider
from chatgate.auth.policy import AccountPolicy
from chatgate.auth.throttle import ALLOW
from chatgate.cluster.auth_state import share_auth_state
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.notify import ClusterCredentialsChanged
from chatgate.cluster.throttle import ClusterAuthThrottle, ClusterRegistrationThrottle
from chatgate.config import Config
from chatgate.context import ServerContext
from chatgate.modules.legacy_auth import LegacyAuth
from chatgate.sasl.base import Challenge, ConnectionFacts, CredentialAnswer, NeedCredentials
from chatgate.sasl.scram import ScramSha256Mechanism
from chatgate.server import load_sasl_secret
from chatgate.storage.database import Database
from chatgate.storage.repositories.legacy_census import LegacyCensus
from chatgate.vhost import VirtualHost
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for

DOMAIN = "example.org"
ATTACKER = "203.0.113.9"


@dataclass
class Node:
    ctx: ServerContext
    db: Database
    node: ClusterNode
    data_dir: Path

    @property
    def provider(self) -> InternalProvider:
        provider = self.ctx.provider
        assert isinstance(provider, InternalProvider)
        return provider


def config(data_dir: Path) -> Config:
    settings: dict[str, Any] = {
        "server": {"domain": DOMAIN, "data_dir": str(data_dir)},
        "auth": {"scram_iterations": 4096},
        "modules": {"legacy_auth": {"enabled": True, "zero_knowledge": True, "digest": True}},
    }
    return Config.model_validate(settings)


async def make_node(db_url: str, data_dir: Path, server: RedisServer, name: str) -> Node:
    db = await Database.open(db_url)
    provider = InternalProvider(db.accounts, cache_size=100, data_dir=data_dir)
    await provider.warm()
    ctx = ServerContext(config(data_dir), db, provider)
    node = ClusterNode(options(server), name=name)
    await node.start()
    ctx.cluster = node  # what `join_cluster` does first
    await share_auth_state(ctx, node)
    return Node(ctx, db, node, data_dir)


@pytest.fixture
async def two(
    db_url: str, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[Node, Node]]:
    a = await make_node(db_url, tmp_path / "a", redis_server, "a")
    b = await make_node(db_url, tmp_path / "b", redis_server, "b")
    yield a, b
    for n in (a, b):
        await n.node.close()
        await n.provider.close()
        await n.db.close()


async def test_the_context_and_its_gate_use_the_shared_state(two: tuple[Node, Node]) -> None:
    a, _b = two
    assert isinstance(a.ctx.auth_throttle, ClusterAuthThrottle)
    assert a.ctx.login_gate.throttle is a.ctx.auth_throttle
    assert isinstance(a.ctx.registration_throttle, ClusterRegistrationThrottle)
    service = server_account_service(a.ctx, AccountPolicy())
    assert isinstance(service._changed, ClusterCredentialsChanged)


async def test_wrong_passwords_on_both_nodes_are_held_as_on_one(two: tuple[Node, Node]) -> None:
    a, b = two
    free = a.ctx.config.auth.throttle.address.free_failures
    holds = []
    for i in range(free + 1):
        node, other = (a, b) if i % 2 == 0 else (b, a)
        decision = await node.ctx.login_gate.check_password(
            node.provider, "xmpp", f"user{i}", DOMAIN, "wrong", ATTACKER
        )
        assert decision.reason is Reason.WRONG_CREDENTIALS
        holds.append(decision.hold)
        throttle = node.ctx.auth_throttle
        assert isinstance(throttle, ClusterAuthThrottle)
        await throttle.recorder.drain()
        place = throttle.place(ATTACKER)
        table = other.ctx.auth_throttle
        assert isinstance(table, ClusterAuthThrottle) and place is not None
        await wait_for(
            lambda t=table, p=place, n=i + 1: (
                (s := t._addresses.mapping.get(p)) is not None and s.failures >= n
            )
        )
    assert holds[:free] == [0.0] * free
    assert holds[free] > 0  # the first failure past the free ones, on either node


async def test_registered_on_one_node_logs_in_on_the_other(two: tuple[Node, Node]) -> None:
    a, b = two
    assert b.provider.complete
    service = server_account_service(a.ctx, AccountPolicy())
    await service.create("alice", DOMAIN, "correct horse battery")

    async def allowed(password: str) -> bool:
        decision = await b.ctx.login_gate.check_password(
            b.provider, "xmpp", "alice", DOMAIN, password, "192.0.2.1"
        )
        return decision.allowed

    await eventually(lambda: allowed("correct horse battery"))
    await service.change_password("alice", DOMAIN, "a new long password")

    await eventually(lambda: _not(allowed("correct horse battery")))
    assert await allowed("a new long password")


async def _not(result: Awaitable[bool]) -> bool:
    return not await result


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """`check()` comes true within `timeout` seconds (a message from the other node)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not true in time"
        await asyncio.sleep(0.02)


async def test_unknown_users_get_the_same_answers_from_every_node(
    two: tuple[Node, Node],
) -> None:
    """Installation secrets are the database's: SCRAM's fake salt and XEP-0078's decoy
    answers for a name without an account are the same on both nodes."""
    a, b = two
    secrets = [await load_sasl_secret(n.db.secrets, n.data_dir) for n in (a, b)]
    assert secrets[0] == secrets[1]

    def server_first(secret: bytes) -> dict[str, str]:
        mech = ScramSha256Mechanism(ConnectionFacts(domain=DOMAIN, tls_active=True), secret)
        step = mech.start(b"n,,n=nobody,r=abc")
        assert isinstance(step, NeedCredentials)
        challenge = mech.resume(CredentialAnswer())
        assert isinstance(challenge, Challenge)
        return dict(part.split("=", 1) for part in challenge.data.decode().split(","))

    first = [server_first(s) for s in secrets]
    assert first[0]["s"] == first[1]["s"] and first[0]["i"] == first[1]["i"]
    assert len(base64.b64decode(first[0]["s"])) >= 16

    answers = []
    census = LegacyCensus({(True, True): 1, (True, False): 1, (False, True): 2})
    for n in (a, b):
        module = LegacyAuth()
        list(module.setup(n.ctx))
        await module._load_decoy()
        decoy = module._decoy_for()
        answers.append([decoy.answer(f"nobody{i}", DOMAIN, census) for i in range(20)])
    assert answers[0] == answers[1]
    assert any(answer.chain is not None for answer in answers[0])


async def test_anonymous_login_windows_are_shared(
    db: Database, tmp_path: Path, redis_server: RedisServer
) -> None:
    settings: dict[str, Any] = {
        "server": {"domain": DOMAIN, "data_dir": str(tmp_path)},
        "hosts": {"anon.example.org": {"anonymous": True, "anonymous_limits": {"per_address": 1}}},
    }
    cfg = Config.model_validate(settings)
    provider = InternalProvider(db.accounts, cache_size=10, data_dir=None)
    nodes, limits = [], []
    for name in ("a", "b"):
        hosts = {
            DOMAIN: VirtualHost(DOMAIN, cfg.host(DOMAIN), provider, None, False),
            "anon.example.org": VirtualHost(
                "anon.example.org",
                cfg.host("anon.example.org"),
                AnonymousProvider(),
                None,
                True,
                AnonymousLoginLimit(
                    cfg.host("anon.example.org").anonymous_limits, cfg.auth.throttle
                ),
            ),
        }
        ctx = ServerContext(cfg, db, provider, hosts)
        node = ClusterNode(options(redis_server), name=name)
        await node.start()
        await share_auth_state(ctx, node)
        nodes.append(node)
        limit = hosts["anon.example.org"].anonymous_limit
        assert limit is not None
        limits.append(limit)
    try:
        now = asyncio.get_running_loop().time()
        assert limits[0].admit(ATTACKER, now)
        windows = limits[1].windows
        assert isinstance(windows, ClusterRegistrationThrottle)
        await wait_for(lambda: limits[1].windows.check(ATTACKER, now) is not ALLOW)
        assert not limits[1].admit(ATTACKER, now)  # one per address, on either node
    finally:
        for node in nodes:
            await node.close()
