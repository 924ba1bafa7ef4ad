"""RFC 7622 addresses: parsing, preparation, value semantics, and the fast paths.

The fast-path tests compare our results with the PRECIS profiles and the IDNA
library called directly, so they prove the shortcuts change nothing.
"""

from __future__ import annotations

import copy
import gc
import pickle
import random
import string
import tracemalloc
import unicodedata
from collections.abc import Callable

import idna
import pytest
from precis_i18n import get_profile

from chatgate import jid as jids
from chatgate.jid import (
    JID,
    InvalidJID,
    is_own_bare_jid,
    parse_cache_info,
    prepare_domain,
    prepare_resource,
    prepare_username,
)

USERNAME_CASE_MAPPED = get_profile("UsernameCaseMapped")
OPAQUE_STRING = get_profile("OpaqueString")
FORBIDDEN = set("\"&'/:<>@")


# -- parsing ----------------------------------------------------------------------


def test_parse_splits_full_jid_into_parts() -> None:
    jid = JID.parse("juliet@example.com/balcony")
    assert (jid.local, jid.domain, jid.resource) == ("juliet", "example.com", "balcony")


def test_parse_accepts_bare_and_domain_jids() -> None:
    assert JID.parse("juliet@example.com") == JID("juliet", "example.com")
    assert JID.parse("example.com") == JID("", "example.com")
    assert JID.parse("example.com/res") == JID("", "example.com", "res")


def test_parse_takes_resource_from_first_slash_so_it_may_hold_at_and_slash() -> None:
    # RFC 7622 §3.1: remove the resource from the first "/" before looking for "@".
    assert JID.parse("a@b.example/c@d/e") == JID("a", "b.example", "c@d/e")
    assert JID.parse("b.example/c@d") == JID("", "b.example", "c@d")


def test_parse_case_maps_localpart_and_domain_but_not_resource() -> None:
    assert JID.parse("Juliet@Example.COM/Balcony") == JID("juliet", "example.com", "Balcony")


def test_parse_width_maps_localpart_and_domain() -> None:
    assert JID.parse("\uff2auliet@\uff25xample.com") == JID("juliet", "example.com")


def test_parse_strips_one_trailing_dot_from_domain() -> None:
    # RFC 7622 §3.2: a final label separator MUST be stripped.
    assert JID.parse("juliet@example.com.") == JID.parse("juliet@example.com")


def test_parse_converts_a_labels_to_u_labels() -> None:
    # RFC 7622 §3.2.1: each A-label MUST be converted to a U-label.
    assert JID.parse("xn--bcher-kva.example") == JID("", "bücher.example")
    assert JID.parse("a@B\u00fccher.example") == JID.parse("a@xn--bcher-kva.example")


def test_parse_accepts_ip_literals() -> None:
    assert JID.parse("u@127.0.0.1").domain == "127.0.0.1"
    assert JID.parse("u@[::1]/r") == JID("u", "[::1]", "r")
    assert JID.parse("[0:0:0::1]").domain == "[::1]"
    assert JID.parse("[2001:DB8::1]").domain == "[2001:db8::1]"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty domainpart"),
        ("@example.com", "empty localpart"),
        ("juliet@", "empty domainpart"),
        ("example.com/", "empty resourcepart"),
        ("juliet@example.com/", "empty resourcepart"),
        ("a b@example.com", "localpart"),
        ('a"b@example.com', "forbidden"),
        ("a&b@example.com", "forbidden"),
        ("a'b@example.com", "forbidden"),
        ("a:b@example.com", "forbidden"),
        ("a<b@example.com", "forbidden"),
        ("a>b@example.com", "forbidden"),
        ("a@b@example.com", "domainpart"),
        ("exa mple.com", "domainpart"),
        ("-bad.example", "domainpart"),
        ("bad-.example", "domainpart"),
        ("a_b.example", "domainpart"),
        ("a..b", "domainpart"),
        ("example.com..", "empty label"),
        (".", "empty domainpart"),
        ("[::1", "IP literal"),
        ("[not-an-address]", "IPv6"),
        ("juliet@example.com/\u0007", "resourcepart"),
    ],
)
def test_parse_rejects_invalid_jid_with_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidJID, match=reason):
        JID.parse(text)


def test_parse_rejects_forbidden_char_revealed_by_width_mapping() -> None:
    # U+FF20 FULLWIDTH COMMERCIAL AT becomes "@" under PRECIS width mapping;
    # RFC 7622 §3.3.1 forbids it in the prepared localpart.
    with pytest.raises(InvalidJID, match="forbidden character '@'"):
        JID.parse("a\uff20b@example.com")


def test_invalid_jid_is_a_value_error() -> None:
    assert issubclass(InvalidJID, ValueError)


def test_parts_are_limited_to_1023_bytes() -> None:
    assert JID.parse("a" * 1023 + "@example.com").local == "a" * 1023
    assert len(prepare_username("\u3042" * 341).encode()) == 1023
    with pytest.raises(InvalidJID, match="1023"):
        JID.parse("a" * 1024 + "@example.com")
    with pytest.raises(InvalidJID, match="1023"):
        prepare_username("\u3042" * 342)
    with pytest.raises(InvalidJID, match="1023"):
        JID.parse("example.com/" + "r" * 1024)
    assert JID.parse("example.com/" + "r" * 1023).resource == "r" * 1023


def test_parse_is_cached() -> None:
    text = "cache-probe@example.com/r"
    first = JID.parse(text)
    inserts = parse_cache_info().inserts
    assert JID.parse(text) is first
    assert parse_cache_info().inserts == inserts


# -- memory and CPU an attacker can make us spend (issue 9 item 6) ----------------------


def _retained_after(work: Callable[[], None]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_the_parse_cache_is_bounded_in_bytes() -> None:
    """Messages to 12,000 distinct 2 KB addresses once pinned ~4 KB each (the cache
    held 65,536 entries of any size); now the cache holds at most 16 MiB."""

    def flood() -> None:
        for i in range(12_000):
            JID.parse(f"{i:06d}{'u' * 994}@example.com/{'r' * 1000}")

    retained = _retained_after(flood)
    assert retained < 17 * 2**20, retained
    info = parse_cache_info()
    assert info.bytes <= info.max_bytes == 16 * 2**20
    assert info.entries < 12_000


def test_the_parse_cache_counts_what_it_really_holds() -> None:
    texts = [f"user{i}@host{i % 7}.example/res-{i}" for i in range(3000)]
    texts += [f"{i}\u00e9l\u00e8ve@\u00e9cole{i}.example" for i in range(500)]
    jids._CACHE.clear()
    retained = _retained_after(lambda: [JID.parse(t) for t in texts])
    info = parse_cache_info()
    assert info.entries == len(texts)
    assert retained <= info.bytes <= 2 * retained


def test_canonical_text_is_shared_with_the_cache_key() -> None:
    text = "shared-key@example.com/r"
    assert str(JID.parse(text)) is text


@pytest.mark.parametrize(
    ("prepare", "text"),
    [
        (prepare_username, "\u00e9" * 1500),  # 3,000 bytes, but 1,500 Latin-1 letters
        (prepare_username, "a" * 1100 + "\u00e9"),  # ASCII with one accent
        (prepare_username, "\u0434" * 2100),  # 4,200 bytes of Cyrillic
        (prepare_resource, "\u00e9" * 1500),
        (prepare_resource, "\u4e00" * 1400),  # 4,200 bytes of CJK
        (prepare_resource, "x" * 1024 + "\u00a0"),
    ],
)
def test_over_long_parts_are_refused_before_precis(
    monkeypatch: pytest.MonkeyPatch, prepare: Callable[[str], str], text: str
) -> None:
    """PRECIS costs ~4 us a character in pure Python: text that cannot prepare to
    1023 bytes or less is refused by cheap length checks, never prepared."""

    def no_precis(_text: str) -> str:
        raise AssertionError("PRECIS ran on over-long text")

    monkeypatch.setattr(jids._username_profile, "enforce", no_precis)
    monkeypatch.setattr(jids._opaque_profile, "enforce", no_precis)
    with pytest.raises(InvalidJID, match="longer than 1023 bytes"):
        prepare(text)


def test_over_long_domainparts_are_refused_before_idna(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_idna(*_args: object, **_kw: object) -> bytes:
        raise AssertionError("IDNA ran on over-long text")

    monkeypatch.setattr(jids.idna, "encode", no_idna)
    with pytest.raises(InvalidJID, match="longer than 1023 bytes"):
        prepare_domain("\u00e9" * 2100 + ".example")


def test_raw_length_guard_keeps_every_part_that_can_be_valid() -> None:
    # The guards are an over-approximation: text that does prepare to 1023 bytes passes.
    # Fullwidth letters with two marks shrink 3.5:1 (the worst case; see jid.py).
    text = "\uff35\u0308\u0304" * 511  # 3,577 bytes -> 511 x "\u01d6" = 1,022 bytes
    assert len(text.encode()) == 3577
    assert prepare_username(text) == "\u01d6" * 511
    assert prepare_resource("\u00e9" * 511) == "\u00e9" * 511
    assert len(prepare_username("\u3042" * 341).encode()) == 1023


def test_no_latin1_character_is_absorbed_by_a_neighbour() -> None:
    """The Latin-1 count is a lower bound on the prepared length only if no character
    U+0000..U+00FF ever merges into the one before it: none is a combining mark, and
    none is the second part of a canonical decomposition (NFC composes only those)."""
    latin1 = {chr(c) for c in range(256)}
    assert all(unicodedata.combining(c) == 0 for c in latin1)
    for cp in range(0x110000):
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            assert len(parts) == 1 or chr(int(parts[1], 16)) not in latin1, hex(cp)


# -- value semantics ----------------------------------------------------------------


def test_jid_is_immutable() -> None:
    jid = JID("a", "example.com")
    with pytest.raises(AttributeError):
        jid.local = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del jid.domain  # type: ignore[misc]


def test_jid_equality_and_hash_follow_the_parts() -> None:
    a = JID("a", "example.com", "r")
    assert a == JID.parse("A@Example.com/r")
    assert a != JID("a", "example.com", "R")
    assert {a: 1}[JID("a", "example.com", "r")] == 1
    assert a != "a@example.com/r"


def test_jid_survives_pickle_and_copy() -> None:
    jid = JID.parse("a@example.com/r")
    assert pickle.loads(pickle.dumps(jid)) == jid
    assert copy.copy(jid) == jid
    assert copy.deepcopy(jid) == jid


def test_str_joins_parts_and_is_cached() -> None:
    jid = JID("a", "example.com", "r")
    assert str(jid) == "a@example.com/r"
    assert str(jid) is str(jid)
    assert str(JID("", "example.com")) == "example.com"
    assert str(JID("", "example.com", "r")) == "example.com/r"
    assert repr(jid) == "JID('a', 'example.com', 'r')"


def test_bare_drops_the_resource() -> None:
    full = JID("a", "example.com", "r")
    assert full.bare == JID("a", "example.com")
    assert full.bare.is_bare and not full.is_bare
    bare = JID("a", "example.com")
    assert bare.bare is bare


def test_is_domain_means_no_localpart() -> None:
    assert JID.parse("example.com").is_domain
    assert JID.parse("example.com/r").is_domain
    assert not JID.parse("a@example.com").is_domain


def test_constructor_trusts_its_input() -> None:
    # For already-prepared parts: nothing is checked or changed.
    assert JID("Not Prepared", "X", "").local == "Not Prepared"


# -- the fast paths are identical to the full preparation -----------------------------


def _random_strings(alphabet: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(count)]


PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def test_localpart_fast_path_matches_precis_for_every_ascii_character() -> None:
    for char in PRINTABLE_ASCII:
        if char in FORBIDDEN:
            with pytest.raises(InvalidJID):
                prepare_username(char)
        else:
            assert prepare_username(char) == USERNAME_CASE_MAPPED.enforce(char), char


def test_localpart_fast_path_matches_precis_for_random_ascii_strings() -> None:
    alphabet = "".join(c for c in PRINTABLE_ASCII if c not in FORBIDDEN)
    for text in _random_strings(alphabet, 3000, seed=7622):
        assert prepare_username(text) == USERNAME_CASE_MAPPED.enforce(text), text


def test_resource_fast_path_matches_precis_for_printable_ascii() -> None:
    for char in " " + PRINTABLE_ASCII:
        assert prepare_resource(char) == OPAQUE_STRING.enforce(char), char
    for text in _random_strings(" " + PRINTABLE_ASCII, 3000, seed=8265):
        assert prepare_resource(text) == OPAQUE_STRING.enforce(text), text


def test_domain_fast_path_matches_idna() -> None:
    label_chars = string.ascii_letters + string.digits
    rng = random.Random(5891)
    names = ["Example.COM", "a.b", "127.0.0.1", "x1-y2.example", "0.example", "a" * 63 + ".com"]
    for _ in range(2000):
        labels = []
        for _ in range(rng.randint(1, 4)):
            inner = "".join(rng.choices(label_chars + "-", k=rng.randint(0, 10)))
            labels.append(rng.choice(label_chars) + inner + rng.choice(label_chars))
        names.append(".".join(labels))
    for name in names:
        try:
            expected = idna.decode(idna.encode(name, uts46=True))
        except idna.IDNAError:
            with pytest.raises(InvalidJID):
                prepare_domain(name)
        else:
            assert prepare_domain(name) == expected, name


def test_non_ascii_takes_the_full_path() -> None:
    assert prepare_username("Ju\u0308liet") == "jüliet"  # NFC after case mapping
    assert prepare_resource("a\u00a0b") == "a b"  # OpaqueString maps non-ASCII spaces
    assert prepare_domain("B\u00dcCHER.example") == "bücher.example"


# -- helpers ------------------------------------------------------------------------------


def test_prepare_username_raises_invalid_jid() -> None:
    with pytest.raises(InvalidJID):
        prepare_username("")
    with pytest.raises(InvalidJID):
        prepare_username("a b")
    assert prepare_username("Juliet") == "juliet"


@pytest.mark.parametrize(
    ("authzid", "expected"),
    [
        ("juliet@example.com", True),
        ("Juliet@EXAMPLE.com", True),
        ("juliet@example.com.", True),
        ("juliet@example.com/balcony", False),
        ("romeo@example.com", False),
        ("juliet@example.org", False),
        ("example.com", False),
        ("not a jid", False),
    ],
)
def test_is_own_bare_jid(authzid: str, expected: bool) -> None:
    assert is_own_bare_jid(authzid, "juliet", "example.com") is expected
