"""Signed stream tokens: "whoever holds this may publish (or play) this stream
until then", checked with a keyed hash and no database read.

A token is issued by chatgate (the CLI, the REST API, an XMPP IQ) and travels in
the query string of a media URL (``rtmp://host/live/alice?token=...``); the media
server forwards it to a hook, which calls `verify` with the stream, action and
client address *the media server reports*.  nginx-rtmp keeps at most 255 bytes of
stream name + ``?`` + arguments, so a token is URL-safe text of at most
`MAX_TOKEN_LENGTH` (150) characters.

Format, version ``1``
---------------------

The token text is one version character followed by base64url (RFC 4648 §5, the
alphabet ``A-Z a-z 0-9 - _``, no ``=`` padding) of a binary body::

    token = "1" || base64url_nopad(body)

    body (integers big-endian; "A" = address-bound, "U" = user carried):
      offset  size  field
      0       1     flags: bit 0 action (0 publish, 1 play), bit 1 A, bit 2 U,
                    bit 3 one-time, bits 4-7 zero (anything else is malformed)
      1       1     key id, 0-255: names the HMAC key K in the verifier's key set
      2       4     expires_at: Unix seconds, unsigned (valid while now < expires_at)
      6       9     token id: random; what a one-time-token store remembers
      15      3     stream tag  = H(K, "chatgate-stream-token/stream\\0" || S)[:3]
      18      3     address tag = H(K, "chatgate-stream-token/address\\0" || IP)[:3], if A
      .       1     user length L (1-255), if U
      .       L     user, UTF-8, if U
      end-36  4     check = H(K, "chatgate-stream-token/check\\0" || "1" || body[:-36])[:4]
      end-32  32    MAC   = H(K, M)

    M = "chatgate-stream-token\\0" || "1" || body[:-32]
        || uint32(len(S)) || S
        || (uint8(len(IP)) || IP, if A)

    H = HMAC-SHA-256; "\\0" is one NUL byte; "1" is the byte 0x31

where ``K`` is the key named by the key id, ``S`` the stream name as UTF-8 (with
``surrogatepass``, so every Python str has exactly one byte form) and ``IP`` the
client address as its network-order bytes, as ``inet_pton`` gives them: 4 for
IPv4, 16 for IPv6, so every spelling of an address is the same (``::1`` and
``0:0:0:0:0:0:0:1``); an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) counts
as its IPv4 address; a scoped IPv6 address appends ``%`` and its zone in UTF-8
(``fe80::1%eth0``), so zones are told apart.

Why this shape:

- **Stream and address are bound, not carried.**  The verifier already has them
  (from the media server), so they enter the MAC in full and length-prefixed,
  and the token stays short whatever the stream name.  A token for ``live/a``
  does not verify for ``live/b``, ``live/a&name=other``, ``live/a%00``,
  ``live/\\u0430`` (a Cyrillic a) or the NFD form of a name: the bytes
  differ, so the MAC does.  No normalization is applied on purpose: the name the media server
  reports is the name that was signed, or the token fails (closed).
- **Action, expiry, key id, token id and user are carried** (and MAC'd, like
  every body byte): the verdict reports who the token was for and which id a
  one-time store must remember until when.  The user is optional; one of up to
  `MAX_USER_BYTES` UTF-8 bytes always fits in 150 characters.
- **The tags and the check** only let a failed verification say *why*.  The
  MAC covers the stream, so when it fails the verifier cannot know by the MAC
  alone whether the token was for another stream or was forged or damaged.
  The tags are 24-bit keyed digests of the signed stream and address; the
  check is a 32-bit MAC over the carried bytes alone (tags included).  A failed
  check means a forged or damaged token, or a key replaced under the same id
  (``BAD_SIGNATURE``); a good check with a tag that differs from the requested
  stream's or address's means the token is genuine but for another stream
  (``WRONG_STREAM``) or address (``WRONG_ADDRESS``).  They decide nothing:
  every reason but ``VALID`` is a denial, and only the full MAC makes a token
  valid.  Keyed, so a token reveals nothing about the address it is bound to.
- **Key id** lets keys rotate: the verifier holds several keys at once, issues
  with the newest and drops the old one once its tokens have expired.
- **Version character** outside the base64 text, so a later format may change
  the encoding entirely; it is also inside ``M``.
- **The full 32-byte HMAC-SHA-256**, compared with `hmac.compare_digest`.

Sizes: 73 characters unbound, 77 bound to an address, plus about 4/3 of the
user's UTF-8 bytes (+1) when a user is carried.

`verify` checks, in order: well-formed (else ``MALFORMED``), key known
(``UNKNOWN_KEY``), address given and parseable when the token is address-bound
(``WRONG_ADDRESS``), the MAC over the requested stream and address (on failure
the check and the tags tell ``WRONG_STREAM`` / ``WRONG_ADDRESS`` from
``BAD_SIGNATURE``), the action (``WRONG_ACTION``), the expiry (``EXPIRED``,
also for a ``now`` that is not a number).  It never raises for any token or
claim text: it returns a verdict.  `issue` raises `ValueError` for arguments
no token can carry (our own misuse).  Neither reads the clock nor awaits;
neither keeps state (the one-time store is the caller's).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import ipaddress
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from chatgate.randomness import random_bytes

__all__ = [
    "MAX_TOKEN_LENGTH",
    "MAX_USER_BYTES",
    "MIN_KEY_BYTES",
    "TOKEN_ID_BYTES",
    "VERSION",
    "StreamAction",
    "TokenReason",
    "TokenVerdict",
    "identify",
    "issue",
    "verify",
]

VERSION: Final = "1"
MAX_TOKEN_LENGTH: Final = 150
TOKEN_ID_BYTES: Final = 9
MIN_KEY_BYTES: Final = 32
"""Shortest HMAC key `issue` accepts: SHA-256's output size (RFC 2104 §3)."""
MAX_EXPIRES_AT: Final = 0xFFFFFFFF
"""The last second a uint32 expiry can name (2106-02-07)."""

_FLAG_PLAY: Final = 0x01
_FLAG_ADDRESS: Final = 0x02
_FLAG_USER: Final = 0x04
_FLAG_ONE_TIME: Final = 0x08
_FLAGS_KNOWN: Final = _FLAG_PLAY | _FLAG_ADDRESS | _FLAG_USER | _FLAG_ONE_TIME

_HEADER = struct.Struct(">BBI")  # flags, key id, expires_at
_TAG_BYTES: Final = 3
_CHECK_BYTES: Final = 4
_MAC_BYTES: Final = 32
_ID_END: Final = _HEADER.size + TOKEN_ID_BYTES
_STREAM_TAG_END: Final = _ID_END + _TAG_BYTES
_FIXED_BYTES: Final = _STREAM_TAG_END + _CHECK_BYTES + _MAC_BYTES  # 54: unbound, no user

MAX_USER_BYTES: Final = (MAX_TOKEN_LENGTH - len(VERSION)) * 3 // 4 - _FIXED_BYTES - _TAG_BYTES - 1
"""Longest user (UTF-8 bytes) that fits in any token, address-bound or not (53)."""

_MAC_LABEL: Final = b"chatgate-stream-token\0" + VERSION.encode("ascii")
_CHECK_LABEL: Final = b"chatgate-stream-token/check\0" + VERSION.encode("ascii")
_STREAM_TAG_LABEL: Final = b"chatgate-stream-token/stream\0"
_ADDRESS_TAG_LABEL: Final = b"chatgate-stream-token/address\0"
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_U32 = struct.Struct(">I")


class StreamAction(enum.StrEnum):
    """What a token allows on its stream (the media servers' words)."""

    PUBLISH = "publish"
    PLAY = "play"


class TokenReason(enum.Enum):
    """Why a token was accepted or refused; everything but VALID is a denial."""

    VALID = "valid"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown key"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "expired"
    WRONG_STREAM = "wrong stream"
    WRONG_ACTION = "wrong action"
    WRONG_ADDRESS = "wrong address"


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """The answer of `verify`.

    The token's fields (key id, token id, user, expiry) are filled only once its
    MAC is known to be good: for ``VALID``, ``EXPIRED`` and ``WRONG_ACTION``.
    For the other reasons they are ``None``: unauthenticated bytes are not facts.
    ``token_id`` is base64url text (12 characters), ready to key a store of used
    one-time tokens, which must remember it until ``expires_at``.
    """

    reason: TokenReason
    key_id: int | None = None
    token_id: str | None = None
    user: str | None = None
    expires_at: int | None = None
    one_time: bool = False
    """Issued for one use: the caller must claim ``token_id`` in its store of used
    one-time tokens (`stores.OneTimeTokens`) before honouring it."""

    @property
    def valid(self) -> bool:
        return self.reason is TokenReason.VALID


_MALFORMED: Final = TokenVerdict(TokenReason.MALFORMED)
_UNKNOWN_KEY: Final = TokenVerdict(TokenReason.UNKNOWN_KEY)
_BAD_SIGNATURE: Final = TokenVerdict(TokenReason.BAD_SIGNATURE)
_WRONG_STREAM: Final = TokenVerdict(TokenReason.WRONG_STREAM)
_WRONG_ADDRESS: Final = TokenVerdict(TokenReason.WRONG_ADDRESS)


def _canonical_address(address: str) -> bytes:
    """The bytes an address is bound as (module docstring); `ValueError` if it is not
    an IP address.  The class is picked by ``:`` because `ipaddress.ip_address`
    tries IPv4 first and pays for an exception on every IPv6 address."""
    if ":" not in address:
        return ipaddress.IPv4Address(address).packed
    ip = ipaddress.IPv6Address(address)
    if ip.scope_id:
        raw = ip.packed + b"%" + ip.scope_id.encode("utf-8", "surrogatepass")
        if len(raw) > 255:
            raise ValueError("IPv6 zone too long")
        return raw
    mapped = ip.ipv4_mapped
    return ip.packed if mapped is None else mapped.packed


def _stream_bytes(stream: str) -> bytes:
    return stream.encode("utf-8", "surrogatepass")


def _tag(key: bytes, label: bytes, value: bytes) -> bytes:
    return hmac.digest(key, label + value, "sha256")[:_TAG_BYTES]


def _check(key: bytes, carried: bytes) -> bytes:
    return hmac.digest(key, _CHECK_LABEL + carried, "sha256")[:_CHECK_BYTES]


def _mac(key: bytes, signed: bytes, stream: bytes, address: bytes | None) -> bytes:
    message = _MAC_LABEL + signed + _U32.pack(len(stream)) + stream
    if address is not None:
        message += bytes((len(address),)) + address
    return hmac.digest(key, message, "sha256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def issue(
    secret_keys: Mapping[int, bytes],
    key_id: int,
    stream: str,
    action: StreamAction | str,
    expires_at: int,
    *,
    address: str | None = None,
    user: str | None = None,
    one_time: bool = False,
    token_id: bytes | None = None,
) -> str:
    """A token allowing ``action`` on ``stream`` until ``expires_at`` (exclusive).

    Signed with ``secret_keys[key_id]``.  ``address`` binds the token to one
    client address; ``user`` is carried so the verdict can say whose token it
    is.  ``one_time`` marks it for a single use (the verifier's store enforces
    it).  ``token_id`` is for known-answer tests only: by default it is random.

    Raises `ValueError` for an unknown key id or one outside 0-255, a key shorter
    than `MIN_KEY_BYTES`, an unknown action, an expiry outside uint32, an address
    that is not an IP address, an empty or too long user (a token over
    `MAX_TOKEN_LENGTH`), or a token id of the wrong size.
    """
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 <= key_id <= 255:
        raise ValueError(f"key id must be an integer 0-255, not {key_id!r}")
    key = secret_keys.get(key_id)
    if key is None:
        raise ValueError(f"no key with id {key_id}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"stream token keys must have at least {MIN_KEY_BYTES} bytes")
    try:
        act = StreamAction(action)
    except ValueError:
        raise ValueError(f"action must be 'publish' or 'play', not {action!r}") from None
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int)
        or not 0 <= expires_at <= MAX_EXPIRES_AT
    ):
        raise ValueError(f"expires_at must be integer Unix seconds in uint32, not {expires_at!r}")
    if token_id is None:
        token_id = random_bytes(TOKEN_ID_BYTES)
    elif len(token_id) != TOKEN_ID_BYTES:
        raise ValueError(f"a token id has {TOKEN_ID_BYTES} bytes")

    flags = _FLAG_PLAY if act is StreamAction.PLAY else 0
    if one_time:
        flags |= _FLAG_ONE_TIME
    canon: bytes | None = None
    tail = b""
    if address is not None:
        canon = _canonical_address(address)  # ValueError for a non-address
        flags |= _FLAG_ADDRESS
        tail += _tag(key, _ADDRESS_TAG_LABEL, canon)
    if user is not None:
        try:
            user_bytes = user.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the user must be encodable as UTF-8") from None
        if not 1 <= len(user_bytes) <= 255:
            raise ValueError("the user must have 1 to 255 UTF-8 bytes")
        flags |= _FLAG_USER
        tail += bytes((len(user_bytes),)) + user_bytes

    stream_b = _stream_bytes(stream)
    carried = (
        _HEADER.pack(flags, key_id, expires_at)
        + token_id
        + _tag(key, _STREAM_TAG_LABEL, stream_b)
        + tail
    )
    signed = carried + _check(key, carried)
    token = VERSION + _b64(signed + _mac(key, signed, stream_b, canon))
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(
            f"the token would have {len(token)} characters, more than {MAX_TOKEN_LENGTH}: "
            f"the user is too long to carry (at most {MAX_USER_BYTES} UTF-8 bytes always fit)"
        )
    return token


def _decode(token: object) -> bytes | None:
    """The body of a version-1 token, or None unless it is canonical base64url."""
    if (
        not isinstance(token, str)
        or len(token) > MAX_TOKEN_LENGTH
        or not token.startswith(VERSION)
        or not _BASE64URL.fullmatch(token, 1)
    ):
        return None
    text = token[1:]
    try:
        body = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Non-zero bits left over in the last character would give a second spelling of
    # the same token (and of its token id): only the canonical one is accepted.
    if _b64(body) != text:
        return None
    return body


def _diagnose(
    key: bytes, body: bytes, end: int, stream: bytes, address: bytes | None
) -> TokenVerdict:
    """Why a token whose MAC failed is refused (see "The tags and the check")."""
    carried = body[:end]
    if not hmac.compare_digest(_check(key, carried), body[end : end + _CHECK_BYTES]):
        return _BAD_SIGNATURE
    if _tag(key, _STREAM_TAG_LABEL, stream) != carried[_ID_END:_STREAM_TAG_END]:
        return _WRONG_STREAM
    if address is not None and (
        _tag(key, _ADDRESS_TAG_LABEL, address)
        != carried[_STREAM_TAG_END : _STREAM_TAG_END + _TAG_BYTES]
    ):
        return _WRONG_ADDRESS
    return _BAD_SIGNATURE


def _parse(token: object) -> tuple[bytes, int, int, int, int, str | None] | None:
    """(body, flags, key id, expires_at, end of the carried fields, user) of a
    well-formed token, None otherwise; nothing is authenticated yet."""
    body = _decode(token)
    if body is None or len(body) < _FIXED_BYTES:
        return None
    flags, key_id, expires_at = _HEADER.unpack_from(body)
    if flags & ~_FLAGS_KNOWN:
        return None
    end = len(body) - _MAC_BYTES - _CHECK_BYTES  # where the carried fields end
    pos = _STREAM_TAG_END
    if flags & _FLAG_ADDRESS:
        pos += _TAG_BYTES
    user: str | None = None
    if flags & _FLAG_USER:
        if pos >= end:
            return None
        length = body[pos]
        user_bytes = body[pos + 1 : pos + 1 + length]
        pos += 1 + length
        if length == 0 or pos != end:
            return None
        try:
            user = user_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif pos != end:
        return None
    return body, flags, key_id, expires_at, end, user


def identify(token: str, keys: Mapping[int, bytes]) -> TokenVerdict:
    """Who issued `token` and until when, without a stream to check it against:
    what revoking it needs.  Only the 32-bit check over the carried fields is
    verified (the full MAC covers the stream, which the caller does not give),
    so a token damaged or forged by chance is refused (``BAD_SIGNATURE``) but
    the answer is no proof: revoke, never grant, on it.  ``VALID`` (whatever the
    expiry) with the key id, token id, user, expiry and one-time flag filled."""
    parsed = _parse(token)
    if parsed is None:
        return _MALFORMED
    body, flags, key_id, expires_at, end, user = parsed
    key = keys.get(key_id)
    if key is None:
        return _UNKNOWN_KEY
    if not hmac.compare_digest(_check(key, body[:end]), body[end : end + _CHECK_BYTES]):
        return _BAD_SIGNATURE
    one_time = bool(flags & _FLAG_ONE_TIME)
    token_id = _b64(body[6:_ID_END])
    return TokenVerdict(TokenReason.VALID, key_id, token_id, user, expires_at, one_time)


def verify(
    token: str,
    keys: Mapping[int, bytes],
    *,
    stream: str,
    action: StreamAction | str,
    now: float,
    address: str | None,
) -> TokenVerdict:
    """May the holder of ``token`` do ``action`` on ``stream`` from ``address`` at ``now``?

    ``keys`` maps key ids to every key currently accepted (rotation: old and new
    together).  ``address`` is the client address the caller vouches for (the
    media server's ``addr``/``ip``); it matters only for address-bound tokens,
    and ``None`` fails them.  ``now`` is Unix seconds; the token is valid while
    ``now < expires_at``.  Never raises for bad input: see the module docstring
    for the order of the checks and `TokenVerdict` for what the verdict tells.
    """
    parsed = _parse(token)
    if parsed is None:
        return _MALFORMED
    body, flags, key_id, expires_at, end, user = parsed

    key = keys.get(key_id)
    if key is None:
        return _UNKNOWN_KEY

    canon: bytes | None = None
    if flags & _FLAG_ADDRESS:
        if not isinstance(address, str):
            return _WRONG_ADDRESS
        try:
            canon = _canonical_address(address)
        except ValueError:
            return _WRONG_ADDRESS
    if not isinstance(stream, str):
        return _WRONG_STREAM
    stream_b = _stream_bytes(stream)

    mac_at = end + _CHECK_BYTES
    if not hmac.compare_digest(_mac(key, body[:mac_at], stream_b, canon), body[mac_at:]):
        return _diagnose(key, body, end, stream_b, canon)

    token_action = StreamAction.PLAY if flags & _FLAG_PLAY else StreamAction.PUBLISH
    reason = TokenReason.VALID
    if action != token_action:
        reason = TokenReason.WRONG_ACTION
    elif not (isinstance(now, int | float) and now < expires_at):  # NaN, None: expired
        reason = TokenReason.EXPIRED
    one_time = bool(flags & _FLAG_ONE_TIME)
    return TokenVerdict(reason, key_id, _b64(body[6:_ID_END]), user, expires_at, one_time)
