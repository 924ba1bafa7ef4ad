"""Element: the small API every layer uses."""

from __future__ import annotations

from chatgate.vocabulary import ns
from chatgate.xml.element import LANG, Element


def message() -> Element:
    msg = Element("message", ns.CLIENT, {"to": "a@b", "type": "chat"})
    msg.sub("body", text="hi")
    msg.sub("active", "http://jabber.org/protocol/chatstates")
    msg.sub("body", attrs={LANG: "fr"}, text="salut")
    return msg


def test_get_and_set_with_none_removing() -> None:
    msg = message()
    assert msg.get("to") == "a@b"
    assert msg.get("from") is None
    assert msg.get("from", "x") == "x"
    msg.set("from", "c@d")
    assert msg.attrs["from"] == "c@d"
    msg.set("from", None)
    msg.set("absent", None)
    assert "from" not in msg.attrs


def test_find_defaults_to_the_parents_namespace() -> None:
    msg = message()
    body = msg.find("body")
    assert body is not None and body.text == "hi"
    assert msg.find("active") is None
    assert msg.find("active", "http://jabber.org/protocol/chatstates") is not None


def test_find_all_filters_by_name_and_namespace() -> None:
    msg = message()
    assert [b.text for b in msg.find_all("body")] == ["hi", "salut"]
    assert len(msg.find_all()) == 2  # same namespace only
    assert [e.name for e in msg.find_all(ns="http://jabber.org/protocol/chatstates")] == ["active"]
    assert msg.find_all("nothing") == []


def test_text_concatenates_direct_text_only() -> None:
    el = Element("a", "")
    el.append("one ")
    el.sub("b", text="inner")
    el.append("two")
    assert el.text == "one two"
    assert Element("empty", "").text == ""


def test_set_text_replaces_text_and_keeps_children() -> None:
    el = Element("a", "", children=["x", Element("b", ""), "y"])
    el.set_text("new")
    assert el.children[0] == "new"
    assert [c.name for c in el.children if isinstance(c, Element)] == ["b"]
    assert el.text == "new"
    el.set_text("")
    assert el.text == ""


def test_append_returns_child_and_merges_text() -> None:
    el = Element("a", "")
    child = Element("b", "")
    assert el.append(child) is child
    el.append("x")
    el.append("y")
    assert el.children == [child, "xy"]


def test_sub_inherits_namespace_unless_given() -> None:
    el = Element("iq", ns.CLIENT)
    query = el.sub("query", ns.ROSTER, {"ver": "1"})
    item = query.sub("item", attrs={"jid": "a@b"})
    assert (query.ns, item.ns) == (ns.ROSTER, ns.ROSTER)
    assert el.children == [query]


def test_copy_is_deep() -> None:
    original = message()
    clone = original.copy()
    clone.attrs["to"] = "changed"
    body = clone.find("body")
    assert body is not None
    body.set_text("changed")
    body.attrs["x"] = "1"
    assert original.attrs["to"] == "a@b"
    original_body = original.find("body")
    assert original_body is not None
    assert original_body.text == "hi" and original_body.attrs == {}


def test_constructor_takes_ownership_without_copying() -> None:
    attrs = {"a": "1"}
    children: list[Element | str] = ["t"]
    el = Element("x", "", attrs, children)
    assert el.attrs is attrs and el.children is children
    fresh = Element("y", "")
    assert fresh.attrs == {} and fresh.children == []
    assert Element("z", "").attrs is not fresh.attrs


def test_repr_is_short() -> None:
    assert repr(message()) == "<Element {jabber:client}message attrs=2 children=3>"
