"""Signed stream tokens (`chatgate.streams.tokens`, issue 12).

Time is always passed in.  `_build` below is a second implementation of the byte
layout written from the module docstring (hmac, struct and base64 only), so the
documented format, not just the code's own round trip, is what is checked.
"""

from __future__ import annotations

import base64
import hmac
import socket
import struct
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.streams.tokens import (
    MAX_TOKEN_LENGTH,
    MAX_USER_BYTES,
    StreamAction,
    TokenReason,
    TokenVerdict,
    identify,
    issue,
    verify,
)

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
KEYS = {1: KEY1, 2: KEY2}
STREAM = "live/some-channel-name-0123456789"
IPV6 = "2001:db8:85a3:1234:5678:8a2e:370:7334"
IPV4 = "203.0.113.7"
NOW = 1_700_000_000
EXPIRES = NOW + 3600
TOKEN_ID = bytes.fromhex("001122334455667788")
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _build(
    key: bytes,
    key_id: int,
    stream: str,
    action: str,
    expires_at: int,
    token_id: bytes,
    *,
    address: str | None = None,
    user: str | None = None,
) -> str:
    """The token as the module docstring's layout describes it."""

    def h(data: bytes) -> bytes:
        return hmac.new(key, data, "sha256").digest()

    s = stream.encode("utf-8")
    ip = b""
    if address:
        ip = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    flags = (1 if action == "play" else 0) | (2 if address else 0) | (4 if user else 0)
    body = struct.pack(">BBI", flags, key_id, expires_at) + token_id
    body += h(b"chatgate-stream-token/stream\x00" + s)[:3]
    if address:
        body += h(b"chatgate-stream-token/address\x00" + ip)[:3]
    if user:
        body += bytes([len(user.encode())]) + user.encode()
    body += h(b"chatgate-stream-token/check\x001" + body)[:4]
    m = b"chatgate-stream-token\x001" + body + struct.pack(">I", len(s)) + s
    if address:
        m += bytes([len(ip)]) + ip
    body += h(m)
    return "1" + base64.urlsafe_b64encode(body).decode().rstrip("=")


def _verify(
    token: str,
    *,
    stream: str = STREAM,
    action: str = "play",
    now: float = NOW,
    address: str | None = IPV4,
    keys: dict[int, bytes] | None = None,
) -> TokenVerdict:
    return verify(
        token,
        KEYS if keys is None else keys,
        stream=stream,
        action=action,
        now=now,
        address=address,
    )


def _play(**kwargs: object) -> str:
    return issue(KEYS, 1, STREAM, "play", EXPIRES, **kwargs)  # type: ignore[arg-type]


# --- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "user"),
    [(None, None), (IPV4, None), (None, "alice"), (IPV6, "alice@example.org")],
)
@pytest.mark.parametrize("action", ["publish", "play"])
def test_issue_matches_the_documented_layout(
    action: str, address: str | None, user: str | None
) -> None:
    token = issue(KEYS, 1, STREAM, action, EXPIRES, address=address, user=user, token_id=TOKEN_ID)
    assert token == _build(KEY1, 1, STREAM, action, EXPIRES, TOKEN_ID, address=address, user=user)


def test_known_answer_token() -> None:
    """Pinned so that a change to the format cannot go unnoticed (and for the docs)."""
    token = issue(KEYS, 1, "live/alice", "publish", 1_700_000_000, token_id=TOKEN_ID)
    assert token == _build(KEY1, 1, "live/alice", "publish", 1_700_000_000, TOKEN_ID)
    assert token == "1AAFlU_EAABEiM0RVZneIeSG47gRCP1mcG02crOft7RVY-WfuANWeWlWloHvxfukH-R3l2rO0"


def test_tokens_are_url_safe_versioned_and_unpadded() -> None:
    for token in (_play(), _play(address=IPV6, user="alice")):
        assert token[0] == "1"
        assert set(token) <= set(B64URL)


def test_a_realistic_token_is_at_most_150_bytes() -> None:
    user = "some.user-name@chat.example.org"
    token = issue({255: KEY1}, 255, STREAM, "publish", 2**32 - 1, address=IPV6, user=user)
    assert _verify(token, action="publish", address=IPV6, keys={255: KEY1}).user == user
    assert len(token.encode("ascii")) <= 150
    assert len(_play()) == 73
    assert len(_play(address=IPV6)) == 77
    # With the stream name and "?token=", it fits nginx-rtmp's 255 bytes with room to spare.
    assert len(f"some-channel-name-0123456789?token={token}") < 255


def test_the_longest_user_that_always_fits() -> None:
    longest = "u" * MAX_USER_BYTES
    token = _play(address=IPV6, user=longest)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert _verify(token, address=IPV6).user == longest
    with pytest.raises(ValueError, match="too long"):
        _play(address=IPV6, user="u" * (MAX_USER_BYTES + 1))
    with pytest.raises(ValueError, match="1 to 255"):
        _play(user="u" * 256)


def test_each_token_has_its_own_random_id() -> None:
    ids = {_verify(_play()).token_id for _ in range(200)}
    assert len(ids) == 200
    assert all(isinstance(i, str) and len(i) == 12 for i in ids)


# --- round trips --------------------------------------------------------------------------


def test_a_play_token_verifies_with_its_fields() -> None:
    token = _play(user="alice", token_id=TOKEN_ID)
    verdict = _verify(token)
    assert verdict == TokenVerdict(
        TokenReason.VALID,
        key_id=1,
        token_id=base64.urlsafe_b64encode(TOKEN_ID).decode(),
        user="alice",
        expires_at=EXPIRES,
    )
    assert verdict.valid


def test_a_publish_token_verifies_for_publish_only() -> None:
    token = issue(KEYS, 2, STREAM, StreamAction.PUBLISH, EXPIRES)
    assert _verify(token, action="publish").valid
    assert _verify(token, action=StreamAction.PUBLISH).valid
    assert _verify(token, action="play").reason is TokenReason.WRONG_ACTION


@pytest.mark.parametrize("action", ["", "PLAY", "read", "playback", "play\x00"])
def test_an_unknown_action_is_the_wrong_action(action: str) -> None:
    assert _verify(_play(), action=action).reason is TokenReason.WRONG_ACTION


def test_a_token_without_address_ignores_the_callers_address() -> None:
    token = _play()
    for address in (IPV4, IPV6, None, "not an address"):
        assert _verify(token, address=address).valid


# --- expiry -------------------------------------------------------------------------------


def test_expiry_boundaries() -> None:
    token = _play()
    assert _verify(token, now=EXPIRES - 1).valid
    assert _verify(token, now=EXPIRES - 0.001).valid
    expired = _verify(token, now=EXPIRES)
    assert expired.reason is TokenReason.EXPIRED
    assert expired.expires_at == EXPIRES  # the MAC was good: the fields are facts
    assert _verify(token, now=EXPIRES + 10**6).reason is TokenReason.EXPIRED
    assert _verify(token, now=0).valid


@pytest.mark.parametrize("now", [float("nan"), None, "0"])
def test_a_now_that_is_not_a_number_is_expired(now: object) -> None:
    assert _verify(_play(), now=now).reason is TokenReason.EXPIRED  # type: ignore[arg-type]


def test_expiry_range() -> None:
    token = issue(KEYS, 1, STREAM, "play", 2**32 - 1)
    assert _verify(token, now=2**32 - 2).valid
    for bad in (-1, 2**32, 1.5, True, "1"):
        with pytest.raises(ValueError, match="expires_at"):
            issue(KEYS, 1, STREAM, "play", bad)  # type: ignore[arg-type]


# --- stream binding and field injection ---------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        "live/b",
        "live/a&name=other",
        "live/a?name=other",
        "live/a/",
        "live/a/x",
        "live//a",
        "live%2Fa",
        "live/a%00",
        "live/a\x00",
        "live/a ",
        " live/a",
        "live/A",
        "live/\u0430",  # Cyrillic a
        "live/a\u200b",  # zero-width space
        "live/\uff41",  # fullwidth a
        "live/a\udc80",  # lone surrogate (a surrogateescape'd byte)
        "",
        "live",
        "a",
    ],
)
def test_a_token_for_one_stream_never_verifies_for_another(other: str) -> None:
    token = issue(KEYS, 1, "live/a", "play", EXPIRES)
    assert _verify(token, stream="live/a").valid
    assert _verify(token, stream=other).reason is TokenReason.WRONG_STREAM


def test_no_unicode_normalization_either_way() -> None:
    nfc = "live/caf\u00e9"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    token = issue(KEYS, 1, nfc, "play", EXPIRES)
    assert _verify(token, stream=nfc).valid
    assert _verify(token, stream=nfd).reason is TokenReason.WRONG_STREAM


def test_injected_fields_in_the_issued_stream_name_stay_part_of_the_name() -> None:
    token = issue(KEYS, 1, "live/a&name=b", "play", EXPIRES)
    assert _verify(token, stream="live/a&name=b").valid
    for other in ("live/a", "live/b", "name=b"):
        assert _verify(token, stream=other).reason is TokenReason.WRONG_STREAM


def test_a_stream_name_with_a_lone_surrogate_is_signed_as_is() -> None:
    token = issue(KEYS, 1, "live/\udcff", "play", EXPIRES)
    assert _verify(token, stream="live/\udcff").valid
    assert _verify(token, stream="live/\u00ff").reason is TokenReason.WRONG_STREAM


def test_a_stream_that_is_not_text_is_the_wrong_stream() -> None:
    assert _verify(_play(), stream=None).reason is TokenReason.WRONG_STREAM  # type: ignore[arg-type]
    assert _verify(_play(), stream=STREAM.encode()).reason is TokenReason.WRONG_STREAM  # type: ignore[arg-type]


# --- address binding ----------------------------------------------------------------------


def test_an_address_bound_token_verifies_only_from_that_address() -> None:
    token = _play(address=IPV4)
    assert _verify(token, address=IPV4).valid
    for other in ("203.0.113.8", "::1", IPV6, "::ffff:203.0.113.8"):
        assert _verify(token, address=other).reason is TokenReason.WRONG_ADDRESS


@pytest.mark.parametrize(
    "address", [None, "", "localhost", "203.0.113.7 ", "203.0.113.7:1935", "1"]
)
def test_an_address_bound_token_fails_without_a_usable_address(address: str | None) -> None:
    assert _verify(_play(address=IPV4), address=address).reason is TokenReason.WRONG_ADDRESS


def test_address_forms_are_canonical() -> None:
    token = _play(address="2001:DB8:0:0::1")
    assert _verify(token, address="2001:db8::1").valid
    assert _verify(token, address="2001:0db8:0000:0000:0000:0000:0000:0001").valid
    mapped = _play(address="::ffff:192.0.2.1")
    assert _verify(mapped, address="192.0.2.1").valid
    assert _verify(_play(address="192.0.2.1"), address="::ffff:192.0.2.1").valid


def test_zones_of_scoped_addresses_are_told_apart() -> None:
    token = _play(address="fe80::1%eth0")
    assert _verify(token, address="fe80::1%eth0").valid
    assert _verify(token, address="FE80:0::1%eth0").valid
    for other in ("fe80::1%eth1", "fe80::1", "fe80::1%eth00"):
        assert _verify(token, address=other).reason is TokenReason.WRONG_ADDRESS
    assert (
        _verify(_play(address="fe80::1"), address="fe80::1%eth0").reason
        is TokenReason.WRONG_ADDRESS
    )
    assert _verify(_play(address="fe80::1%\u00e9"), address="fe80::1%\u00e9").valid


def test_issue_refuses_what_is_not_an_address() -> None:
    for bad in ("localhost", "", "1.2.3", "010.0.0.1", "1.2.3.4:5", "::1%" + "x" * 300):
        with pytest.raises(ValueError):
            _play(address=bad)


def test_a_wrong_stream_and_address_reports_the_stream() -> None:
    token = _play(address=IPV4)
    assert _verify(token, stream="live/x", address="::1").reason is TokenReason.WRONG_STREAM


# --- keys and rotation --------------------------------------------------------------------


def test_rotation_old_and_new_keys_verify_together() -> None:
    old = issue(KEYS, 1, STREAM, "play", EXPIRES)
    new = issue(KEYS, 2, STREAM, "play", EXPIRES)
    assert _verify(old).key_id == 1
    assert _verify(new).key_id == 2
    retired = {2: KEY2}
    assert _verify(new, keys=retired).valid
    assert _verify(old, keys=retired).reason is TokenReason.UNKNOWN_KEY


def test_a_key_replaced_under_the_same_id_is_a_bad_signature() -> None:
    token = _play(address=IPV4)
    verdict = _verify(token, keys={1: KEY2})
    assert verdict.reason is TokenReason.BAD_SIGNATURE
    assert verdict.user is None and verdict.token_id is None


def test_issue_refuses_unusable_keys() -> None:
    with pytest.raises(ValueError, match="no key"):
        issue(KEYS, 3, STREAM, "play", EXPIRES)
    for bad in (-1, 256, True, "1"):
        with pytest.raises(ValueError, match="0-255"):
            issue(KEYS, bad, STREAM, "play", EXPIRES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 32"):
        issue({1: b"short"}, 1, STREAM, "play", EXPIRES)
    with pytest.raises(ValueError, match="action"):
        issue(KEYS, 1, STREAM, "read", EXPIRES)
    with pytest.raises(ValueError, match="token id"):
        issue(KEYS, 1, STREAM, "play", EXPIRES, token_id=b"short")


# --- tampering and malformed input --------------------------------------------------------


@pytest.mark.parametrize("bound", [False, True])
def test_no_single_character_change_verifies(bound: bool) -> None:
    token = _play(address=IPV6 if bound else None, user="alice")
    address = IPV6 if bound else None
    assert _verify(token, address=address).valid
    for i in range(len(token)):
        for c in B64URL + "1+/=. %":
            if c == token[i]:
                continue
            changed = token[:i] + c + token[i + 1 :]
            verdict = _verify(changed, address=address)
            assert not verdict.valid, (i, c)
            assert verdict.reason is not TokenReason.VALID
        deleted = token[:i] + token[i + 1 :]
        assert not _verify(deleted, address=address).valid, i
        inserted = token[:i] + "A" + token[i:]
        assert not _verify(inserted, address=address).valid, i


def test_a_flipped_mac_or_check_byte_is_a_bad_signature() -> None:
    token = _play(user="alice")
    raw = bytearray(base64.urlsafe_b64decode(token[1:] + "=" * (-len(token[1:]) % 4)))
    for position in (len(raw) - 1, len(raw) - 32, len(raw) - 33, len(raw) - 36):
        damaged = bytearray(raw)
        damaged[position] ^= 0x01
        text = "1" + base64.urlsafe_b64encode(bytes(damaged)).decode().rstrip("=")
        assert _verify(text).reason is TokenReason.BAD_SIGNATURE, position


def test_every_carried_byte_is_authenticated() -> None:
    token = _play(address=IPV4, user="alice")
    raw = base64.urlsafe_b64decode(token[1:] + "=" * (-len(token[1:]) % 4))
    for position in range(len(raw)):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[position] ^= 1 << bit
            text = "1" + base64.urlsafe_b64encode(bytes(damaged)).decode().rstrip("=")
            assert not _verify(text, address=IPV4).valid, (position, bit)


def _reencode(body: bytes) -> str:
    return "1" + base64.urlsafe_b64encode(body).decode().rstrip("=")


def _body(token: str) -> bytes:
    return base64.urlsafe_b64decode(token[1:] + "=" * (-len(token[1:]) % 4))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "1",
        "2",
        "1A",
        "1AAAA",
        "x" * 200,
        None,
        b"1AAAA",
        42,
    ],
)
def test_garbage_is_malformed(token: object) -> None:
    assert _verify(token).reason is TokenReason.MALFORMED  # type: ignore[arg-type]


def test_malformed_spellings_of_a_good_token() -> None:
    token = _play(user="alice")
    assert _verify(token).valid
    text = token[1:]
    variants = [
        "2" + text,  # another version
        "v" + text,
        text,  # no version
        token + "=",  # padding
        token + "==",
        token[:20] + " " + token[20:],
        token + "\n",
        token[:30] + "%2D" + token[31:],
        token.replace("-", "+").replace("_", "/")
        if ("-" in token or "_" in token)
        else token + "+",
        token[:-1],  # truncated
        token + "A",  # one character too many
        token + "AAAA",  # three bytes too many
        token + "A" * (MAX_TOKEN_LENGTH - len(token) + 1),  # over the length bound
        "\uff11" + text,  # fullwidth 1
    ]
    for variant in variants:
        assert variant != token
        assert _verify(variant).reason is TokenReason.MALFORMED, variant


def test_a_non_canonical_last_character_is_malformed() -> None:
    token = _play(user="a")  # 56 bytes: the last character carries 2 unused (zero) bits
    body = _body(token)
    assert len(body) % 3 == 2
    last = B64URL.index(token[-1])
    assert last & 0b11 == 0
    twin = token[:-1] + B64URL[last | 1]
    assert _body(twin) == body  # the same bytes, spelled differently
    assert _verify(twin).reason is TokenReason.MALFORMED


def test_structurally_wrong_bodies_are_malformed() -> None:
    body = bytearray(_body(_play(user="alice")))
    assert body[0] == 0x05  # play + user
    for flags in (0x10, 0x20, 0x80, 0xF0):
        changed = bytearray(body)
        changed[0] |= flags
        assert _verify(_reencode(bytes(changed))).reason is TokenReason.MALFORMED
    user_at = 18
    assert body[user_at] == 5
    for length in (0, 4, 6, 255):
        changed = bytearray(body)
        changed[user_at] = length
        assert _verify(_reencode(bytes(changed))).reason is TokenReason.MALFORMED, length
    # The user flag set on a token that carries none, or cleared on one that does.
    assert _verify(_reencode(bytes([0x04]) + _body(_play())[1:])).reason is TokenReason.MALFORMED
    changed = bytearray(body)
    changed[0] = 0x01
    assert _verify(_reencode(bytes(changed))).reason is TokenReason.MALFORMED
    assert _verify(_reencode(bytes(body[:53]))).reason is TokenReason.MALFORMED


def test_an_empty_user_field_is_malformed() -> None:
    body = _body(_play())
    assert len(body) == 54
    # The user flag and a zero length byte, so that the length itself adds up.
    empty = bytes([body[0] | 0x04]) + body[1:18] + b"\x00" + body[18:]
    assert _verify(_reencode(empty)).reason is TokenReason.MALFORMED


def test_a_user_that_is_not_utf8_is_malformed() -> None:
    body = bytearray(_body(_play(user="alice")))
    body[19:24] = b"\xff\xfe\xfd\xfc\xfb"
    assert _verify(_reencode(bytes(body))).reason is TokenReason.MALFORMED


def test_unknown_key_id() -> None:
    token = issue({7: KEY1}, 7, STREAM, "play", EXPIRES)
    assert _verify(token).reason is TokenReason.UNKNOWN_KEY
    assert _verify(token, keys={}).reason is TokenReason.UNKNOWN_KEY


def test_a_token_signed_for_one_key_id_does_not_verify_under_another() -> None:
    body = bytearray(_body(issue(KEYS, 1, STREAM, "play", EXPIRES)))
    body[1] = 2
    assert _verify(_reencode(bytes(body)), keys={2: KEY1}).reason is TokenReason.BAD_SIGNATURE


def test_the_address_flag_cannot_be_dropped() -> None:
    body = bytearray(_body(_play(address=IPV4)))
    assert body[0] & 0x02
    unbound = bytes([body[0] & ~0x02]) + bytes(body[1:18]) + bytes(body[21:])
    assert _verify(_reencode(unbound), address=None).reason is TokenReason.BAD_SIGNATURE


# --- properties ---------------------------------------------------------------------------

# Any str, lone surrogates included (a hook may hand over surrogateescape'd bytes).
streams = st.text(st.characters(exclude_categories=()), max_size=80)
addresses = st.one_of(
    st.none(),
    st.ip_addresses().map(str),
)


@settings(max_examples=300, deadline=None)
@given(
    stream=streams,
    action=st.sampled_from(["publish", "play"]),
    expires_at=st.integers(0, 2**32 - 1),
    address=addresses,
    user=st.one_of(st.none(), st.text(min_size=1, max_size=12)),
    key_id=st.integers(0, 255),
    key=st.binary(min_size=32, max_size=64),
)
def test_property_round_trip(
    stream: str,
    action: str,
    expires_at: int,
    address: str | None,
    user: str | None,
    key_id: int,
    key: bytes,
) -> None:
    keys = {key_id: key}
    token = issue(keys, key_id, stream, action, expires_at, address=address, user=user)
    assert len(token) <= MAX_TOKEN_LENGTH
    ok = verify(token, keys, stream=stream, action=action, now=expires_at - 1, address=address)
    assert ok.valid
    assert (ok.user, ok.key_id, ok.expires_at) == (user, key_id, expires_at)
    late = verify(token, keys, stream=stream, action=action, now=expires_at, address=address)
    assert late.reason is TokenReason.EXPIRED


@settings(max_examples=300, deadline=None)
@given(stream=streams, other=streams)
def test_property_other_streams_never_verify(stream: str, other: str) -> None:
    token = issue(KEYS, 1, stream, "play", EXPIRES)
    verdict = verify(token, KEYS, stream=other, action="play", now=NOW, address=None)
    assert verdict.valid == (stream == other)


@settings(max_examples=500, deadline=None)
@given(
    token=st.one_of(st.text(max_size=160), st.text(alphabet=B64URL, max_size=160).map("1".__add__))
)
def test_property_garbage_never_raises_and_never_verifies(token: str) -> None:
    verdict = verify(token, KEYS, stream=STREAM, action="play", now=NOW, address=IPV4)
    assert isinstance(verdict, TokenVerdict)
    assert not verdict.valid


def test_a_one_time_token_says_so_and_the_flag_cannot_be_added_or_removed() -> None:
    once = _play(one_time=True)
    verdict = _verify(once)
    assert verdict.valid and verdict.one_time
    assert not _verify(_play()).one_time
    for token, flip in ((_play(), 0x08), (once, 0x08)):
        changed = bytearray(_body(token))
        changed[0] ^= flip
        assert _verify(_reencode(bytes(changed))).reason is TokenReason.BAD_SIGNATURE


def test_identify_names_a_genuine_token_without_its_stream() -> None:
    token = _play(user="alice@example.org", one_time=True)
    known = identify(token, KEYS)
    checked = _verify(token)
    assert known.valid and (known.token_id, known.expires_at, known.user, known.one_time) == (
        checked.token_id,
        checked.expires_at,
        "alice@example.org",
        True,
    )
    body = bytearray(_body(token))
    body[7] ^= 1  # a carried byte (the token id): the check fails
    assert identify(_reencode(bytes(body)), KEYS).reason is TokenReason.BAD_SIGNATURE
    assert identify("garbage", KEYS).reason is TokenReason.MALFORMED
    assert identify(token, {9: KEY1}).reason is TokenReason.UNKNOWN_KEY
