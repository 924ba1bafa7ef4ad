"""Archive ids (XEP-0359 stanza ids, XEP-0313 result ids): unique, unguessable,
and ordered by time, so that paging by id is paging by time.

An id is 26 characters of Crockford base32 (digits, then upper-case letters
without I, L, O, U: byte order is numeric order) for 128 bits: the first 48
are the Unix time in milliseconds, the other 80 random.  Within one
millisecond, a generator increments the random part instead of drawing anew,
so the ids one process hands out are strictly increasing (ULID's monotonic
rule); ids from two processes of a cluster in the same millisecond are still
unique (80 random bits) and ordered, only not in the order they were made.

`bounds_for(ms)` gives the smallest and largest id of a millisecond: the
XEP-0313 start/end filters become id bounds on the same index as paging.

Pure: time and randomness are passed in.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 26
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_MS_MAX = (1 << 48) - 1
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
#: RFC 4648 base32's alphabet to Crockford's (the C encoder does the work)
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())


def encode(value: int) -> str:
    """The 26-character form of a 128-bit number (the top two bits of 130 are zero):
    the number, shifted into 17 bytes after two zero bits, through the base32
    encoder; its first 26 characters are the 130 bits."""
    data = (value << 6).to_bytes(17, "big")
    return base64.b32encode(data)[:LENGTH].translate(_TO_CROCKFORD).decode()


def decode(text: str) -> int | None:
    """The number an id stands for; None when `text` is not a well-formed id."""
    if len(text) != LENGTH or text[0] not in "01234567":
        return None
    value = 0
    for c in text:
        digit = _VALUES.get(c)
        if digit is None:
            return None
        value = value << 5 | digit
    return value


def is_archive_id(text: str) -> bool:
    return decode(text) is not None


def millis_of(archive_id: str) -> int:
    """The millisecond an id was made in (ValueError when it is no id)."""
    value = decode(archive_id)
    if value is None:
        raise ValueError(f"not an archive id: {archive_id!r}")
    return value >> _RANDOM_BITS


def stamp_of(archive_id: str) -> datetime:
    return datetime.fromtimestamp(millis_of(archive_id) / 1000, UTC)


def millis(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, clamped to what ids hold."""
    ms = int(moment.timestamp() * 1000)
    return min(max(ms, 0), _MS_MAX)


def bounds_for(ms: int) -> tuple[str, str]:
    """(smallest, largest) id of the millisecond `ms`."""
    ms = min(max(ms, 0), _MS_MAX)
    return encode(ms << _RANDOM_BITS), encode(ms << _RANDOM_BITS | _RANDOM_MAX)


class IdGenerator:
    """Strictly increasing ids for one process (see the module docstring)."""

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random = random_bytes
        self._last_ms = -1
        self._last_random = 0

    @property
    def last_ms(self) -> int:
        """The millisecond the last id stands for (it may be ahead of the clock by the
        ids a millisecond could not hold, or after the clock went back)."""
        return self._last_ms

    def next(self, now_ms: int) -> str:
        """A new id for the time `now_ms`; never smaller than the previous one, even if
        the clock went back (the previous millisecond is kept until time passes it)."""
        if now_ms > self._last_ms:
            self._last_ms = min(now_ms, _MS_MAX)
            # the top bit left clear: room to increment many times within a millisecond
            self._last_random = int.from_bytes(self._random(10), "big") >> 1
        else:
            self._last_random += 1 + (self._random(1)[0] & 0x0F)
            if self._last_random > _RANDOM_MAX:  # 2**79 increments in one ms: never
                self._last_ms += 1
                self._last_random = 0
        return encode(self._last_ms << _RANDOM_BITS | self._last_random)
