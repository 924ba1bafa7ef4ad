"""Message archive management (XEP-0313) against the real `chatgate serve`, with
slixmpp's own XEP-0313/0059/0441 plugins as the client: history paged both ways
and filtered, preferences, the no-store hint, forged stanza-ids removed, a
message for an offline user archived for them; and the attacks (huge max,
garbage forms, unknown ids, someone else's archive, many queries at once)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from .conftest import Client, RunningServer, logged_in

pytestmark = pytest.mark.e2e

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
USERS = ("alice", "bob", "carol", "dave", "erin", "mallory")


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in USERS:
        server.add_user(name, f"{name}-password")


def mam_client(client: Client) -> Client:
    for plugin in ("xep_0059", "xep_0313", "xep_0441", "xep_0334", "xep_0359"):
        client.register_plugin(plugin)
    return client


async def settle(client: Client) -> None:
    """A ping round trip: the server has processed what the client sent before it."""
    await client.plugin["xep_0199"].ping(jid="localhost", timeout=5)


async def history(client: Client, *, reverse: bool = False, page: int = 5, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    bodies = []
    async for message in client.plugin["xep_0313"].iterate(
        reverse=reverse, rsm={"max": page}, **kw
    ):
        bodies.append(message["mam_result"]["forwarded"]["stanza"]["body"])
    return bodies


async def raw_query(client: Client, inner: str, to: str | None = None) -> list[ET.Element]:
    """Send a hand-written <query/>; returns the IQ result's children (raises IqError)."""
    iq = client.make_iq_set(ito=to)
    iq.append(ET.fromstring(f"<query xmlns='{MAM}' queryid='raw'>{inner}</query>"))
    result = await iq.send(timeout=10)
    return list(result.xml)


async def test_two_users_talk_and_page_through_history(server: RunningServer) -> None:
    async with (
        logged_in(server, "alice@localhost/desk", "alice-password") as alice,
        logged_in(server, "bob@localhost/phone", "bob-password") as bob,
    ):
        mam_client(alice), mam_client(bob)
        stanza_ids = []
        for i in range(6):
            alice.send_message(mto="bob@localhost", mbody=f"a{i}", mtype="chat")
            got = await bob.next_message()
            stanza_ids.append(got["stanza_id"]["id"])
            assert got["stanza_id"]["by"] == "bob@localhost"
            bob.send_message(mto="alice@localhost", mbody=f"b{i}", mtype="chat")
            await alice.next_message()
        await settle(alice)
        expected = [f"{who}{i}" for i in range(6) for who in "ab"]
        assert await history(alice) == expected
        assert await history(alice, reverse=True) == list(reversed(expected))
        assert await history(bob, page=4) == expected
        # the ids bob got are those of his archive
        results = await bob.plugin["xep_0313"].retrieve(rsm={"max": 50})
        archived = [r["mam_result"]["id"] for r in results["mam"]["results"]]
        assert [archived[i] for i in range(0, 12, 2)] == stanza_ids
        # filters: with, start/end
        carol_only = await history(alice, with_jid=JID("carol@localhost"))
        assert carol_only == []
        soon = datetime.now(UTC) + timedelta(minutes=5)
        assert await history(alice, start=soon) == []
        assert await history(alice, end=soon, with_jid=JID("bob@localhost")) == expected
        # form and metadata
        form = await alice.plugin["xep_0313"].get_fields()
        assert {"with", "start", "end", "after-id", "before-id", "ids"} <= set(form.get_fields())
        meta = await alice.plugin["xep_0313"].get_archive_metadata()
        assert meta["mam_metadata"]["start"]["id"] != meta["mam_metadata"]["end"]["id"]
        info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
        features = info["disco_info"]["features"]
        assert MAM in features and MAM + "#extended" in features


async def test_preferences_and_the_no_store_hint(server: RunningServer) -> None:
    async with (
        logged_in(server, "carol@localhost/a", "carol-password") as carol,
        logged_in(server, "dave@localhost/b", "dave-password") as dave,
    ):
        mam_client(carol), mam_client(dave)
        await dave.plugin["xep_0441"].set_preferences(
            default="never", always=[JID("erin@localhost")], never=[]
        )
        default, always, never = await dave.plugin["xep_0441"].get_preferences()
        assert default == "never" and {str(j) for j in always} == {"erin@localhost"}
        assert list(never) == []
        carol.send_message(mto="dave@localhost", mbody="not for dave's archive", mtype="chat")
        got = await dave.next_message()
        assert got["stanza_id"]["id"] == ""
        hinted = carol.make_message(mto="dave@localhost", mbody="ephemeral", mtype="chat")
        hinted.enable("no-store")
        hinted.send()
        await dave.next_message()
        carol.send_message(mto="dave@localhost", mbody="kept by carol", mtype="chat")
        await dave.next_message()
        await settle(carol)
        assert await history(dave) == []
        assert await history(carol) == ["not for dave's archive", "kept by carol"]


async def test_forged_stanza_id_is_removed(server: RunningServer) -> None:
    async with (
        logged_in(server, "mallory@localhost/x", "mallory-password") as mallory,
        logged_in(server, "erin@localhost/y", "erin-password") as erin,
    ):
        message = mallory.make_message(mto="erin@localhost", mbody="trust me", mtype="chat")
        message.xml.append(
            ET.fromstring(f"<stanza-id xmlns='{SID}' by='erin@localhost' id='fake'/>")
        )
        message.send()
        got = await erin.next_message()
        ids = [el for el in got.xml if el.tag == f"{{{SID}}}stanza-id"]
        assert len(ids) == 1 and ids[0].get("id") != "fake"


async def test_a_message_for_an_offline_user_is_in_their_archive(server: RunningServer) -> None:
    async with logged_in(server, "erin@localhost/z", "erin-password") as erin:
        erin.send_message(mto="bob@localhost", mbody="while you were out", mtype="chat")
        await settle(erin)
    async with logged_in(server, "bob@localhost/later", "bob-password", send_presence=False) as bob:
        mam_client(bob)
        bodies = await history(bob, reverse=True, page=1)
        assert bodies[0] == "while you were out"


@pytest.mark.parametrize(
    ("inner", "condition"),
    [
        (
            "<x xmlns='jabber:x:data' type='submit'><field var='start'><value>\x01garbage</value></field></x>".replace(
                "\x01", ""
            ),
            "bad-request",
        ),
        (
            "<x xmlns='jabber:x:data' type='submit'><field var='nonsense'><value>1</value></field></x>",
            "bad-request",
        ),
        ("<x xmlns='jabber:x:data'><field/></x>", "bad-request"),
        (
            "<set xmlns='http://jabber.org/protocol/rsm'><after>00000000000000000000000000</after></set>",
            "item-not-found",
        ),
        (
            "<set xmlns='http://jabber.org/protocol/rsm'><before>../../etc/passwd</before></set>",
            "item-not-found",
        ),
    ],
)
async def test_bad_queries_are_refused_precisely(
    server: RunningServer, inner: str, condition: str
) -> None:
    async with logged_in(server, "mallory@localhost/q", "mallory-password") as mallory:
        with pytest.raises(IqError) as failure:
            await raw_query(mallory, inner)
        assert failure.value.iq["error"]["condition"] == condition
        assert await raw_query(mallory, "") is not None  # still served


async def test_someone_elses_archive_is_forbidden(server: RunningServer) -> None:
    async with logged_in(server, "mallory@localhost/spy", "mallory-password") as mallory:
        with pytest.raises(IqError) as failure:
            await raw_query(mallory, "", to="alice@localhost")
        assert failure.value.iq["error"]["condition"] == "forbidden"
        with pytest.raises(IqError) as failure:
            await raw_query(mallory, "", to="localhost")
        assert failure.value.iq["error"]["condition"] == "forbidden"


async def test_many_queries_at_once_are_answered_or_refused_and_chat_goes_on(
    server: RunningServer,
) -> None:
    async with (
        logged_in(server, "alice@localhost/flood", "alice-password") as alice,
        logged_in(server, "bob@localhost/calm", "bob-password") as bob,
    ):
        outcomes = await asyncio.gather(
            *(
                raw_query(alice, "<set xmlns='http://jabber.org/protocol/rsm'><max>250</max></set>")
                for _ in range(40)
            ),
            return_exceptions=True,
        )
        answered = [o for o in outcomes if isinstance(o, list)]
        refused = [o for o in outcomes if isinstance(o, IqError)]
        assert len(answered) + len(refused) == 40, outcomes
        assert answered, "some queries must be answered"
        assert all(r.iq["error"]["condition"] == "resource-constraint" for r in refused)
        alice.send_message(mto="bob@localhost/calm", mbody="still here", mtype="chat")
        got = await bob.next_message()
        while got["body"] != "still here":  # offline messages of earlier tests come first
            got = await bob.next_message()


async def test_a_huge_max_is_answered_with_one_capped_page(server: RunningServer) -> None:
    async with logged_in(server, "alice@localhost/big", "alice-password") as alice:
        children = await raw_query(
            alice, "<set xmlns='http://jabber.org/protocol/rsm'><max>1000000000</max></set>"
        )
        (fin,) = [c for c in children if c.tag == f"{{{MAM}}}fin"]
        rsm = "{http://jabber.org/protocol/rsm}"
        # answered (not refused), all of alice's history on one page at most max_page long
        assert fin.get("complete") == "true"
        assert fin.findtext(f"{rsm}set/{rsm}first") and fin.findtext(f"{rsm}set/{rsm}last")
