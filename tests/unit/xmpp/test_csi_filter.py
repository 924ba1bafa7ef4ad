"""The XEP-0352 write-path filter: what an inactive client gets now, and later."""

from __future__ import annotations

from chatgate.xmpp.sm_client_state import ClientStateFilter, HoldLimits

WIDE = HoldLimits(stanzas=100, bytes=1 << 20)
COMPOSING = (
    b'<message from="bob@x/a" to="alice@x/p" type="chat">'
    b'<composing xmlns="http://jabber.org/protocol/chatstates"/></message>'
)


def presence(sender: str, status: str, ptype: str = "") -> bytes:
    type_attr = f' type="{ptype}"' if ptype else ""
    return f'<presence to="alice@x/p" from="{sender}"{type_attr}><status>{status}</status></presence>'.encode()


def chat(body: str, mtype: str = "chat") -> bytes:
    return f'<message from="bob@x/a" type="{mtype}"><body>{body}</body></message>'.encode()


def make(limits: HoldLimits = WIDE) -> tuple[ClientStateFilter, list[bytes]]:
    out: list[bytes] = []
    return ClientStateFilter(out.append, "Alice", "alice@x", limits), out


def test_presence_is_held_latest_per_sender_in_the_place_of_the_latest() -> None:
    f, out = make()
    f.write(presence("bob@x/a", "one"))
    f.write(presence("carol@x/b", "c"))
    f.write(presence("bob@x/a", "two", "unavailable"))
    assert out == [] and len(f) == 2
    f.flush()
    assert out == [presence("carol@x/b", "c"), presence("bob@x/a", "two", "unavailable")]


def test_chat_states_are_held_and_bodies_flush_first() -> None:
    f, out = make()
    f.write(COMPOSING)
    f.write(presence("bob@x/a", "away"))
    assert out == []
    f.write(chat("hello"))
    assert out == [COMPOSING, presence("bob@x/a", "away"), chat("hello")]
    assert len(f) == 0


def test_errors_iqs_and_subscriptions_are_urgent() -> None:
    for data in (
        b'<message type="error" from="x"><error/></message>',
        b'<iq type="get" id="1"><ping xmlns="urn:xmpp:ping"/></iq>',
        presence("bob@x/a", "", "subscribe"),
        b'<message from="bob@x/a"><received xmlns="urn:xmpp:receipts"/></message>',
    ):
        f, out = make()
        f.write(data)
        assert out == [data]


def test_group_chat_is_held_unless_it_mentions_the_user() -> None:
    f, out = make()
    quiet = chat("talking among ourselves", "groupchat")
    f.write(quiet)
    assert out == []
    mention = chat("hey ALICE, look", "groupchat")
    f.write(mention)
    assert out == [quiet, mention]
    referenced = (
        b'<message type="groupchat"><body>look</body>'
        b'<reference xmlns="urn:xmpp:reference:0" type="mention" uri="xmpp:alice@x"/></message>'
    )
    f.write(referenced)
    assert out[-1] == referenced


def test_a_bound_flushes_everything_held() -> None:
    f, out = make(HoldLimits(stanzas=3, bytes=1 << 20))
    states = [COMPOSING.replace(b"bob@x/a", b"bob@x/%d" % n) for n in range(4)]
    for data in states[:3]:
        f.write(data)
    assert out == []
    f.write(states[3])
    assert out == states and len(f) == 0


def test_the_byte_bound_counts_replaced_presence_once() -> None:
    first = presence("bob@x/a", "x" * 50)
    f, out = make(HoldLimits(stanzas=100, bytes=len(first) + 10))
    f.write(first)
    f.write(presence("bob@x/a", "y" * 50))  # replaces: still under the bound
    assert out == []
    f.write(presence("carol@x/a", "z"))  # now over: all out
    assert len(out) == 2 and len(f) == 0


def test_take_hands_over_what_was_held() -> None:
    f, out = make()
    f.write(COMPOSING)
    assert f.take() == [COMPOSING]
    f.flush()
    assert out == []
