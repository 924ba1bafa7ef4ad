"""XEP-0163 PEP through the real connection, modules and storage: who hears an
event (own resources and subscribed contacts whose caps ask for node+notify, never a
stranger), caps discovery and the last item it brings, publish-options
preconditions, retrieval under each access model, node management, and the
attacks (someone else's PEP, huge items, many nodes, malformed forms)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatgate.storage.records import RosterItem, Subscription

from ..wire import Server
from .client import (
    CLIENT,
    EVENT,
    OWNER,
    PUBSUB,
    Client,
    error_of,
    form,
    login,
    pep_server,
    publish,
    ver_of,
)

MOOD = "http://jabber.org/protocol/mood"
MOOD_NOTIFY = [MOOD + "+notify", "http://jabber.org/protocol/caps"]
HAPPY = f"<mood xmlns='{MOOD}'><happy/></mood>"
SAD = f"<mood xmlns='{MOOD}'><sad/></mood>"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"


def moods(events: list) -> list[str]:  # type: ignore[type-arg]
    found = []
    for message in events:
        assert message.get("type") == "headline"
        for item in message.iter(f"{{{EVENT}}}item"):
            for mood in item.iter(f"{{{MOOD}}}mood"):
                found.append(next(iter(mood)).tag.split("}")[1])
    return found


async def three(srv) -> tuple[Client, Client, Client]:  # type: ignore[no-untyped-def]
    alice = await login(srv, "alice")
    bob = await login(srv, "bob")
    carol = await login(srv, "carol")
    await alice.available(MOOD_NOTIFY)
    await bob.available(MOOD_NOTIFY)
    await carol.available(MOOD_NOTIFY)
    for client in (alice, bob, carol):
        client.take()
    return alice, bob, carol


async def test_subscribed_contact_with_notify_hears_a_stranger_does_not(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob, carol = await three(srv)
        result = await alice.iq("set", publish(MOOD, HAPPY, "current"))
        assert result.get("type") == "result"
        item = result.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item")
        assert item is not None and item.get("id") == "current"
        heard = bob.events()
        assert moods(heard) == ["happy"]
        assert heard[0].get("from") == "alice@localhost" and heard[0].get("to") == bob.jid
        assert carol.events() == []
        # XEP-0163 §4.3.2: the owner's own resources with +notify hear it too
        assert moods(alice.events()) == ["happy"]


async def test_without_notify_in_caps_nothing_is_sent(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await alice.available([])
        await bob.available(["http://jabber.org/protocol/caps"])
        await alice.iq("set", publish(MOOD, HAPPY))
        assert bob.events() == []


async def test_caps_discovery_brings_the_last_published_item(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        await alice.iq("set", publish(MOOD, SAD, "1"))
        await alice.iq("set", publish(MOOD, HAPPY, "2"))
        bob = await login(srv, "bob")
        await bob.send_nowait(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            f"node='n' ver='{_ver(MOOD_NOTIFY)}'/></presence>"
        )
        assert await bob.answer_caps(MOOD_NOTIFY), "the server asked for the caps"
        await bob.wire.settle()
        assert moods(bob.events()) == ["happy"]  # only the last one


async def test_known_caps_are_not_asked_again(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, _bob, _carol = await three(srv)
        await alice.iq("set", publish(MOOD, HAPPY))
        bob2 = await login(srv, "bob", "second")
        await bob2.send_nowait(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            f"node='n' ver='{_ver(MOOD_NOTIFY)}'/></presence>"
        )
        await bob2.wire.settle()
        out = bob2.take()
        assert not [el for el in out if el.tag == CLIENT + "iq"], "asked a known ver again"
        assert moods([el for el in out if el.tag == CLIENT + "message"]) == ["happy"]


async def test_forged_ver_is_not_trusted_for_others(tmp_path: Path) -> None:
    """A client claims the ver of MOOD_NOTIFY but answers other features: the answer
    does not hash to the ver, so it is not cached for the next session using it."""
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        carol = await login(srv, "carol")
        await carol.available([], ver=_ver(MOOD_NOTIFY))  # answers no features
        bob = await login(srv, "bob")
        await bob.send_nowait(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            f"node='n' ver='{_ver(MOOD_NOTIFY)}'/></presence>"
        )
        assert await bob.answer_caps(MOOD_NOTIFY), "the unverified ver was asked again"
        await bob.wire.settle()
        await alice.iq("set", publish(MOOD, HAPPY))
        assert moods(bob.events()) == ["happy"]


async def test_retract_notifies_when_asked(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob, _ = await three(srv)
        await alice.iq("set", publish(MOOD, HAPPY, "m1"))
        bob.events()
        retract = f"<pubsub xmlns='{PUBSUB}'><retract node='{MOOD}' notify='true'><item id='m1'/></retract></pubsub>"
        assert (await alice.iq("set", retract)).get("type") == "result"
        (message,) = bob.events()
        gone = message.find(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}retract")
        assert gone is not None and gone.get("id") == "m1"
        again = await alice.iq("set", retract, iq_id="i2")
        assert error_of(again) == ("item-not-found", None)


async def test_items_by_access_model(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob, carol = await three(srv)
        await alice.iq("set", publish(MOOD, HAPPY, "a"))
        items = f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>"
        got = await bob.iq("get", items, to="alice@localhost")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["a"]
        refused = await carol.iq("get", items, to="alice@localhost")
        assert error_of(refused) == ("not-authorized", "presence-subscription-required")
        # open: the stranger may read
        configure = (
            f"<pubsub xmlns='{OWNER}'><configure node='{MOOD}'>"
            f"{form(NODE_CONFIG, {'pubsub#access_model': 'open'})}</configure></pubsub>"
        )
        assert (await alice.iq("set", configure)).get("type") == "result"
        got = await carol.iq("get", items, to="alice@localhost")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["a"]
        # whitelist: only the owner
        configure = configure.replace("open", "whitelist")
        await alice.iq("set", configure)
        assert error_of(await bob.iq("get", items, to="alice@localhost")) == (
            "not-allowed",
            "closed-node",
        )
        assert (await alice.iq("get", items)).get("type") == "result"
        # roster: the groups allowed
        roster = (
            f"<pubsub xmlns='{OWNER}'><configure node='{MOOD}'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NODE_CONFIG}</value></field>"
            "<field var='pubsub#access_model'><value>roster</value></field>"
            "<field var='pubsub#roster_groups_allowed'><value>friends</value></field>"
            "</x></configure></pubsub>"
        )
        await alice.iq("set", roster)
        assert (await bob.iq("get", items, to="alice@localhost")).get("type") == "result"
        roster_family = roster.replace(">friends<", ">family<")
        await alice.iq("set", roster_family)
        assert error_of(await bob.iq("get", items, to="alice@localhost")) == (
            "not-authorized",
            "not-in-roster-group",
        )


async def test_items_max_items_and_ids(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        options = {"pubsub#max_items": "3"}
        for n in range(5):
            await alice.iq(
                "set", publish("urn:x:list", f"<v xmlns='urn:x:list'>{n}</v>", f"i{n}", options)
            )
        everything = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:list'/></pubsub>"
        )
        assert [i.get("id") for i in everything.iter(f"{{{PUBSUB}}}item")] == ["i2", "i3", "i4"]
        newest = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:list' max_items='2'/></pubsub>"
        )
        assert [i.get("id") for i in newest.iter(f"{{{PUBSUB}}}item")] == ["i3", "i4"]
        by_id = await alice.iq(
            "get",
            f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:list'><item id='i3'/><item id='i0'/></items></pubsub>",
        )
        assert [i.get("id") for i in by_id.iter(f"{{{PUBSUB}}}item")] == ["i3"]
        # republishing an id makes it the newest
        await alice.iq("set", publish("urn:x:list", "<v xmlns='urn:x:list'>x</v>", "i2", options))
        last = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:list' max_items='1'/></pubsub>"
        )
        assert [i.get("id") for i in last.iter(f"{{{PUBSUB}}}item")] == ["i2"]
        bad = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:list' max_items='-1'/></pubsub>"
        )
        assert error_of(bad)[0] == "bad-request"
        missing = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:none'/></pubsub>"
        )
        assert error_of(missing) == ("item-not-found", None)


async def test_default_node_keeps_one_item(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        await alice.iq("set", publish(MOOD, SAD, "1"))
        await alice.iq("set", publish(MOOD, HAPPY, "2"))
        got = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["2"]


async def test_publish_options_are_preconditions(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        private = {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"}
        ok = await alice.iq(
            "set", publish("urn:x:secret", "<s xmlns='urn:x:secret'/>", "c", private)
        )
        assert ok.get("type") == "result"
        # "1" and "true" are the same boolean: still matches
        same = {"pubsub#persist_items": "1", "pubsub#access_model": "whitelist"}
        assert (
            await alice.iq("set", publish("urn:x:secret", "<s xmlns='urn:x:secret'/>", "c", same))
        ).get("type") == "result"
        clash = await alice.iq(
            "set",
            publish(
                "urn:x:secret",
                "<s xmlns='urn:x:secret'/>",
                "c",
                {"pubsub#access_model": "presence"},
            ),
        )
        assert error_of(clash) == ("conflict", "precondition-not-met")
        unknown = await alice.iq(
            "set",
            publish("urn:x:secret", "<s xmlns='urn:x:secret'/>", "c", {"pubsub#unknown": "1"}),
        )
        assert error_of(unknown) == ("conflict", "precondition-not-met")
        # the node kept its configuration
        config = await alice.iq(
            "get", f"<pubsub xmlns='{OWNER}'><configure node='urn:x:secret'/></pubsub>"
        )
        access = [
            f.findtext("{jabber:x:data}value")
            for f in config.iter("{jabber:x:data}field")
            if f.get("var") == "pubsub#access_model"
        ]
        assert access == ["whitelist"]


async def test_malformed_forms_and_requests(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        not_submit = publish(MOOD, HAPPY).replace(
            "</publish>",
            f"</publish><publish-options>{form(PUBLISH_OPTIONS, {}, 'form')}</publish-options>",
        )
        assert error_of(await alice.iq("set", not_submit)) == ("bad-request", "invalid-options")
        wrong_type = publish(MOOD, HAPPY, options={}).replace(PUBLISH_OPTIONS, "urn:wrong")
        assert error_of(await alice.iq("set", wrong_type)) == ("bad-request", "invalid-options")
        bad_max = publish(MOOD, HAPPY, options={"pubsub#max_items": "lots"})
        assert error_of(await alice.iq("set", bad_max)) == ("conflict", "precondition-not-met")
        no_node = f"<pubsub xmlns='{PUBSUB}'><publish><item>{HAPPY}</item></publish></pubsub>"
        assert error_of(await alice.iq("set", no_node)) == ("bad-request", "nodeid-required")
        no_payload = (
            f"<pubsub xmlns='{PUBSUB}'><publish node='{MOOD}'><item id='x'/></publish></pubsub>"
        )
        assert error_of(await alice.iq("set", no_payload)) == ("bad-request", "payload-required")
        two = f"<pubsub xmlns='{PUBSUB}'><publish node='{MOOD}'><item>{HAPPY}{SAD}</item></publish></pubsub>"
        assert error_of(await alice.iq("set", two)) == ("bad-request", "invalid-payload")
        instant = f"<pubsub xmlns='{PUBSUB}'><create/></pubsub>"
        assert error_of(await alice.iq("set", instant)) == ("not-acceptable", "nodeid-required")
        configure_bad = f"<pubsub xmlns='{OWNER}'><create node='n'/></pubsub>"
        assert error_of(await alice.iq("set", configure_bad))[0] == "feature-not-implemented"
        empty = f"<pubsub xmlns='{PUBSUB}'/>"
        assert error_of(await alice.iq("set", empty))[0] == "bad-request"
        subscribe = (
            f"<pubsub xmlns='{PUBSUB}'><subscribe node='{MOOD}' jid='alice@localhost'/></pubsub>"
        )
        assert error_of(await alice.iq("set", subscribe)) == (
            "feature-not-implemented",
            "unsupported",
        )
        # still serving
        assert (await alice.iq("set", publish(MOOD, HAPPY))).get("type") == "result"


async def test_someone_elses_pep_is_forbidden(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob, _ = await three(srv)
        await alice.iq("set", publish(MOOD, HAPPY, "mine"))
        bob.events()
        forged = await bob.iq("set", publish(MOOD, SAD, "mine"), to="alice@localhost")
        assert error_of(forged) == ("forbidden", None)
        delete = f"<pubsub xmlns='{OWNER}'><delete node='{MOOD}'/></pubsub>"
        assert error_of(await bob.iq("set", delete, to="alice@localhost")) == ("forbidden", None)
        got = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>")
        assert len(list(got.iter(f"{{{MOOD}}}happy"))) == 1
        assert list(got.iter(f"{{{MOOD}}}sad")) == []
        assert bob.events() == []


async def test_huge_item_and_many_nodes_are_refused(tmp_path: Path) -> None:
    async with pep_server(tmp_path, max_item_bytes=2048, max_nodes_per_account=3) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        huge = f"<blob xmlns='urn:x:b'>{'A' * 4000}</blob>"
        refused = await alice.iq("set", publish("urn:x:b", huge))
        assert error_of(refused) == ("not-acceptable", "payload-too-big")
        assert len(refused.findall(f"{{{PUBSUB}}}pubsub")) == 0, "a big refused item is not echoed"
        for n in range(3):
            assert (await alice.iq("set", publish(f"urn:x:{n}", "<v xmlns='urn:x'/>"))).get(
                "type"
            ) == "result"
        fourth = await alice.iq("set", publish("urn:x:3", "<v xmlns='urn:x'/>"))
        assert error_of(fourth) == ("resource-constraint", None)
        create = await alice.iq(
            "set", f"<pubsub xmlns='{PUBSUB}'><create node='urn:x:9'/></pubsub>"
        )
        assert error_of(create) == ("resource-constraint", None)


async def test_create_configure_delete_and_purge(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice, bob, _ = await three(srv)
        create = (
            f"<pubsub xmlns='{PUBSUB}'><create node='{MOOD}'/><configure>"
            f"{form(NODE_CONFIG, {'pubsub#max_items': '2'})}</configure></pubsub>"
        )
        assert (await alice.iq("set", create)).get("type") == "result"
        assert error_of(await alice.iq("set", create)) == ("conflict", None)
        for n in range(3):
            await alice.iq("set", publish(MOOD, HAPPY, f"m{n}"))
        got = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["m1", "m2"]
        shrink = f"<pubsub xmlns='{OWNER}'><configure node='{MOOD}'>{form(NODE_CONFIG, {'pubsub#max_items': '1'})}</configure></pubsub>"
        await alice.iq("set", shrink)
        got = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["m2"]
        affiliations = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><affiliations/></pubsub>")
        assert [a.get("node") for a in affiliations.iter(f"{{{PUBSUB}}}affiliation")] == [MOOD]
        bob.events()
        purge = f"<pubsub xmlns='{OWNER}'><purge node='{MOOD}'/></pubsub>"
        assert (await alice.iq("set", purge)).get("type") == "result"
        got = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>")
        assert list(got.iter(f"{{{PUBSUB}}}item")) == []
        assert [m.find(f"{{{EVENT}}}event/{{{EVENT}}}purge") is not None for m in bob.events()] == [
            True
        ]
        delete = f"<pubsub xmlns='{OWNER}'><delete node='{MOOD}'/></pubsub>"
        assert (await alice.iq("set", delete)).get("type") == "result"
        (message,) = bob.events()
        assert message.find(f"{{{EVENT}}}event/{{{EVENT}}}delete").get("node") == MOOD
        assert error_of(await alice.iq("set", delete))[0] == "item-not-found"


async def test_account_disco_lists_pep_features(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        bob = await login(srv, "bob")
        info = await bob.iq(
            "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", to="alice@localhost"
        )
        features = {
            f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")
        }
        assert "http://jabber.org/protocol/pubsub#publish-options" in features
        assert "http://jabber.org/protocol/pubsub#publish" in features


async def test_pubsub_to_the_server_or_a_resource_is_not_pep(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        to_server = await alice.iq("set", publish(MOOD, HAPPY), to="localhost")
        assert error_of(to_server) == ("service-unavailable", None)
        items = f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>"
        nobody = await alice.iq("get", items, to="nobody@localhost", iq_id="i2")
        assert error_of(nobody) == ("item-not-found", None)


async def test_disabled_pep_answers_service_unavailable(tmp_path: Path) -> None:
    async with pep_server(tmp_path, enabled=False) as srv:
        alice = await login(srv, "alice")
        assert error_of(await alice.iq("set", publish(MOOD, HAPPY)))[0] == "service-unavailable"


def _ver(features: list[str]) -> str:
    return ver_of(features)


async def test_private_pep_storage_survives_a_restart(tmp_path: Path) -> None:
    """XEP-0223: persist_items + whitelist keeps private data on PEP, for the owner
    only, across a restart of the server."""
    secret = "<prefs xmlns='urn:x:prefs'><theme>dark</theme></prefs>"
    options = {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"}
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await alice.available(["urn:x:prefs+notify"])
        await bob.available(["urn:x:prefs+notify"])
        alice.take()
        bob.take()
        assert (await alice.iq("set", publish("urn:x:prefs", secret, "current", options))).get(
            "type"
        ) == "result"
        assert len(alice.events()) == 1  # the owner's resource hears it
        assert bob.events() == []  # bob is subscribed and interested, but it is whitelist
    srv = await Server.start(tmp_path, {})
    try:
        alice = await login(srv, "alice")
        got = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:prefs'/></pubsub>"
        )
        assert got.findtext(".//{urn:x:prefs}theme") == "dark"
        bob = await login(srv, "bob")
        refused = await bob.iq(
            "get",
            f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:prefs'/></pubsub>",
            to="alice@localhost",
        )
        assert error_of(refused) == ("not-allowed", "closed-node")
    finally:
        await srv.stop()


async def test_only_from_or_both_subscriptions_hear(tmp_path: Path) -> None:
    """carol is in alice's roster with subscription 'to' (alice sees carol, carol
    does not see alice): carol hears nothing, and may not read the node."""
    async with pep_server(tmp_path) as srv:
        await srv.db.roster.put(
            ("alice", "localhost"), RosterItem("carol@localhost", subscription=Subscription.TO)
        )
        await srv.db.roster.put(
            ("carol", "localhost"), RosterItem("alice@localhost", subscription=Subscription.FROM)
        )
        alice, bob, carol = await three(srv)
        await alice.iq("set", publish(MOOD, HAPPY))
        assert moods(bob.events()) == ["happy"]
        assert carol.events() == []
        items = f"<pubsub xmlns='{PUBSUB}'><items node='{MOOD}'/></pubsub>"
        assert error_of(await carol.iq("get", items, to="alice@localhost")) == (
            "not-authorized",
            "presence-subscription-required",
        )


async def test_caps_changed_in_a_later_presence_are_learned_at_the_next_event(
    tmp_path: Path,
) -> None:
    """bob comes online without +notify, then sends presence with new caps: the
    next publish asks him, and once he answers he gets the item (as the last one)."""
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await alice.available([])
        await bob.available(["http://jabber.org/protocol/caps"])
        bob.take()
        await bob.send_nowait(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            f"node='n' ver='{_ver(MOOD_NOTIFY)}'/></presence>"
        )
        await bob.wire.settle()
        bob.take()
        await alice.send_nowait(f"<iq type='set' id='p'>{publish(MOOD, HAPPY)}</iq>")
        assert await bob.answer_caps(MOOD_NOTIFY), "the new caps were asked at the publish"
        await bob.wire.settle()
        assert moods(bob.events()) == ["happy"]


async def test_a_question_goes_with_the_session_that_never_answers(tmp_path: Path) -> None:
    """A client that announces caps, never answers and leaves: its question ends
    with it (nothing waits for the 10 s timeout, not even the server's stop)."""
    async with pep_server(tmp_path) as srv:
        bob = await login(srv, "bob")
        await bob.send_nowait(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            "node='n' ver='never-answered'/></presence>"
        )
        asked = [el for el in bob.take() if el.tag == CLIENT + "iq"]
        assert len(asked) == 1
        assert srv.ctx._background, "the question is pending"
        started = asyncio.get_running_loop().time()
        await bob.send_nowait("</stream:stream>")
        await bob.wire.settle()
        assert asyncio.get_running_loop().time() - started < 2
        assert not srv.ctx._background
