"""The lane's request-head reader (http/request_head.py): what it accepts it frames
exactly; anything odd is `NotOurs`, for aiohttp to judge with its own parser."""

from __future__ import annotations

import pytest

from chatgate.http.request_head import MAX_HEAD_BYTES, NotOurs, parse_head

POST = b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhello"


def test_a_post_is_read_with_its_body_offset() -> None:
    head = parse_head(POST)
    assert head is not None
    assert head.method == b"POST" and head.path == "/http-bind" and head.version == (1, 1)
    assert head.content_length == 5
    assert POST[head.end : head.end + 5] == b"hello"
    assert head.header(b"content-type") == "text/xml"
    assert head.keep_alive


def test_an_incomplete_head_is_none_until_it_is_all_there() -> None:
    cut = POST.index(b"\r\n\r\n")
    for end in (0, 1, 10, cut, cut + 3):
        assert parse_head(POST[:end]) is None
    assert parse_head(POST[: cut + 4]) is not None


def test_a_head_is_read_from_an_offset() -> None:
    buffer = b"junk" + POST
    head = parse_head(buffer, 4)
    assert head is not None and buffer[head.end : head.end + 5] == b"hello"


def test_query_is_split_from_the_path() -> None:
    head = parse_head(b"GET /xmpp-websocket?a=b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head is not None and head.path == "/xmpp-websocket" and head.query == "a=b"


def test_repeated_headers_are_joined() -> None:
    head = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nA: 2\r\n\r\n")
    assert head is not None and head.header(b"a") == "1, 2"


@pytest.mark.parametrize(
    ("version", "connection", "keep"),
    [
        (b"1.1", b"", True),
        (b"1.1", b"Connection: close\r\n", False),
        (b"1.1", b"Connection: keep-alive, Close\r\n", False),
        (b"1.0", b"", False),
        (b"1.0", b"Connection: Keep-Alive\r\n", True),
    ],
)
def test_keep_alive_follows_rfc_9112(version: bytes, connection: bytes, keep: bool) -> None:
    head = parse_head(b"GET / HTTP/" + version + b"\r\nHost: x\r\n" + connection + b"\r\n")
    assert head is not None and head.keep_alive is keep


@pytest.mark.parametrize(
    "request_bytes",
    [
        # framing a proxy and the lane could read two ways (RFC 9112 §6.3, §11.2)
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        # line and header syntax
        b"POST / HTTP/1.1\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n Folded: line\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHo\0st: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nNoColon\r\n\r\n",
        # request line
        b"POST  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\n\r\n",  # no Host
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"\r\nPOST / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_anything_odd_is_not_ours(request_bytes: bytes) -> None:
    with pytest.raises(NotOurs):
        parse_head(request_bytes)


def test_a_head_longer_than_the_limit_is_not_ours_even_unfinished() -> None:
    endless = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * MAX_HEAD_BYTES
    with pytest.raises(NotOurs):
        parse_head(endless)


def test_http_1_0_needs_no_host() -> None:
    head = parse_head(b"POST /http-bind HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert head is not None and head.version == (1, 0)
