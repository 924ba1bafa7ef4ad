"""A strict, sans-I/O reader of HTTP/1.x request heads, for the listener's lane
(`lane.py`).

It answers three ways: a complete `RequestHead` with the offset where its body
starts; None (the head is not all there yet); or `NotOurs`: the request is
well-formed HTTP or not, but it is not one the lane may take, and the
connection goes to aiohttp from that request's first byte.  So it never needs
to answer an error itself: whatever is odd (bare LF, obs-fold, a NUL, a
header name that is not a token, two Content-Lengths, any Transfer-Encoding or
Expect, a head over `MAX_HEAD_BYTES`, a version other than 1.0 and 1.1) is
aiohttp's to judge, with its own parser.  Only the requests this module accepts
are ever framed by the lane, and they are framed by one Content-Length: no
request can be read one way here and another way by aiohttp (RFC 9112 §11.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a request head longer than this goes to aiohttp (whose own limit answers it)
MAX_HEAD_BYTES = 8_192

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(rb"[0-9]{1,15}")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_VERSIONS = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}
#: headers a request the lane takes may carry at most once
_SINGLE = frozenset((b"content-length", b"host"))
#: headers whose presence alone makes a request aiohttp's
_NOT_OURS = frozenset((b"transfer-encoding", b"expect"))


class NotOurs(Exception):
    """The request at this offset is for aiohttp, whatever it is."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    #: the request target's path (the query, if any, is in `query`)
    path: str
    query: str
    version: tuple[int, int]
    #: lower-case name -> value (repeated names joined with ", ")
    headers: dict[bytes, bytes]
    #: offset of the first byte after the head (the body's first byte)
    end: int

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    @property
    def content_length(self) -> int:
        """The body's length (0 without Content-Length)."""
        value = self.headers.get(b"content-length")
        return 0 if value is None else int(value)

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the response (RFC 9112 §9.3)."""
        tokens = {t.strip().lower() for t in self.headers.get(b"connection", b"").split(b",") if t}
        if self.version >= (1, 1):
            return b"close" not in tokens
        return b"keep-alive" in tokens


def parse_head(buffer: bytes | bytearray, start: int = 0) -> RequestHead | None:
    """The head starting at `start`, None when incomplete; raises `NotOurs`."""
    end = buffer.find(b"\r\n\r\n", start, start + MAX_HEAD_BYTES)
    if end < 0:
        if len(buffer) - start >= MAX_HEAD_BYTES:
            raise NotOurs("head too long")
        return None
    head = bytes(buffer[start:end])
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf or b"\0" in head:
        raise NotOurs("bare CR or LF, or NUL")
    lines = head.split(b"\r\n")
    method, target, version = _request_line(lines[0])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise NotOurs("not a header line")  # obs-fold starts with SP or HT: no token
        name = name.lower()
        value = value.strip(b" \t")
        if name in _NOT_OURS:
            raise NotOurs(name.decode())
        if name in headers:
            if name in _SINGLE:
                raise NotOurs(f"two {name.decode()} headers")
            value = headers[name] + b", " + value
        headers[name] = value
    length = headers.get(b"content-length")
    if length is not None and not _DIGITS.fullmatch(length):
        raise NotOurs("Content-Length is not a number")
    if version == (1, 1) and b"host" not in headers:
        raise NotOurs("HTTP/1.1 without Host")
    path, _, query = target.partition("?")
    return RequestHead(method, path, query, version, headers, end + 4)


def _request_line(line: bytes) -> tuple[bytes, str, tuple[int, int]]:
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise NotOurs("not an origin-form request line")
    version = _VERSIONS.get(parts[2])
    if version is None:
        raise NotOurs("not HTTP/1.0 or HTTP/1.1")
    return parts[0], parts[1].decode("ascii"), version
