"""What a slot is made of: checking a request's filename, size and type, the
random token, the signed URLs, and the XEP-0363 errors.

Pure: no I/O, no clock (times are passed in), no storage.

A slot's PUT URL carries an HMAC-SHA256 over everything the PUT must match
(token, filename, size, content type, the PUT deadline), keyed by an
installation secret every server process reads from the database, so any
process can check a PUT it did not hand out, and nobody can make a URL for a
bigger file, another type or a later deadline.  The GET URL is the same path
without the signature: the token (24 random bytes) is what makes it
unguessable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.element import Element

#: XEP-0363's namespace
UPLOAD = "urn:xmpp:http:upload:0"
#: where the HTTP listener serves uploads
PATH_PREFIX = "/upload/"
#: a slot's token: 32 URL-safe characters (24 random bytes)
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
#: RFC 7231 §3.1.1.1 media type: type/subtype and optional parameters
_TOKEN_CHARS = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
MEDIA_TYPE = re.compile(
    rf"{_TOKEN_CHARS}/{_TOKEN_CHARS}(\s*;\s*{_TOKEN_CHARS}=({_TOKEN_CHARS}|\"[^\"\\\r\n]*\"))*"
)
MAX_FILENAME = 255
MAX_CONTENT_TYPE = 255
DEFAULT_TYPE = "application/octet-stream"
#: characters a filename may not hold: path separators, controls, and what
#: makes a Content-Disposition or a URL ambiguous
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f\u2028\u2029\"]")


class SlotError(Exception):
    """The slot request is refused with `condition`; `app` is XEP-0363's own child
    of `<error/>` (file-too-large, retry), when there is one."""

    def __init__(
        self,
        condition: StanzaErrorCondition,
        text: str,
        app: Element | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text
        self.app = app
        self.error_type = error_type or condition.default_type


@dataclass(frozen=True, slots=True)
class SlotRequest:
    filename: str
    size: int
    content_type: str


def media_type(content_type: str) -> str:
    """``type/subtype`` of a content type, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def read_request(request: Element, max_file_size: int, allowed: tuple[str, ...]) -> SlotRequest:
    """The checked ``<request filename size content-type/>`` (XEP-0363 §4);
    raises SlotError: bad-request for a malformed one, not-acceptable with
    ``<file-too-large/>`` over `max_file_size`, not-acceptable for a type
    `allowed` does not list (``image/*`` names a whole type; empty: any)."""
    filename = request.get("filename") or ""
    if not filename or len(filename) > MAX_FILENAME:
        raise SlotError(
            StanzaErrorCondition.BAD_REQUEST, f"a filename of 1 to {MAX_FILENAME} characters"
        )
    if _BAD_NAME.search(filename) or filename.strip(". ") == "":
        raise SlotError(StanzaErrorCondition.BAD_REQUEST, "the filename is not acceptable")
    size_text = request.get("size") or ""
    if not size_text.isdigit() or len(size_text) > 19:
        raise SlotError(StanzaErrorCondition.BAD_REQUEST, "size must be a number of bytes")
    size = int(size_text)
    if size <= 0:
        raise SlotError(StanzaErrorCondition.BAD_REQUEST, "an empty file needs no upload")
    if size > max_file_size:
        too_large = Element("file-too-large", UPLOAD)
        too_large.sub("max-file-size", text=str(max_file_size))
        raise SlotError(
            StanzaErrorCondition.NOT_ACCEPTABLE,
            f"the file is larger than {max_file_size} bytes",
            too_large,
            "modify",
        )
    content_type = (request.get("content-type") or DEFAULT_TYPE).strip()
    if len(content_type) > MAX_CONTENT_TYPE or not MEDIA_TYPE.fullmatch(content_type):
        raise SlotError(StanzaErrorCondition.BAD_REQUEST, "the content-type is not a media type")
    if allowed and not type_allowed(media_type(content_type), allowed):
        raise SlotError(
            StanzaErrorCondition.NOT_ACCEPTABLE,
            f"files of type {media_type(content_type)} are not accepted",
            error_type="modify",
        )
    return SlotRequest(filename, size, content_type)


def type_allowed(kind: str, allowed: tuple[str, ...]) -> bool:
    main = kind.split("/", 1)[0]
    return any(a == kind or a == f"{main}/*" for a in allowed)


def retry_error(condition: StanzaErrorCondition, text: str, stamp: datetime | None) -> SlotError:
    """resource-constraint (type wait) with XEP-0363's ``<retry stamp/>`` when known."""
    app = None
    if stamp is not None:
        app = Element("retry", UPLOAD, {"stamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return SlotError(condition, text, app, "wait")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class SlotSigner:
    """Signs and checks PUT URLs with the installation secret `key`."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def signature(
        self, token: str, filename: str, size: int, content_type: str, put_before: int
    ) -> str:
        message = "\n".join((token, filename, str(size), media_type(content_type), str(put_before)))
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def check(
        self,
        signature: str,
        token: str,
        filename: str,
        size: int,
        content_type: str,
        put_before: int,
    ) -> bool:
        expected = self.signature(token, filename, size, content_type, put_before)
        return hmac.compare_digest(expected, signature)


def get_url(base: str, token: str, filename: str) -> str:
    return f"{base.rstrip('/')}{PATH_PREFIX}{token}/{quote(filename, safe='')}"


def put_url(base: str, token: str, filename: str, put_before: int, signature: str) -> str:
    return f"{get_url(base, token, filename)}?e={put_before}&s={signature}"


def slot_element(put: str, get: str) -> Element:
    """XEP-0363 §4's ``<slot><put url/><get url/></slot>``."""
    slot = Element("slot", UPLOAD)
    slot.sub("put", attrs={"url": put})
    slot.sub("get", attrs={"url": get})
    return slot
