"""XEP-0115 verification against the specification's own examples (§5.2, §5.3), and
the bounded cache / per-session interest built on it."""

from __future__ import annotations

from chatgate.modules.pep.caps import (
    MAX_NOTIFY,
    Caps,
    CapsCache,
    Interest,
    caps_of,
    features_of,
    verifies,
)
from chatgate.xml.framed import parse_fragment

DISCO = "http://jabber.org/protocol/disco#info"

SIMPLE = f"""<query xmlns='{DISCO}' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>
<identity category='client' name='Exodus 0.9.1' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = f"""<query xmlns='{DISCO}' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
<x xmlns='jabber:x:data' type='result'>
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
<field var='os'><value>Mac</value></field>
<field var='os_version'><value>10.5.1</value></field>
<field var='software'><value>Psi</value></field>
<field var='software_version'><value>0.11</value></field>
</x>
</query>"""


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_fragment(text.encode(), "")


def test_simple_example_verifies() -> None:
    caps = Caps("http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")
    assert verifies(caps, parse(SIMPLE))


def test_complex_example_with_languages_and_form_verifies() -> None:
    caps = Caps("http://psi-im.org", "q07IKJEyjvHSyhy//CH0CxmKi8w=", "sha-1")
    assert verifies(caps, parse(COMPLEX))


def test_altered_answer_or_unknown_hash_does_not_verify() -> None:
    caps = Caps("http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")
    forged = SIMPLE.replace("protocol/muc", "protocol/mood+notify")
    assert not verifies(caps, parse(forged))
    assert not verifies(Caps(caps.node, caps.ver, "md5"), parse(SIMPLE))
    assert not verifies(Caps(caps.node, caps.ver, None), parse(SIMPLE))


def test_duplicate_features_are_ill_formed() -> None:
    doubled = SIMPLE.replace(
        "<feature var='http://jabber.org/protocol/muc'/>",
        "<feature var='http://jabber.org/protocol/muc'/><feature var='http://jabber.org/protocol/muc'/>",
    )
    caps = Caps("x", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")
    assert not verifies(caps, parse(doubled))


def test_caps_of_presence() -> None:
    presence = parse(
        "<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' "
        "hash='sha-1' node='n' ver='v'/></presence>"
    )
    assert caps_of(presence) == Caps("n", "v", "sha-1")
    assert caps_of(parse("<presence xmlns='jabber:client'/>")) is None
    assert caps_of(None) is None


def test_interest_caches_only_verified_answers() -> None:
    cache = CapsCache(16)
    interest = Interest(cache)
    good = Caps("http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")
    assert interest.note("a@x/1", good) is True  # unknown: ask
    interest.learned("a@x/1", good, parse(SIMPLE))
    assert interest.wants("a@x/1", "http://jabber.org/protocol/muc") is False
    assert interest.features("a@x/1") is not None
    assert interest.note("b@x/1", good) is False  # known through the cache
    liar = Caps("n", "forged-ver", "sha-1")
    interest.note("c@x/1", liar)
    interest.learned("c@x/1", liar, parse(SIMPLE.replace("protocol/muc", "protocol/mood+notify")))
    assert interest.wants("c@x/1", "http://jabber.org/protocol/mood")
    assert cache.get("forged-ver") is None
    assert interest.note("d@x/1", liar) is True  # another session with that ver is asked
    interest.forget("c@x/1")
    assert interest.features("c@x/1") is None


def test_cache_is_bounded() -> None:
    cache = CapsCache(max_entries=16, max_bytes=100_000)
    for n in range(100):
        cache.put(f"ver{n}", frozenset({f"feature{n}"}))
    assert len(cache) == 16
    assert cache.get("ver99") is not None and cache.get("ver0") is None


def test_only_notify_features_are_kept_and_bounded() -> None:
    features = "".join(
        f"<feature var='urn:x:{n}+notify'/><feature var='urn:y:{n}'/>" for n in range(2000)
    )
    query = parse(f"<query xmlns='{DISCO}'>{features}<feature var='{'z' * 5000}+notify'/></query>")
    kept = features_of(query)
    assert len(kept) == MAX_NOTIFY
    assert all(f.endswith("+notify") and f.startswith("urn:x:") for f in kept)
