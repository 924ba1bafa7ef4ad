"""Roster and subscription changes of one account take turns (issue 9, item 14).

Each change is a read, an await (storage), then a write.  Two changes for one
account running at once used to read the same old state, and the second write
undid the first.  These tests interleave two real operations deterministically:
the storage below the roster and presence modules is an in-memory repository
that parks the first operation at a chosen point (between its read and its
write) until the test lets it go.  The second operation gets every chance to run
meanwhile (the loop is turned until it is done or can make no progress: there
is no real I/O, so this is a fixed number of turns, not a timing); then the
first is released and the final state is checked.  Without per-account
serialisation the second operation runs to the end inside that window and its
update is lost.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace

import pytest

from chatgate.config import Config
from chatgate.context import ServerContext
from chatgate.jid import JID
from chatgate.modules.presence import PresenceModule
from chatgate.modules.roster.module import RosterModule
from chatgate.storage.records import RosterItem, Subscription
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

Owner = tuple[str, str]
ALICE: Owner = ("alice", "localhost")
BOB: Owner = ("bob", "localhost")
TURNS = 1_000  # far more loop turns than any operation here needs to finish


@dataclass
class Pause:
    """Where an operation is parked: `parked` is set when it gets there, `release` lets it go."""

    method: str
    owner: Owner
    parked: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryRosterRepository:
    """The `RosterRepository` contract in memory.

    Every call yields to the loop once, as storage I/O would.  A read is parked
    after it has read (so it returns what was true before the pause), a write
    before it writes; only the first call matching `pause` is parked.
    """

    def __init__(self) -> None:
        self.rows: dict[Owner, dict[str, RosterItem]] = defaultdict(dict)
        self.versions: dict[Owner, int] = defaultdict(int)
        self.requests: dict[Owner, list[str]] = defaultdict(list)
        self.pause: Pause | None = None

    async def _turn(self, method: str, owner: Owner) -> None:
        await asyncio.sleep(0)
        pause = self.pause
        if pause is not None and (pause.method, pause.owner) == (method, owner):
            self.pause = None
            pause.parked.set()
            await pause.release.wait()

    async def items(self, owner: Owner) -> list[RosterItem]:
        items = list(self.rows[owner].values())
        await self._turn("items", owner)
        return items

    async def item(self, owner: Owner, contact: str) -> RosterItem | None:
        item = self.rows[owner].get(contact)
        await self._turn("item", owner)
        return item

    async def count(self, owner: Owner) -> int:
        await self._turn("count", owner)
        return len(self.rows[owner])

    async def version(self, owner: Owner) -> int:
        version = self.versions[owner]
        await self._turn("version", owner)
        return version

    async def put(self, owner: Owner, item: RosterItem, max_items: int | None = None) -> int:
        await self._turn("put", owner)
        self.rows[owner][item.jid] = item
        self.versions[owner] += 1
        return self.versions[owner]

    async def remove(self, owner: Owner, contact: str) -> int | None:
        await self._turn("remove", owner)
        if self.rows[owner].pop(contact, None) is None:
            return None
        self.versions[owner] += 1
        return self.versions[owner]

    async def pending_in(self, owner: Owner) -> list[str]:
        pending = list(self.requests[owner])
        await self._turn("pending_in", owner)
        return pending

    async def add_pending_in(
        self, owner: Owner, contact: str, status: str | None, max_requests: int | None = None
    ) -> None:
        await self._turn("add_pending_in", owner)
        if contact not in self.requests[owner]:
            self.requests[owner].append(contact)

    async def remove_pending_in(self, owner: Owner, contact: str) -> bool:
        await self._turn("remove_pending_in", owner)
        if contact in self.requests[owner]:
            self.requests[owner].remove(contact)
            return True
        return False


class MemoryAccounts:
    async def exists(self, username: str, domain: str) -> bool:
        return (username, domain) in (ALICE, BOB)


@dataclass
class MemoryDatabase:
    roster: MemoryRosterRepository = field(default_factory=MemoryRosterRepository)
    accounts: MemoryAccounts = field(default_factory=MemoryAccounts)


@dataclass
class World:
    ctx: ServerContext
    repo: MemoryRosterRepository
    roster: RosterModule
    presence: PresenceModule
    sessions: dict[str, C2SSession]
    out: dict[str, list[bytes]]

    def session(self, user: str) -> C2SSession:
        return self.sessions[user]

    def presence_from(self, user: str, ptype: str, to: str) -> Awaitable[None]:
        session = self.session(user)
        stanza = Element("presence", ns.CLIENT, {"type": ptype, "to": to, "from": session.full})
        pending = self.presence.handle(session, stanza, JID.parse(to))
        assert pending is not None
        return pending

    def roster_set(self, user: str, contact: str, name: str) -> Awaitable[None]:
        iq = Element("iq", ns.CLIENT, {"type": "set", "id": "set"})
        iq.sub("query", ns.ROSTER).sub("item", ns.ROSTER, {"jid": contact, "name": name})
        pending = self.roster.set(self.session(user), iq)
        assert pending is not None
        return pending

    def roster_get(self, user: str) -> Awaitable[None]:
        iq = Element("iq", ns.CLIENT, {"type": "get", "id": "get"})
        iq.sub("query", ns.ROSTER)
        return self.roster.get(self.session(user), iq)


@pytest.fixture
def world() -> World:
    db = MemoryDatabase()
    ctx = ServerContext(Config(), db, object())  # type: ignore[arg-type]
    roster, presence = RosterModule(), PresenceModule()
    ctx.load(roster)
    ctx.load(presence)
    sessions: dict[str, C2SSession] = {}
    out: dict[str, list[bytes]] = {}
    for username, domain in (ALICE, BOB):
        out[username] = []
        session = C2SSession(
            username=username,
            domain=domain,
            resource="r",
            stream_id=username,
            write=out[username].append,
            close=lambda _condition, _text: None,
            transport="test",
        )
        # Bound through the directory, as a connection binds it.
        assert ctx.router.directory.claim(lambda _resource, s=session: s, "r") == (session, None)
        session.interested = session.available = True
        sessions[username] = session
    return World(ctx, db.roster, roster, presence, sessions, out)


async def interleave(world: World, pause: Pause, first: Awaitable[None], second: Awaitable[None]):  # type: ignore[no-untyped-def]
    """Run `first` until it parks at `pause`, give `second` every chance to run, then
    release `first` and let both finish."""
    world.repo.pause = pause
    one = asyncio.ensure_future(first)
    await pause.parked.wait()
    two = asyncio.ensure_future(second)
    for _ in range(TURNS):
        if two.done():
            break
        await asyncio.sleep(0)
    pause.release.set()
    await asyncio.gather(one, two)


async def test_roster_set_and_an_approval_arriving_meanwhile_both_stick(world: World) -> None:
    # bob asked to see alice's presence ("None + Pending Out"); alice has the request.
    world.repo.rows[BOB]["alice@localhost"] = RosterItem("alice@localhost", ask=True)
    world.repo.requests[ALICE].append("bob@localhost")
    # bob renames alice: the module reads the item, then writes it back renamed.
    # Meanwhile alice approves: bob's item becomes "To".
    await interleave(
        world,
        Pause("put", BOB),
        world.roster_set("bob", "alice@localhost", "Al"),
        world.presence_from("alice", "subscribed", "bob@localhost"),
    )
    item = world.repo.rows[BOB]["alice@localhost"]
    assert (item.name, item.subscription, item.ask) == ("Al", Subscription.TO, False)
    assert world.repo.rows[ALICE]["bob@localhost"].subscription is Subscription.FROM
    cached = world.roster.service.cached(BOB)  # type: ignore[union-attr]
    assert cached is None or cached.items["alice@localhost"] == item


async def test_approving_and_subscribing_from_two_resources_both_stick(world: World) -> None:
    # alice asked for bob's presence; bob's two clients answer at once: one approves
    # ("subscribed"), the other asks back ("subscribe").
    world.repo.rows[ALICE]["bob@localhost"] = RosterItem("bob@localhost", ask=True)
    world.repo.requests[BOB].append("alice@localhost")
    await interleave(
        world,
        Pause("put", BOB),
        world.presence_from("bob", "subscribed", "alice@localhost"),
        world.presence_from("bob", "subscribe", "alice@localhost"),
    )
    item = world.repo.rows[BOB]["alice@localhost"]
    # "None + Pending In" -subscribed-> "From" -subscribe-> "From + Pending Out".
    assert (item.subscription, item.ask) == (Subscription.FROM, True)
    assert world.repo.requests[BOB] == []
    assert world.repo.requests[ALICE] == ["bob@localhost"]


async def test_a_roster_loaded_while_it_changes_is_not_cached_stale(world: World) -> None:
    world.repo.rows[BOB]["alice@localhost"] = RosterItem("alice@localhost", ask=True)
    world.repo.requests[ALICE].append("bob@localhost")
    # bob's first roster get reads storage into the cache; alice's approval lands
    # between that read and the cache fill.
    await interleave(
        world,
        Pause("items", BOB),
        world.roster_get("bob"),
        world.presence_from("alice", "subscribed", "bob@localhost"),
    )
    cached = world.roster.service.cached(BOB)  # type: ignore[union-attr]
    assert cached is not None
    assert cached.items["alice@localhost"] == world.repo.rows[BOB]["alice@localhost"]
    assert cached.items["alice@localhost"].subscription is Subscription.TO


async def test_a_change_of_one_account_does_not_wait_for_another(world: World) -> None:
    world.repo.rows[ALICE]["carol@localhost"] = RosterItem("carol@localhost")
    # bob's roster set is parked; alice renaming carol touches neither bob nor his lock.
    world.repo.pause = pause = Pause("put", BOB)
    one = asyncio.ensure_future(world.roster_set("bob", "dave@localhost", "D"))
    await pause.parked.wait()
    await asyncio.wait_for(world.roster_set("alice", "carol@localhost", "C"), TURNS)
    assert world.repo.rows[ALICE]["carol@localhost"] == replace(
        RosterItem("carol@localhost"), name="C"
    )
    pause.release.set()
    await one
