"""Channel-binding types: their names, the data of `tls-server-end-point`, XEP-0440 and XEP-0474.

This module owns what is the same for every SCRAM-*-PLUS exchange and every
stream: the type names in the order we prefer them, the RFC 5929 §4.1 hash of
the server certificate, the XEP-0440 stream feature that lists a connection's
types, and the XEP-0474 (SSDP) hash of what a stream advertised.  Pure
functions; the per-connection data (`tls-unique`, `tls-exporter`) is computed by
the TLS layer (`xmpp/transports/openssl_tls.py`) and reaches mechanisms through
`ConnectionFacts.channel_bindings`, whose keys are exactly the types a stream
advertises.

One rule ties the pieces together: a stream advertises `<sasl-channel-binding/>`
exactly when it offers at least one -PLUS mechanism (which selection does only
when the connection has a binding), so the SSDP hash of a SCRAM exchange covers
the channel-binding list exactly when ``plus_offered`` is true.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping

from chatgate.vocabulary.channel_binding import (
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    TLS_UNIQUE,
    TYPES,
    tls_server_end_point,
)
from chatgate.xml.serialize import escape_attr

__all__ = [
    "SASL_CB_NS",
    "TLS_EXPORTER",
    "TLS_SERVER_END_POINT",
    "TLS_UNIQUE",
    "TYPES",
    "feature_xml",
    "ssdp_hash",
    "tls_server_end_point",
]

#: XEP-0440: SASL Channel-Binding Type Capability.
SASL_CB_NS = "urn:xmpp:sasl-cb:0"


def feature_xml(types: Iterable[str]) -> str:
    """The XEP-0440 stream feature listing `types` (empty string when there are none).

    XEP-0440 §2: ``<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>`` with one
    ``<channel-binding type='...'/>`` per supported type.
    """
    items = "".join(f'<channel-binding type="{escape_attr(t)}"/>' for t in types)
    if not items:
        return ""
    return f"<sasl-channel-binding xmlns='{SASL_CB_NS}'>{items}</sasl-channel-binding>"


def advertised_types(bindings: Mapping[str, bytes]) -> tuple[str, ...]:
    """The types of a connection's bindings, in advertisement order."""
    return tuple(t for t in TYPES if t in bindings) + tuple(t for t in bindings if t not in TYPES)


def ssdp_hash(
    hash_name: str, mechanisms: Iterable[str], channel_binding_types: Iterable[str] | None
) -> str:
    """XEP-0474 §4.1 (v0.5): the base64 hash a server puts in the "h" attribute.

    "Sort all server-advertised SASL mechanisms and append them to string S
    joined by delimiter %x1E.  If the server used XEP-0440 to advertise
    channel-bindings, append %x1F to S [and] sort all server-advertised
    channel-binding types and append them to string S joined by delimiter %x1E.
    Hash S using the same hash mechanism as used for the SCRAM mechanism
    currently in use and encode the result using base64."  Sorting is
    "i;octet" (RFC 4790 §9.3): byte order, which for ASCII names is `sorted`.
    `channel_binding_types` is None when the stream did not use XEP-0440.
    """
    text = "\x1e".join(sorted(mechanisms, key=str.encode))
    if channel_binding_types is not None:
        text += "\x1f" + "\x1e".join(sorted(channel_binding_types, key=str.encode))
    digest = hashlib.new(hash_name, text.encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")
