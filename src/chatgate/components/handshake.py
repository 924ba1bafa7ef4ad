"""The XEP-0114 §3 handshake: the component proves the shared secret by sending the
lower-case hex SHA-1 of the stream id followed by the secret.

SHA-1 is what the protocol fixes; the secret never crosses the wire, and the stream
id, fresh and random per connection, keeps a recorded handshake from being replayed.
The comparison is constant-time, so the time of a refusal says nothing about how
much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac


def handshake_digest(stream_id: str, secret: str) -> str:
    """What a component that knows `secret` sends on the stream `stream_id`."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


def handshake_matches(stream_id: str, secret: str, offered: str) -> bool:
    """Whether `offered` (the `<handshake/>` text) proves `secret` on `stream_id`.

    Surrounding whitespace is ignored and hex digits may be upper case (some
    libraries send them so); anything else is compared as given, in constant time."""
    candidate = offered.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(candidate, handshake_digest(stream_id, secret).encode())
