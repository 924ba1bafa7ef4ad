"""The service's room list in pages (XEP-0045 §6.3 with XEP-0059 RSM) through the
real connection: forward with <max/> and <after/>, backward with <before/>, the
count and first index, the cap without RSM (a <set/> says rooms were left out),
hidden and locked rooms unlisted, malformed <set/>s refused precisely."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from chatgate.modules.muc import roomlist

from .support import SERVICE, Client, error, result, running

ITEMS = "{http://jabber.org/protocol/disco#items}"
RSM = "{http://jabber.org/protocol/rsm}"


def items_query(rsm: str | None = None, iq_id: str = "items") -> str:
    body = "" if rsm is None else f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>"
    return (
        f"<iq type='get' id='{iq_id}' to='{SERVICE}'>"
        f"<query xmlns='http://jabber.org/protocol/disco#items'>{body}</query></iq>"
    )


def page(els: list[ET.Element]) -> tuple[list[str], ET.Element | None]:
    query = result(els, "items").find(ITEMS + "query")
    assert query is not None
    return [i.get("jid", "") for i in query.findall(ITEMS + "item")], query.find(RSM + "set")


async def test_the_room_list_pages_forward_and_backward(tmp_path: Path) -> None:
    async with running(tmp_path, room_list_max=4) as srv:
        alice = await Client.login(srv, "alice")
        names = [f"r{i:02d}@{SERVICE}" for i in range(7)]
        for jid in reversed(names):  # made in another order than listed
            await alice.join("A", room=jid)
        # a hidden room and a locked one are not listed
        await alice.join("A", room=f"hidden@{SERVICE}")
        await alice.send(
            f"<iq type='set' id='h' to='hidden@{SERVICE}'><query xmlns="
            "'http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value>"
            "</field><field var='muc#roomconfig_publicroom'><value>0</value></field></x>"
            "</query></iq>"
        )
        await alice.join("A", room=f"locked@{SERVICE}", configure=False)
        # without RSM: the cap (4), and a <set/> saying there are 7
        jids, rsm = page(await alice.send(items_query()))
        assert jids == names[:4]
        assert rsm is not None and rsm.findtext(RSM + "count") == "7"
        assert rsm.findtext(RSM + "last") == names[3]
        # forward by 3
        seen: list[str] = []
        after = ""
        while True:
            cursor = f"<after>{after}</after>" if after else ""
            jids, rsm = page(await alice.send(items_query(f"<max>3</max>{cursor}")))
            assert rsm is not None and rsm.findtext(RSM + "count") == "7"
            if not jids:
                break
            first = rsm.find(RSM + "first")
            assert first is not None and first.text == jids[0]
            assert first.get("index") == str(len(seen))
            seen += jids
            after = rsm.findtext(RSM + "last") or ""
        assert seen == names
        # backward: the last page, then the one before it
        jids, rsm = page(await alice.send(items_query("<max>3</max><before/>")))
        assert jids == names[4:]
        assert rsm is not None and rsm.find(RSM + "first").get("index") == "4"  # type: ignore[union-attr]
        jids, _ = page(await alice.send(items_query(f"<max>3</max><before>{names[4]}</before>")))
        assert jids == names[1:4]
        # a <max/> above the cap is lowered to it; <max>0</max> gives the count alone
        jids, _ = page(await alice.send(items_query("<max>100</max>")))
        assert jids == names[:4]
        jids, rsm = page(await alice.send(items_query("<max>0</max>")))
        assert jids == [] and rsm is not None and rsm.findtext(RSM + "count") == "7"
        # a cursor past the end: an empty page with the count
        jids, rsm = page(await alice.send(items_query(f"<after>zzz@{SERVICE}</after>")))
        assert jids == [] and rsm is not None and rsm.find(RSM + "first") is None


async def test_malformed_paging_requests_get_precise_errors(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("A", room=f"one@{SERVICE}")
        for rsm, condition in (
            ("<max>many</max>", "bad-request"),
            ("<max>-1</max>", "bad-request"),
            ("<after></after>", "bad-request"),
            ("<after>a</after><before>b</before>", "bad-request"),
            ("<index>2</index>", "feature-not-implemented"),
            (f"<after>{'x' * 5000}</after>", "bad-request"),
        ):
            assert error(await alice.send(items_query(rsm))) == condition, rsm
        jids, rsm_el = page(await alice.send(items_query()))
        assert jids == [f"one@{SERVICE}"] and rsm_el is None  # nothing left out: no <set/>


def test_windows_of_several_nodes_merge_into_the_same_pages_as_one_list() -> None:
    """Each node's window holds what the page needs from it: merged, the pages are
    those of the whole list, forward and backward, with the right index."""
    everything = [(f"r{i:03d}@s", f"Room {i}") for i in range(50)]
    nodes = [everything[0::3], everything[1::3], everything[2::3]]
    for size in (1, 4, 7, 50):
        for cursor in (None, "r000@s", "r017@s", "r049@s", "q@s"):
            forward = roomlist.PageRequest(max=size, after=cursor, rsm=True)
            got = roomlist.merge([roomlist.window(n, forward) for n in nodes], forward)
            alone = roomlist.merge([roomlist.window(everything, forward)], forward)
            assert got == alone
            start = 0 if cursor is None else sum(1 for j, _ in everything if j <= cursor)
            assert got.rooms == everything[start : start + size] and got.index == start
        for before in ("", "r010@s", "r001@s"):
            backward = roomlist.PageRequest(max=size, before=before, rsm=True)
            got = roomlist.merge([roomlist.window(n, backward) for n in nodes], backward)
            end = len(everything) if not before else sum(1 for j, _ in everything if j < before)
            assert got.rooms == everything[max(0, end - size) : end]
            assert got.index == max(0, end - size) and got.count == 50
