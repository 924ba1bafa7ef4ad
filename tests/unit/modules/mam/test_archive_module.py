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
    async with server(tmp_path) as srv:
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
