"""XEP-0078's answer for a username without an account: one of the answers accounts
get, in their proportions, the same on every query and from every process.

The pure choice (`LegacyDecoy`) is checked on its own; the census against a real
SQLite database; and the whole through the real connection (`wire`): an account
left without legacy secrets after `digest` was switched on, and a name with no
account, must get the same method list.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chatgate.auth.credentials import derive_all
from chatgate.modules.legacy_auth import derive_legacy_secrets
from chatgate.modules.legacy_decoy import CensusCache, LegacyDecoy
from chatgate.storage.database import Database
from chatgate.storage.repositories.legacy_census import LegacyCensus

from .wire import Server

SECRET = b"decoy secret for tests, 32 bytes"
NAMES = [f"user{n}" for n in range(2000)]


def decoy(**options: Any) -> LegacyDecoy:
    settings = {"digest": True, "zero_knowledge": True, "sequence": 500, **options}
    return LegacyDecoy(SECRET, **settings)


def test_without_accounts_every_configured_method_is_offered() -> None:
    answer = decoy().answer("nobody", "localhost", LegacyCensus())
    assert answer.digest and answer.chain is not None
    answer = decoy(digest=False, zero_knowledge=False).answer("nobody", "localhost", LegacyCensus())
    assert not answer.digest and answer.chain is None


def test_when_no_account_holds_a_secret_no_unknown_name_is_offered_its_method() -> None:
    census = LegacyCensus({(False, False): 7})
    answers = [decoy().answer(name, "localhost", census) for name in NAMES]
    assert not any(a.digest or a.chain for a in answers)


def test_when_every_account_holds_both_every_unknown_name_is_offered_both() -> None:
    census = LegacyCensus({(True, True): 3})
    answers = [decoy().answer(name, "localhost", census) for name in NAMES]
    assert all(a.digest and a.chain is not None for a in answers)


def test_unknown_names_take_the_accounts_proportions() -> None:
    census = LegacyCensus({(True, False): 3, (False, False): 1})
    offered = sum(decoy().answer(name, "localhost", census).digest for name in NAMES)
    assert 0.70 < offered / len(NAMES) < 0.80  # 3 in 4 accounts hold a digest secret


def test_a_name_gets_the_same_answer_every_time_and_everywhere() -> None:
    census = LegacyCensus({(True, True): 1, (False, False): 1})
    first = [decoy().answer(name, "localhost", census) for name in NAMES[:200]]
    again = [decoy().answer(name, "localhost", census) for name in NAMES[:200]]
    assert first == again  # another LegacyDecoy with the same secret: another process
    other = LegacyDecoy(
        b"another installation's secret!!!", digest=True, zero_knowledge=True, sequence=500
    )
    assert [other.answer(n, "localhost", census) for n in NAMES[:200]] != first


def test_a_fake_chain_looks_like_a_fresh_one() -> None:
    for name in NAMES[:200]:
        chain = decoy().chain(name, "localhost")
        assert re.fullmatch(r"[0-9A-F]{8}", chain.token)
        assert 485 <= chain.sequence <= 500
        assert chain.hash == ""  # no presented hash can match it


async def test_the_census_counts_each_kind_of_account(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        keys = derive_all("pw")
        await db.accounts.create("plain", "localhost", keys)
        for name, digest, zk in (("both", True, True), ("digest", True, False)):
            await db.accounts.create(name, "localhost", keys)
            options = _options(digest=digest, zero_knowledge=zk)
            secrets = derive_legacy_secrets("pw", name, "localhost", options)
            await db.legacy.set_secrets((name, "localhost"), secrets)
        await db.accounts.create("elsewhere", "example.net", keys)
        await db.accounts.create("anon", "localhost", {}, anonymous=True)
        census = await db.legacy_census.census("localhost")
        assert census.counts == {(True, True): 1, (True, False): 1, (False, False): 1}
        assert (await db.legacy_census.census("example.net")).counts == {(False, False): 1}
        assert (await db.legacy_census.census("nowhere")).total == 0
    finally:
        await db.close()


async def test_the_census_is_counted_again_once_old() -> None:
    counted: list[str] = []

    async def count(domain: str) -> LegacyCensus:
        counted.append(domain)
        return LegacyCensus({(True, True): len(counted)})

    cache = CensusCache(count, ttl=60)
    assert (await cache.get("localhost", 0)).total == 1
    assert (await cache.get("localhost", 59)).total == 1
    assert (await cache.get("localhost", 60)).total == 2
    assert counted == ["localhost", "localhost"]


def _options(**fields: Any):  # type: ignore[no-untyped-def]
    from chatgate.modules.legacy_auth import LegacyAuthOptions

    return LegacyAuthOptions(**fields)


# ---------------------------------------------------------------- through the connection

ALL = {"enabled": True, "digest": True, "zero_knowledge": True}


def auth_get(username: str) -> str:
    return (
        "<iq type='get' id='a1'><query xmlns='jabber:iq:auth'>"
        f"<username>{username}</username></query></iq>"
    )


def methods(answer: str) -> list[str]:
    names = re.findall(r"<([a-z]+)(?=[\s/>])", answer)
    return names[names.index("query") + 1 :]


@contextlib.asynccontextmanager
async def server(tmp: Path, legacy: dict[str, Any]) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, {"legacy_auth": legacy})
    try:
        yield srv
    finally:
        await srv.stop()


async def ask(srv: Server, username: str) -> str:
    wire = srv.connect()
    await wire.open()
    return await wire.send(auth_get(username))


async def test_an_account_without_legacy_secrets_and_an_unknown_name_look_alike(
    tmp_path: Path,
) -> None:
    """Accounts made before `digest` and `zero_knowledge` were switched on hold
    neither secret, and are offered neither method; neither is a name without an
    account (it used to be offered both)."""
    async with server(tmp_path, ALL) as srv:
        await srv.add_user("bill", "Calli0pe")  # no legacy secrets
        known = methods(await ask(srv, "bill"))
        assert known == ["username", "password", "resource"]
        assert methods(await ask(srv, "nobody")) == known


async def test_a_provisioned_account_and_an_unknown_name_look_alike(tmp_path: Path) -> None:
    async with server(tmp_path, ALL) as srv:
        await srv.add_user("dj", "secret")
        options = srv.module("legacy_auth").options
        secrets = derive_legacy_secrets("secret", "dj", "localhost", options)
        await srv.db.legacy.set_secrets(("dj", "localhost"), secrets)
        known = methods(await ask(srv, "dj"))
        assert known == ["username", "password", "digest", "sequence", "token", "resource"]
        assert methods(await ask(srv, "nobody")) == known


async def test_a_restarted_server_gives_an_unknown_name_the_same_chain(tmp_path: Path) -> None:
    async with server(tmp_path, ALL) as srv:
        before = await ask(srv, "nobody")
    async with server(tmp_path, ALL) as srv:
        assert await ask(srv, "nobody") == before
    assert "<token>" in before


def test_a_census_a_few_accounts_apart_gives_nearly_every_name_the_same_answer() -> None:
    """Two nodes count their censuses at different moments: answers for unknown names
    must not be re-dealt by an account made in between (a name answering one way on
    one node and another way on the next is no account)."""
    before = LegacyCensus({(True, True): 500, (False, False): 500})
    after = LegacyCensus({(True, True): 502, (False, False): 501})
    changed = sum(
        decoy().kind(name, "localhost", before) != decoy().kind(name, "localhost", after)
        for name in NAMES
    )
    assert changed / len(NAMES) < 0.01
