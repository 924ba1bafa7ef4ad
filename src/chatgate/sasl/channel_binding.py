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

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

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

TLS_EXPORTER = "tls-exporter"  # RFC 9266
TLS_UNIQUE = "tls-unique"  # RFC 5929 §3
TLS_SERVER_END_POINT = "tls-server-end-point"  # RFC 5929 §4
#: Every type we implement, strongest first (the order of the XEP-0440 list).
TYPES: tuple[str, ...] = (TLS_EXPORTER, TLS_UNIQUE, TLS_SERVER_END_POINT)

#: XEP-0440: SASL Channel-Binding Type Capability.
SASL_CB_NS = "urn:xmpp:sasl-cb:0"

#: RFC 9266 §2: "Label: The ASCII string "EXPORTER-Channel-Binding" with no
#: terminating NUL.  Context value: Empty context value.  Length: 32 bytes."
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
EXPORTER_LENGTH = 32

_WEAK_HASHES = (hashes.MD5, hashes.SHA1)


def tls_server_end_point(certificate_der: bytes) -> bytes | None:
    """The `tls-server-end-point` binding data for our certificate, or None if undefined.

    RFC 5929 §4.1: "if the certificate's signatureAlgorithm uses a single hash
    function and that hash function is either MD5 or SHA-1, then use SHA-256;
    if the certificate's signatureAlgorithm uses a single hash function and
    that hash function neither MD5 nor SHA-1, then use the hash function
    associated with the certificate's signatureAlgorithm; if the certificate's
    signatureAlgorithm uses no hash functions or uses multiple hash functions,
    then this channel binding type's channel bindings are undefined at this
    time".  So an Ed25519 certificate (no separate hash) has none, and neither has
    one whose signature algorithm cryptography cannot map to a hash (an unknown
    OID, GOST, SM2: `UnsupportedAlgorithm`): we cannot name its hash, so the
    stream simply does not offer this type.
    """
    cert = x509.load_der_x509_certificate(certificate_der)
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, _WEAK_HASHES):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate_der)
    return digest.finalize()


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
