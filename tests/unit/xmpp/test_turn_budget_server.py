"""The parsing budget of a loop turn with the real server (`chatgate.server.Server`
in this process) and clients on real TCP connections, at its harshest: a budget of
0 s, so that every connection but the first one read in a turn waits for the next
turn.  Logins, presence and messages still go through, each in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.config import Config
from chatgate.server import Server
from chatgate.xmpp.transports.turns import TurnBudget, turn_budget
from tests.unit.modules.muc.test_cluster_rooms import C, RawClient

USERS = [f"user{i}" for i in range(12)]
MESSAGES = 40


def config(tmp: Path) -> Config:
    return Config.model_validate(
        {
            "server": {"domain": "localhost", "data_dir": str(tmp / "data")},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"},
            "listeners": [{"port": 0, "tls": "none", "require_tls": False}],
            "auth": {"mechanisms": ["PLAIN"], "allow_plain_without_tls": True},
            "http": {"enabled": False},
        }
    )


async def add_users(server: Server, users: list[str]) -> None:
    """Accounts USER@localhost with the password USER-pw, as `RawClient` logs in."""
    assert server.ctx is not None
    for user in users:
        await server.ctx.db.accounts.create(
            user, "localhost", derive_all(f"{user}-pw", iterations=4096)
        )
        server.ctx.provider.invalidate(user, "localhost")  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[Server]:
    server = Server(config(tmp))
    await server.start()
    try:
        await add_users(server, USERS)
        yield server
    finally:
        await server.stop()


def harshest(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The running loop's budget at 0 s; a count of the connections it holds back."""
    budget = turn_budget(asyncio.get_running_loop())
    monkeypatch.setattr(budget, "_seconds", 0.0)
    count = [0]
    defer = TurnBudget.defer

    def counting(self: TurnBudget, connection: object) -> None:
        count[0] += 1
        defer(self, connection)  # type: ignore[arg-type]

    monkeypatch.setattr(TurnBudget, "defer", counting)
    return count


async def test_with_every_turn_over_budget_every_message_arrives_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deferrals = harshest(monkeypatch)
    async with running(tmp_path) as server:
        # one after the other: PLAIN checks are bounded in number at once (a
        # temporary failure past that), which is not what is tested here
        clients = [await RawClient.login(server, user) for user in USERS]
        # each is available once its own presence comes back (RFC 6121 §4.2.2); a
        # message before that would go to offline storage, and arrive out of order
        await asyncio.gather(
            *(client.expect(lambda e: e.tag == C + "presence", timeout=10) for client in clients)
        )
        # every client sends to the next one, all at once, in one write each
        for i, client in enumerate(clients):
            to = USERS[(i + 1) % len(USERS)]
            client.send(
                "".join(
                    f"<message to='{to}@localhost' type='chat' id='m{n}'><body>{n}</body></message>"
                    for n in range(MESSAGES)
                )
            )

        async def bodies(client: RawClient) -> list[str]:
            got: list[str] = []
            while len(got) < MESSAGES:
                el = await client.expect(lambda e: e.tag == C + "message", timeout=10)
                got.append(el.findtext(C + "body") or "")
            return got

        received = await asyncio.gather(*(bodies(client) for client in clients))
        for client in clients:
            client.writer.close()
    assert all(got == [str(n) for n in range(MESSAGES)] for got in received), received
    assert deferrals[0] > 0  # the budget did hold connections back
