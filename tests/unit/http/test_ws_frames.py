"""The lane's WebSocket frame reader (http/ws_frames.py) against frames built by hand
after RFC 6455 §5.2, including the RFC's own examples (§5.7)."""

from __future__ import annotations

import os

import pytest

from chatgate.http import ws_frames
from chatgate.http.ws_frames import FrameError, MessageReader, close_code, frame, unmask


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame: masked with a random key."""
    key = os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_all(data: bytes, max_message: int = 1 << 20) -> list[tuple[int, bytes]]:
    reader = MessageReader(max_message)
    reader.feed(data)
    return list(reader.messages())


def test_rfc_example_masked_hello() -> None:
    # RFC 6455 §5.7: "A single-frame masked text message"
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert read_all(data) == [(ws_frames.TEXT, b"Hello")]


def test_rfc_example_unmasked_hello_is_refused_from_a_client() -> None:
    with pytest.raises(FrameError) as caught:
        read_all(bytes.fromhex("810548656c6c6f"))
    assert caught.value.code == ws_frames.PROTOCOL_ERROR


def test_our_frames_match_the_rfc_examples() -> None:
    assert frame(ws_frames.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert frame(ws_frames.TEXT, b"a" * 256)[:4] == bytes.fromhex("817e0100")
    assert frame(ws_frames.BINARY, b"a" * 65536)[:10] == bytes.fromhex("827f0000000000010000")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_every_length_encoding_round_trips(size: int) -> None:
    payload = os.urandom(size).hex().encode()[:size]
    assert read_all(masked(ws_frames.TEXT, payload)) == [(ws_frames.TEXT, payload)]


def test_unmask_matches_a_byte_loop() -> None:
    key = b"\x01\x02\x03\xf0"
    for n in (0, 1, 3, 4, 5, 1000):
        data = os.urandom(n)
        assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    wire = (
        masked(ws_frames.TEXT, b"<open/>")
        + masked(ws_frames.PING, b"p")
        + masked(ws_frames.TEXT, "€ and more".encode())
    )
    reader = MessageReader(1000)
    out = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        out.extend(reader.messages())
    assert out == [
        (ws_frames.TEXT, b"<open/>"),
        (ws_frames.PING, b"p"),
        (ws_frames.TEXT, "€ and more".encode()),
    ]
    assert reader.buffered == 0


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    wire = (
        masked(ws_frames.TEXT, b"<message>", fin=False)
        + masked(ws_frames.PING, b"x")
        + masked(ws_frames.CONTINUATION, b"hi", fin=False)
        + masked(ws_frames.CONTINUATION, b"</message>")
    )
    assert read_all(wire) == [(ws_frames.PING, b"x"), (ws_frames.TEXT, b"<message>hi</message>")]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (masked(ws_frames.TEXT, b"x", rsv=0x40), ws_frames.PROTOCOL_ERROR),  # RSV1: no extension
        (masked(0x3, b"x"), ws_frames.PROTOCOL_ERROR),  # reserved data opcode
        (masked(0xB, b"x"), ws_frames.PROTOCOL_ERROR),  # reserved control opcode
        (masked(ws_frames.PING, b"x", fin=False), ws_frames.PROTOCOL_ERROR),
        (masked(ws_frames.PING, b"x" * 126), ws_frames.PROTOCOL_ERROR),
        (masked(ws_frames.CONTINUATION, b"x"), ws_frames.PROTOCOL_ERROR),
        (
            masked(ws_frames.TEXT, b"a", fin=False) + masked(ws_frames.TEXT, b"b"),
            ws_frames.PROTOCOL_ERROR,
        ),
        (masked(ws_frames.TEXT, b"\xff\xfe"), ws_frames.INVALID_PAYLOAD),
        (
            masked(ws_frames.TEXT, "é".encode()[:1], fin=False)
            + masked(ws_frames.CONTINUATION, b"x"),
            ws_frames.INVALID_PAYLOAD,
        ),
        (masked(ws_frames.TEXT, b"x" * 101), ws_frames.MESSAGE_TOO_BIG),
        (
            masked(ws_frames.TEXT, b"x" * 60, fin=False)
            + masked(ws_frames.CONTINUATION, b"x" * 60),
            ws_frames.MESSAGE_TOO_BIG,
        ),
    ],
    # named, not shown: the frames carry random masks, and pytest-xdist's workers
    # must collect the same test ids
    ids=[
        "rsv1",
        "reserved-data-opcode",
        "reserved-control-opcode",
        "fragmented-ping",
        "long-ping",
        "orphan-continuation",
        "text-inside-fragments",
        "invalid-utf8",
        "invalid-utf8-across-fragments",
        "too-big",
        "too-big-in-fragments",
    ],
)
def test_protocol_violations_fail_with_their_close_code(wire: bytes, code: int) -> None:
    with pytest.raises(FrameError) as caught:
        read_all(wire, max_message=100)
    assert caught.value.code == code


def test_an_oversized_message_is_refused_from_its_header_alone() -> None:
    # 1 GiB announced, 14 bytes sent: refused without waiting for (or buffering) the rest
    header = bytes((0x81, 0x80 | 127)) + (1 << 30).to_bytes(8, "big") + b"mask"
    reader = MessageReader(1 << 20)
    reader.feed(header)
    with pytest.raises(FrameError) as caught:
        reader.next()
    assert caught.value.code == ws_frames.MESSAGE_TOO_BIG


def test_a_length_with_its_top_bit_set_is_refused() -> None:
    header = bytes((0x81, 0x80 | 127)) + (1 << 63).to_bytes(8, "big") + b"mask"
    with pytest.raises(FrameError):
        read_all(header)


def test_close_codes() -> None:
    assert close_code(b"") is None
    assert close_code((1000).to_bytes(2, "big") + b"bye") == 1000
    assert close_code((4000).to_bytes(2, "big")) == 4000
    for bad in (b"\x03", (1005).to_bytes(2, "big"), (999).to_bytes(2, "big")):
        with pytest.raises(FrameError):
            close_code(bad)
    with pytest.raises(FrameError) as caught:
        close_code((1000).to_bytes(2, "big") + b"\xff")
    assert caught.value.code == ws_frames.INVALID_PAYLOAD
