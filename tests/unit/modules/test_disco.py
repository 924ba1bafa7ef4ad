"""Service discovery extras: XEP-0115 caps of the server, XEP-0128/XEP-0157
contact addresses, and nodes answered by modules (through the real connection)."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chatgate.modules.disco import ServerInfo, caps_ver, contact_form, status_form

from .wire import Server, Wire

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
CAPS = "http://jabber.org/protocol/caps"
DATA = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def test_caps_ver_matches_xep_0115_simple_example() -> None:
    """XEP-0115 §5.2: the Exodus example's string and hash."""
    info = ServerInfo(
        (("client", "pc", "Exodus 0.9.1"),),
        (
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ),
    )
    assert caps_ver(info) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_caps_ver_hashes_extended_forms_sorted() -> None:
    """XEP-0115 §5.3's rules for forms: FORM_TYPE, then vars sorted, values sorted."""
    form = contact_form({"admin": ["xmpp:b@x", "mailto:a@x"], "abuse": ["mailto:c@x"]})
    assert form is not None
    info = ServerInfo((("server", "im", "chatgate"),), ("urn:f",), (form,))
    text = (
        "server/im//chatgate<urn:f<http://jabber.org/network/serverinfo<"
        "abuse-addresses<mailto:c@x<admin-addresses<mailto:a@x<xmpp:b@x<"
    )
    expected = base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()
    assert caps_ver(info) == expected


async def _login(srv: Server) -> tuple[Wire, str]:
    wire = srv.connect()
    await wire.open()
    from .wire import plain

    assert "<success" in await wire.send(plain("bob", "bob-pw"))
    features = await wire.open()
    await wire.send(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<resource>r</resource></bind></iq>"
    )
    return wire, features


async def _get(wire: Wire, payload: str) -> ET.Element:
    out = await wire.send(f"<iq type='get' id='d' to='localhost'>{payload}</iq>")
    return ET.fromstring(out)


async def test_caps_in_features_and_node_answers_as_server(tmp_path: Path) -> None:
    contacts = {"admin": ["mailto:ops@example.org"], "abuse": ["xmpp:abuse@localhost"]}
    srv = await Server.start(tmp_path, {"disco": {"contacts": contacts}})
    try:
        await srv.add_user("bob", "bob-pw")
        wire, features = await _login(srv)
        c = ET.fromstring(features + "</stream:stream>").find(
            "{http://etherx.jabber.org/streams}features/{" + CAPS + "}c"
        )
        assert c is not None and c.get("hash") == "sha-1"
        plain_info = await _get(wire, f"<query xmlns='{INFO}'/>")
        query = plain_info.find(f"{{{INFO}}}query")
        assert query is not None
        # the advertised ver is the hash of what disco#info answers
        identities = tuple(
            (i.get("category") or "", i.get("type") or "", i.get("name"))
            for i in query.findall(f"{{{INFO}}}identity")
        )
        features_ = tuple(f.get("var") or "" for f in query.findall(f"{{{INFO}}}feature"))
        forms = query.findall(f"{{{DATA}}}x")
        assert len(forms) == 1
        form = contact_form(contacts)
        assert form is not None
        assert c.get("ver") == caps_ver(ServerInfo(identities, features_, (form,)))
        fields = {f.get("var"): [v.text for v in f] for f in forms[0]}
        assert fields["admin-addresses"] == ["mailto:ops@example.org"]
        assert fields["abuse-addresses"] == ["xmpp:abuse@localhost"]
        assert fields["FORM_TYPE"] == ["http://jabber.org/network/serverinfo"]
        node = f"{c.get('node')}#{c.get('ver')}"
        by_node = await _get(wire, f"<query xmlns='{INFO}' node='{node}'/>")
        answered = by_node.find(f"{{{INFO}}}query")
        assert answered is not None and answered.get("node") == node
        assert len(answered) == len(query)
    finally:
        await srv.stop()


async def test_unknown_nodes_are_item_not_found(tmp_path: Path) -> None:
    srv = await Server.start(tmp_path, {})
    try:
        await srv.add_user("bob", "bob-pw")
        wire, _ = await _login(srv)
        for ns_ in (INFO, ITEMS):
            reply = await _get(wire, f"<query xmlns='{ns_}' node='urn:nothing'/>")
            assert reply.get("type") == "error"
            assert reply.find(f"error/{{{STANZAS}}}item-not-found") is not None
        # no contacts configured: no form
        query = (await _get(wire, f"<query xmlns='{INFO}'/>")).find(f"{{{INFO}}}query")
        assert query is not None and query.find(f"{{{DATA}}}x") is None
    finally:
        await srv.stop()


async def test_external_status_addresses_are_a_xep_0455_form(tmp_path: Path) -> None:
    addresses = ["https://status.example.org/xmpp.json", "http://backup.example.net/s.json"]
    contacts = {"admin": ["mailto:ops@example.org"]}
    options = {"disco": {"status_addresses": addresses, "contacts": contacts}}
    srv = await Server.start(tmp_path, options)
    try:
        await srv.add_user("bob", "bob-pw")
        wire, features = await _login(srv)
        query = (await _get(wire, f"<query xmlns='{INFO}'/>")).find(f"{{{INFO}}}query")
        assert query is not None
        forms = {}
        for x in query.findall(f"{{{DATA}}}x"):
            fields = {f.get("var"): [v.text for v in f] for f in x}
            forms[fields.pop("FORM_TYPE")[0]] = fields
        assert forms == {
            "urn:xmpp:sos:0": {"external-status-addresses": addresses},
            "http://jabber.org/network/serverinfo": {"admin-addresses": contacts["admin"]},
        }
        # the caps hash covers both forms (XEP-0115 §5.4)
        c = ET.fromstring(features + "</stream:stream>").find(
            "{http://etherx.jabber.org/streams}features/{" + CAPS + "}c"
        )
        identities = tuple(
            (i.get("category") or "", i.get("type") or "", i.get("name"))
            for i in query.findall(f"{{{INFO}}}identity")
        )
        features_ = tuple(f.get("var") or "" for f in query.findall(f"{{{INFO}}}feature"))
        expected = (contact_form(contacts), status_form(addresses))
        assert c is not None and c.get("ver") == caps_ver(
            ServerInfo(identities, features_, tuple(f for f in expected if f is not None))
        )
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    "address", ["ftp://status.example.org/s.json", "status.example.org/s.json", "https://"]
)
def test_status_addresses_must_be_http_urls(address: str) -> None:
    from pydantic import ValidationError

    from chatgate.modules.disco import DiscoOptions

    with pytest.raises(ValidationError, match="is not an http"):
        DiscoOptions.model_validate({"status_addresses": [address]})


def test_contact_kinds_are_checked() -> None:
    from pydantic import ValidationError

    from chatgate.modules.disco import DiscoOptions

    with pytest.raises(ValidationError):
        DiscoOptions.model_validate({"contacts": {"boss": ["mailto:x@y"]}})


async def test_an_account_with_pep_shows_the_pubsub_pep_identity(tmp_path: Path) -> None:
    async def identities(modules: dict[str, dict[str, bool]]) -> set[tuple[str, str]]:
        srv = await Server.start(tmp_path / str(len(modules)), modules)
        try:
            await srv.add_user("bob", "bob-pw")
            wire, _ = await _login(srv)
            out = await wire.send(
                f"<iq type='get' id='a' to='bob@localhost'><query xmlns='{INFO}'/></iq>"
            )
            query = ET.fromstring(out).find(f"{{{INFO}}}query")
            assert query is not None
            return {
                (i.get("category") or "", i.get("type") or "")
                for i in query.findall(f"{{{INFO}}}identity")
            }
        finally:
            await srv.stop()

    assert await identities({}) == {("account", "registered"), ("pubsub", "pep")}
    without = await identities({"pep": {"enabled": False}, "bookmarks": {"enabled": False}})
    assert without == {("account", "registered")}
