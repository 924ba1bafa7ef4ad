"""Archive ids are strictly increasing, time-ordered and round-trip; the archiving
policy follows XEP-0313 §4 / XEP-0334 hints and XEP-0313 §7 preferences."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from chatgate.modules.mam.ids import IdGenerator, bounds_for, decode, is_archive_id, millis_of
from chatgate.modules.mam.policy import decide, strip_stanza_ids, verdict, worth_archiving
from chatgate.storage.repositories.archive import ArchivePrefs
from chatgate.xml.framed import parse_fragment


def test_ids_increase_within_a_millisecond_and_when_the_clock_goes_back() -> None:
    gen = IdGenerator(os.urandom)
    ids = [gen.next(1_700_000_000_000) for _ in range(1000)]
    ids.append(gen.next(1_699_999_999_000))  # clock stepped back
    ids.append(gen.next(1_700_000_000_001))
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(is_archive_id(i) and len(i) == 26 for i in ids)
    assert millis_of(ids[0]) == 1_700_000_000_000


def test_ids_of_two_generators_differ_and_sort_by_time() -> None:
    a, b = IdGenerator(os.urandom), IdGenerator(os.urandom)
    assert a.next(5) != b.next(5)
    assert a.next(6) < b.next(7) < a.next(8)
    low, high = bounds_for(6)
    assert low < IdGenerator(os.urandom).next(6) < high < b.next(7)


def test_malformed_ids_are_refused() -> None:
    assert decode("0" * 25) is None
    assert decode("8" + "0" * 25) is None  # over 128 bits
    assert decode("0" * 25 + "U") is None  # not in the alphabet
    assert decode("0" * 25 + "u") is None
    assert millis_of(IdGenerator(os.urandom).next(millis := 42)) == millis


def _msg(text: str):  # type: ignore[no-untyped-def]
    return parse_fragment(text.encode())


def test_worth_archiving() -> None:
    assert worth_archiving(_msg("<message type='chat'><body>x</body></message>"))
    assert worth_archiving(_msg("<message><body>x</body></message>"))
    assert not worth_archiving(_msg("<message type='groupchat'><body>x</body></message>"))
    assert not worth_archiving(_msg("<message type='error'><body>x</body></message>"))
    assert not worth_archiving(_msg("<message type='headline'><body>x</body></message>"))
    assert not worth_archiving(_msg("<message type='chat'><x xmlns='jabber:x:event'/></message>"))
    assert worth_archiving(
        _msg("<message type='headline'><store xmlns='urn:xmpp:hints'/></message>")
    )
    assert not worth_archiving(
        _msg("<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>")
    )
    # a <body/> in another namespace is no body
    assert not worth_archiving(
        _msg("<message type='chat'><body xmlns='urn:other'>x</body></message>")
    )


def test_strip_only_the_archives_own_stanza_ids() -> None:
    m = _msg(
        "<message><stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='1'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.org' id='2'/>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='3'/></message>"
    )
    strip_stanza_ids(m, "bob@example.org")
    assert [(c.name, c.attrs.get("id")) for c in m.children] == [
        ("stanza-id", "2"),
        ("origin-id", "3"),
    ]  # type: ignore[union-attr]


def test_preferences() -> None:
    prefs = ArchivePrefs("roster", ("friend@x",), ("spam.example",))
    assert verdict(prefs, "friend@x") is True
    assert verdict(prefs, "anyone@spam.example") is False
    assert verdict(prefs, "spam.example") is False
    assert verdict(prefs, "other@x") is None
    assert decide(prefs, "other@x", lambda jid: jid == "other@x")
    assert not decide(ArchivePrefs("never"), "a@b", lambda jid: True)
    assert decide(ArchivePrefs("always", never=("c@d",)), "a@b", lambda jid: False)
    assert not decide(ArchivePrefs("always", never=("c@d",)), "c@d", lambda jid: True)


def test_stamp_of_an_id_is_its_millisecond() -> None:
    from chatgate.modules.mam.ids import millis, stamp_of

    moment = datetime(2026, 12, 5, 12, 0, 0, 123000, tzinfo=UTC)
    archive_id = IdGenerator(os.urandom).next(millis(moment))
    assert stamp_of(archive_id) == moment


def test_cached_preferences_expire() -> None:
    from chatgate.modules.mam.service import LocalPrefsCache

    now = [100.0]
    cache = LocalPrefsCache(10, ttl=60, clock=lambda: now[0])
    cache.put("a@b", ArchivePrefs("never"))
    now[0] += 59
    assert cache.get("a@b") == ArchivePrefs("never")
    now[0] += 2
    assert cache.get("a@b") is None
    for i in range(20):  # bounded in entries
        cache.put(f"u{i}@b", ArchivePrefs("always"))
    assert cache.get("u0@b") is None and cache.get("u19@b") is not None
