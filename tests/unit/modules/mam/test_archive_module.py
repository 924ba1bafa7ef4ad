"""The message archive through the real connection, router and modules: messages
between accounts land in both archives with a stanza-id on the recipient's copy,
forged stanza-ids are removed, hints and preferences are obeyed, queries page
both ways with filters, and bad queries get the XEP-0313 errors."""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..wire import Server, Wire

C = "{jabber:client}"
MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
RSM = "http://jabber.org/protocol/rsm"
FWD = "urn:xmpp:forward:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = ("alice", "bob", "carol")


@contextlib.asynccontextmanager
async def server(tmp: Path, **mam: Any) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, {"mam": mam} if mam else {})
    for name in USERS:
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, resource: str = "r", available: bool = True) -> Wire:
    wire = srv.connect()
    bound = await wire.login_plain(user, f"{user}-pw", resource)
    assert "<jid>" in bound, bound
    if available:
        await wire.send("<presence/>")
    return wire


def parse(out: str) -> list[ET.Element]:
    return list(ET.fromstring(f"<r xmlns='jabber:client'>{out}</r>"))


def chat(to: str, body: str, extra: str = "", mid: str = "") -> str:
    ident = f" id='{mid}'" if mid else ""
    return f"<message to='{to}' type='chat'{ident}><body>{body}</body>{extra}</message>"


async def query(
    wire: Wire, inner: str = "", qid: str = "q1", to: str = ""
) -> tuple[list[ET.Element], ET.Element]:
    """Send a MAM query; returns the result messages and the IQ answer."""
    to_attr = f" to='{to}'" if to else ""
    out = await wire.send(
        f"<iq type='set' id='mam1'{to_attr}><query xmlns='{MAM}' queryid='{qid}'>{inner}</query></iq>"
    )
    els = parse(out)
    results = [e for e in els if e.tag == C + "message" and e.find(f"{{{MAM}}}result") is not None]
    (iq,) = [e for e in els if e.tag == C + "iq"]
    return results, iq


async def exchange(sender: Wire, recipient: Wire, text: str) -> list[ET.Element]:
    """What `recipient` got (messages) while `sender` sent `text`."""
    mark = len(recipient.transport.out)
    await sender.send(text)
    await recipient.settle()
    return [e for e in parse(recipient.transport.out[mark:].decode()) if e.tag == C + "message"]


def result_bodies(results: list[ET.Element]) -> list[str]:
    return [
        r.findtext(f"{{{MAM}}}result/{{{FWD}}}forwarded/{C}message/{C}body") or "" for r in results
    ]


def rsm(max_: int | None = None, after: str | None = None, before: str | None = None) -> str:
    parts = []
    if max_ is not None:
        parts.append(f"<max>{max_}</max>")
    if after is not None:
        parts.append(f"<after>{after}</after>")
    if before is not None:
        parts.append(f"<before>{before}</before>" if before else "<before/>")
    return f"<set xmlns='{RSM}'>{''.join(parts)}</set>"


def form(**fields: str | list[str]) -> str:
    out = [
        f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
    ]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out.append(
            f"<field var='{var.replace('_', '-')}'>"
            + "".join(f"<value>{v}</value>" for v in values)
            + "</field>"
        )
    return "".join(out) + "</x>"


def condition(iq: ET.Element) -> str:
    assert iq.get("type") == "error", ET.tostring(iq)
    error = iq.find(C + "error")
    assert error is not None
    (cond,) = (c for c in error if c.tag.startswith("{" + STANZAS) and not c.tag.endswith("text"))
    return cond.tag.split("}")[1]


async def test_a_message_lands_in_both_archives_with_a_stanza_id(tmp_path: Path) -> None:
    async with server(tmp_path, count_results=True) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        (message,) = await exchange(alice, bob, chat("bob@localhost", "hi bob", mid="m1"))
        sid = message.find(f"{{{SID}}}stanza-id")
        assert sid is not None and sid.get("by") == "bob@localhost"
        results, fin_iq = await query(bob)
        assert result_bodies(results) == ["hi bob"]
        assert results[0].find(f"{{{MAM}}}result").get("id") == sid.get("id")
        assert results[0].find(f"{{{MAM}}}result").get("queryid") == "q1"
        fin = fin_iq.find(f"{{{MAM}}}fin")
        assert fin is not None and fin.get("complete") == "true"
        assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}count") == "1"
        mine, _ = await query(alice)
        assert result_bodies(mine) == ["hi bob"]
        stamp = mine[0].find(f"{{{MAM}}}result/{{{FWD}}}forwarded/{{urn:xmpp:delay}}delay")
        assert stamp is not None and stamp.get("stamp", "").endswith("Z")


def result_ids(results: list[ET.Element]) -> list[str]:
    return [r.find(f"{{{MAM}}}result").get("id", "") for r in results]  # type: ignore[union-attr]


def fin_of(iq: ET.Element) -> tuple[str | None, str | None, str | None, str | None]:
    """(complete, first, last, count) of a <fin/>."""
    fin = iq.find(f"{{{MAM}}}fin")
    assert fin is not None, ET.tostring(iq)
    s = f"{{{RSM}}}set/{{{RSM}}}"
    return (
        fin.get("complete"),
        fin.findtext(s + "first"),
        fin.findtext(s + "last"),
        fin.findtext(s + "count"),
    )


async def test_pages_forward_backward_and_flipped(tmp_path: Path) -> None:
    async with server(tmp_path, count_results=True) as srv:
        alice = await login(srv, "alice")
        await alice.send("".join(chat("bob@localhost", f"m{i}") for i in range(7)))
        first, iq = await query(alice, rsm(3))
        assert result_bodies(first) == ["m0", "m1", "m2"]
        complete, first_id, last_id, count = fin_of(iq)
        assert (complete, count) == (None, "7")
        assert (first_id, last_id) == (result_ids(first)[0], result_ids(first)[-1])
        second, _ = await query(alice, rsm(3, after=last_id))
        assert result_bodies(second) == ["m3", "m4", "m5"]
        third, iq = await query(alice, rsm(3, after=result_ids(second)[-1]))
        assert result_bodies(third) == ["m6"]
        assert fin_of(iq)[0] == "true"
        last, iq = await query(alice, rsm(3, before=""))
        assert result_bodies(last) == ["m4", "m5", "m6"]
        assert fin_of(iq)[0] is None
        earlier, iq = await query(alice, rsm(3, before=result_ids(last)[0]))
        assert result_bodies(earlier) == ["m1", "m2", "m3"]
        earliest, iq = await query(alice, rsm(3, before=result_ids(earlier)[0]))
        assert result_bodies(earliest) == ["m0"]
        assert fin_of(iq)[0] == "true"
        flipped, iq = await query(alice, rsm(3, before="") + f"<flip-page xmlns='{MAM}'/>")
        assert result_bodies(flipped) == ["m6", "m5", "m4"]
        count_only, iq = await query(alice, rsm(0))
        assert count_only == [] and fin_of(iq)[3] == "7"


async def test_filters_with_time_ids_and_extended_bounds(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(chat("bob@localhost", "to bob 1") + chat("carol@localhost", "to carol"))
        await alice.send(chat("bob@localhost", "to bob 2"))
        everything, _ = await query(alice)
        ids = result_ids(everything)
        with_bob, _ = await query(alice, form(**{"with": "bob@localhost"}))
        assert result_bodies(with_bob) == ["to bob 1", "to bob 2"]
        with_resource, _ = await query(alice, form(**{"with": "bob@localhost/nowhere"}))
        assert result_bodies(with_resource) == []
        future, _ = await query(alice, form(start="2999-01-01T00:00:00Z"))
        assert future == []
        past, _ = await query(alice, form(end="2000-01-01T00:00:00Z"))
        assert past == []
        now, _ = await query(
            alice, form(start="2000-01-01T00:00:00Z", end="2999-01-01T00:00:00+02:00")
        )
        assert len(now) == 3
        between, _ = await query(alice, form(after_id=ids[0], before_id=ids[2]))
        assert result_bodies(between) == ["to carol"]
        chosen, _ = await query(alice, form(ids=[ids[2], ids[0]]))
        assert result_bodies(chosen) == ["to bob 1", "to bob 2"]


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (form(ids=["01ARZ3NDEKTSV4RRFFQ69G5FAV"] * 251), "not-acceptable"),
        (rsm(-1), "bad-request"),
        ("<set xmlns='http://jabber.org/protocol/rsm'><max>lots</max></set>", "bad-request"),
        (rsm(5, after="0" * 26), "item-not-found"),
        (rsm(5, before="not-an-id"), "item-not-found"),
        (form(after_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"), "item-not-found"),
        (form(start="yesterday"), "bad-request"),
        (form(start="2024-01-01T00:00:00"), "bad-request"),
        (form(**{"with": "@@@"}), "bad-request"),
        (form(whatever="1"), "bad-request"),
        ("<x xmlns='jabber:x:data' type='form'/>", "bad-request"),
        (
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>",
            "bad-request",
        ),
        (
            "<x xmlns='jabber:x:data' type='submit'><field><value>1</value></field></x>",
            "bad-request",
        ),
        (
            "<set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set>",
            "feature-not-implemented",
        ),
    ],
)
async def test_bad_queries_get_precise_errors(tmp_path: Path, inner: str, expected: str) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(chat("bob@localhost", "one"))
        results, iq = await query(alice, inner)
        assert results == []
        assert condition(iq) == expected
        # the session goes on
        results, iq = await query(alice)
        assert result_bodies(results) == ["one"]


async def test_another_accounts_archive_is_forbidden(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await alice.send(chat("bob@localhost", "secret"))
        mark = len(bob.transport.out)
        results, iq = await query(alice, to="bob@localhost")
        assert results == [] and condition(iq) == "forbidden"
        # to a full JID the query is bob's client's business: routed to it, no archive answer
        out = await alice.send(
            f"<iq type='set' id='full' to='bob@localhost/r'><query xmlns='{MAM}'/></iq>"
        )
        await bob.settle()
        assert out == ""
        assert b'id="full"' in bob.transport.out[mark:] or b"id='full'" in bob.transport.out[mark:]
        assert b"<result" not in bob.transport.out[mark:]
        results, iq = await query(alice, to="alice@localhost")
        assert result_bodies(results) == ["secret"]
        assert iq.get("from") == "alice@localhost"  # the reply comes from where it went


async def test_form_metadata_and_disco(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        (iq,) = parse(await alice.send(f"<iq type='get' id='f'><query xmlns='{MAM}'/></iq>"))
        fields = {f.get("var") for f in iq.iter("{jabber:x:data}field")}
        assert {"FORM_TYPE", "with", "start", "end", "after-id", "before-id", "ids"} <= fields
        (iq,) = parse(await alice.send(f"<iq type='get' id='m'><metadata xmlns='{MAM}'/></iq>"))
        meta = iq.find(f"{{{MAM}}}metadata")
        assert meta is not None and list(meta) == []
        await alice.send(chat("bob@localhost", "a") + chat("bob@localhost", "b"))
        everything, _ = await query(alice)
        ids = result_ids(everything)
        (iq,) = parse(await alice.send(f"<iq type='get' id='m'><metadata xmlns='{MAM}'/></iq>"))
        assert iq.find(f"{{{MAM}}}metadata/{{{MAM}}}start").get("id") == ids[0]  # type: ignore[union-attr]
        assert iq.find(f"{{{MAM}}}metadata/{{{MAM}}}end").get("id") == ids[1]  # type: ignore[union-attr]
        (iq,) = parse(
            await alice.send(
                "<iq type='get' id='d' to='alice@localhost'>"
                "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            )
        )
        features = {f.get("var") for f in iq.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert {MAM, MAM + "#extended", SID} <= features


async def test_forged_stanza_id_is_removed_and_others_kept(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        forged = (
            f"<stanza-id xmlns='{SID}' by='bob@localhost' id='forged'/>"
            f"<stanza-id xmlns='{SID}' by='BOB@localhost' id='forged2'/>"
            f"<stanza-id xmlns='{SID}' by='elsewhere.example' id='kept'/>"
            "<no-store xmlns='urn:xmpp:hints'/>"
        )
        (message,) = await exchange(alice, bob, chat("bob@localhost", "x", forged))
        ids = {(s.get("by"), s.get("id")) for s in message.iter(f"{{{SID}}}stanza-id")}
        assert ids == {("elsewhere.example", "kept")}
        (message,) = await exchange(
            alice,
            bob,
            chat("bob@localhost", "y", f"<stanza-id xmlns='{SID}' by='bob@localhost' id='f'/>"),
        )
        ((by, sid),) = {(s.get("by"), s.get("id")) for s in message.iter(f"{{{SID}}}stanza-id")}
        assert by == "bob@localhost" and sid != "f"


async def test_hints_and_payloads_decide_what_is_archived(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        not_kept = [
            chat("bob@localhost", "n1", "<no-store xmlns='urn:xmpp:hints'/>"),
            chat("bob@localhost", "n2", "<no-permanent-store xmlns='urn:xmpp:hints'/>"),
            "<message to='bob@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message to='bob@localhost' type='headline'><body>n3</body></message>",
        ]
        for text in not_kept:
            (message,) = await exchange(alice, bob, text)
            assert message.find(f"{{{SID}}}stanza-id") is None
        kept = [
            "<message to='bob@localhost' type='headline'><body>k1</body><store xmlns='urn:xmpp:hints'/></message>",
            "<message to='bob@localhost'><body>k2</body></message>",
            "<message to='bob@localhost' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
        ]
        for text in kept:
            (message,) = await exchange(alice, bob, text)
            assert message.find(f"{{{SID}}}stanza-id") is not None
        results, _ = await query(bob)
        assert result_bodies(results) == ["k1", "k2", ""]


async def test_offline_recipient_and_unknown_user(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(
            chat("bob@localhost", "while you were out") + chat("ghost@localhost", "boo")
        )
        bob = await login(srv, "bob", available=False)
        results, _ = await query(bob)
        assert result_bodies(results) == ["while you were out"]
        repository = srv.module("mam").service.repository
        assert await repository.count("ghost@localhost") == 0
        mine, _ = await query(alice)
        assert result_bodies(mine) == ["while you were out"]  # "boo" bounced: not history


async def test_preferences_never_roster_and_lists(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        (iq,) = parse(await bob.send(f"<iq type='get' id='p'><prefs xmlns='{MAM}'/></iq>"))
        assert iq.find(f"{{{MAM}}}prefs").get("default") == "always"  # type: ignore[union-attr]
        (iq,) = parse(
            await bob.send(
                f"<iq type='set' id='p'><prefs xmlns='{MAM}' default='never'>"
                "<always><jid>carol@localhost</jid></always><never/></prefs></iq>"
            )
        )
        assert iq.get("type") == "result"
        (message,) = await exchange(alice, bob, chat("bob@localhost", "not kept"))
        assert message.find(f"{{{SID}}}stanza-id") is None
        carol = await login(srv, "carol")
        (message,) = await exchange(carol, bob, chat("bob@localhost", "kept"))
        assert message.find(f"{{{SID}}}stanza-id") is not None
        results, _ = await query(bob)
        assert result_bodies(results) == ["kept"]
        # the sender's own archive follows the sender's preferences
        mine, _ = await query(alice)
        assert result_bodies(mine) == ["not kept"]
        # roster: only contacts in bob's roster
        await bob.send(
            f"<iq type='set' id='p2'><prefs xmlns='{MAM}' default='roster'><always/><never/></prefs></iq>"
        )
        await bob.send(
            "<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>"
        )
        await exchange(alice, bob, chat("bob@localhost", "stranger"))
        await exchange(carol, bob, chat("bob@localhost", "friend"))
        results, _ = await query(bob)
        assert result_bodies(results) == ["kept", "friend"]
        (iq,) = parse(
            await bob.send(
                f"<iq type='set' id='p3'><prefs xmlns='{MAM}' default='sometimes'/></iq>"
            )
        )
        assert condition(iq) == "bad-request"


async def test_roster_preference_decided_by_the_writer_for_an_offline_owner(tmp_path: Path) -> None:
    async with server(tmp_path, default="roster") as srv:
        alice = await login(srv, "alice")
        await alice.send(chat("bob@localhost", "unknown to bob"))
        bob = await login(srv, "bob", available=False)
        results, _ = await query(bob)
        assert results == []
        mine, _ = await query(alice)
        assert mine == []  # bob is not in alice's roster either


async def test_a_full_queue_archives_nothing_more_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with server(tmp_path, queue_messages=3) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        mark = len(bob.transport.out)
        with caplog.at_level(logging.WARNING, "chatgate.modules.mam.writer"):
            await alice.send("".join(chat("bob@localhost", f"m{i}") for i in range(6)))
            await bob.settle()
        got = [e for e in parse(bob.transport.out[mark:].decode()) if e.tag == C + "message"]
        assert len(got) == 6  # delivery is never refused
        stamped = [m for m in got if m.find(f"{{{SID}}}stanza-id") is not None]
        full = [r for r in caplog.records if "queue full" in r.getMessage()]
        assert len(full) == 1
        results, _ = await query(bob)
        assert result_bodies(results) == [m.findtext(C + "body") for m in stamped]
        assert len(results) < 6


async def test_purge_keeps_the_newest_messages(tmp_path: Path) -> None:
    async with server(tmp_path, max_messages_per_account=2) as srv:
        alice = await login(srv, "alice")
        await alice.send("".join(chat("bob@localhost", f"m{i}") for i in range(5)))
        await alice.settle()
        assert await srv.module("mam").purge() == 6  # 3 of alice's, 3 of bob's
        results, _ = await query(alice)
        assert result_bodies(results) == ["m3", "m4"]


async def test_room_archive_api(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        service = srv.module("mam").service
        alice = await login(srv, "alice")
        room = "lounge@conference.localhost"
        ids = []
        for i in range(3):
            stanza = ET.fromstring(
                f"<message xmlns='jabber:client' from='{room}/nick{i}' type='groupchat'><body>r{i}</body></message>"
            )
            ids.append(service.append_room(room, _element(stanza), f"nick{i}", "alice@localhost"))
        iq_text = f"<iq xmlns='jabber:client' type='set' id='rq' to='{room}'><query xmlns='{MAM}' queryid='x'>{rsm(2, before='')}</query></iq>"
        session = next(iter(srv.ctx.router.directory.table["alice@localhost"].values()))
        mark = len(alice.transport.out)
        await service.answer_query(session, _element(ET.fromstring(iq_text)), room)
        await alice.settle()
        els = parse(alice.transport.out[mark:].decode())
        results = [e for e in els if e.tag == C + "message"]
        assert result_bodies(results) == ["r1", "r2"]
        assert {r.get("from") for r in results} == {room}
        assert result_ids(results) == ids[1:]
        (answer,) = [e for e in els if e.tag == C + "iq"]
        assert answer.get("from") == room and answer.get("type") == "result"
        assert await service.retract(room, ids[2]) is True
        assert await service.retract(room, ids[2]) is False
        mark = len(alice.transport.out)
        await service.answer_query(
            session,
            _element(
                ET.fromstring(iq_text.replace(rsm(2, before=""), form(**{"with": f"{room}/nick0"})))
            ),
            room,
        )
        await alice.settle()
        results = [e for e in parse(alice.transport.out[mark:].decode()) if e.tag == C + "message"]
        assert result_bodies(results) == ["r0"]


def _element(el: ET.Element) -> Any:
    """An ElementTree element as chatgate's Element (parsed by chatgate's own parser)."""
    from chatgate.xml.framed import parse_fragment

    return parse_fragment(ET.tostring(el))


async def test_a_huge_max_is_lowered_to_the_page_limit(tmp_path: Path) -> None:
    async with server(tmp_path, max_page=3, count_results=True) as srv:
        alice = await login(srv, "alice")
        await alice.send("".join(chat("bob@localhost", f"m{i}") for i in range(5)))
        results, iq = await query(alice, rsm(10**12))
        assert result_bodies(results) == ["m0", "m1", "m2"]
        assert fin_of(iq)[0] is None and fin_of(iq)[3] == "5"
        results, iq = await query(alice)  # the default page is lowered too
        assert len(results) == 3


async def test_a_page_stops_at_its_byte_budget(tmp_path: Path) -> None:
    async with server(tmp_path, max_page_bytes=1024) as srv:
        alice = await login(srv, "alice")
        big = "x" * 400
        await alice.send("".join(chat("bob@localhost", f"{i}{big}") for i in range(5)))
        results, iq = await query(alice)
        assert 1 <= len(results) < 5 and fin_of(iq)[0] is None
        rest, iq = await query(alice, rsm(50, after=fin_of(iq)[2]))
        assert len(results) + len(rest) <= 5 and result_bodies(rest)[0].startswith(
            str(len(results))
        )
        last, iq = await query(alice, rsm(50, before=""))
        assert result_bodies(last)[-1].startswith("4") and fin_of(iq)[0] is None
        assert len(last) == len(results)  # the newest ones, as many as fit
        assert sum(len(b) for b in result_bodies(last)) <= 1024


async def test_too_many_preference_jids_are_not_acceptable(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        bob = await login(srv, "bob")
        jids = "".join(f"<jid>u{i}@example.org</jid>" for i in range(501))
        (iq,) = parse(
            await bob.send(
                f"<iq type='set' id='p'><prefs xmlns='{MAM}' default='always'><always>{jids}</always></prefs></iq>"
            )
        )
        assert condition(iq) == "not-acceptable"
        (iq,) = parse(
            await bob.send(
                f"<iq type='set' id='p'><prefs xmlns='{MAM}' default='always'><never><jid>@bad@</jid></never></prefs></iq>"
            )
        )
        assert condition(iq) == "jid-malformed"


async def test_no_count_unless_configured_or_asked(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(chat("bob@localhost", "one") + chat("bob@localhost", "two"))
        results, iq = await query(alice)
        assert len(results) == 2 and fin_of(iq) == ("true", *result_ids(results)[::1], None)
        results, iq = await query(alice, rsm(0))
        assert results == [] and fin_of(iq)[3] == "2"


async def test_a_long_queryid_is_refused_and_a_short_one_echoed(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(chat("bob@localhost", "one"))
        results, iq = await query(alice, qid="q" * 257)
        assert results == [] and condition(iq) == "bad-request"
        (iq,) = parse(
            await alice.send(f"<iq type='set' id='n'><query xmlns='{MAM}' node='princely'/></iq>")
        )
        assert condition(iq) == "feature-not-implemented"
        results, iq = await query(alice, qid="&lt;odd&apos;id")
        assert [r.find(f"{{{MAM}}}result").get("queryid") for r in results] == ["<odd'id"]  # type: ignore[union-attr]


async def test_stored_text_not_written_here_is_parsed_back_or_skipped(tmp_path: Path) -> None:
    from chatgate.storage.repositories.archive import NewArchiveRow

    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        service = srv.module("mam").service
        rows = []
        for text in (
            "<message to='alice@localhost'><body>no xmlns</body></message>",
            "<message xmlns='jabber:client'><body>broken",
            '<message xmlns="jabber:client"><body>ours</body></message>',
        ):
            archive_id, moment = service.new_stanza_id()
            rows.append(
                NewArchiveRow(
                    "alice@localhost",
                    ("alice", "localhost"),
                    archive_id,
                    "bob@localhost",
                    "",
                    moment,
                    text,
                )
            )
        await service.repository.append(rows)
        results, iq = await query(alice)
        assert result_bodies(results) == ["no xmlns", "ours"]
        assert iq.get("type") == "result"


async def test_archiving_runs_after_blocking_and_before_carbons(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        order = [type(stage).__name__ for stage in srv.ctx.router.stages]
        blocking, archive = order.index("BlockingStage"), order.index("ArchiveStage")
        assert blocking < archive < order.index("CarbonsStage"), order


async def test_a_blocked_message_is_not_archived(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        out = await bob.send(
            "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>"
        )
        assert 'type="result"' in out or "type='result'" in out, out
        assert await exchange(alice, bob, chat("bob@localhost", "blocked")) == []
        results, _ = await query(bob)
        assert results == []


async def test_disabled_archive_registers_nothing(tmp_path: Path) -> None:
    async with server(tmp_path, enabled=False) as srv:
        assert srv.module("mam").service is None
        assert "ArchiveStage" not in [type(s).__name__ for s in srv.ctx.router.stages]
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        (message,) = await exchange(alice, bob, chat("bob@localhost", "hi"))
        assert message.find(f"{{{SID}}}stanza-id") is None
        (iq,) = parse(await alice.send(f"<iq type='set' id='q'><query xmlns='{MAM}'/></iq>"))
        assert condition(iq) == "service-unavailable"
