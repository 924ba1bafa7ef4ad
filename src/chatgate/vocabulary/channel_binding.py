"""Channel-binding types (RFC 5929, RFC 9266): their names, the keys of
`ConnectionFacts.channel_bindings`, and how the TLS layer computes their data.

The TLS transport fills the bindings in; SASL (`sasl/channel_binding.py`,
SCRAM-*-PLUS) advertises and checks them.  Here, in the vocabulary, so that
neither has to import the other.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

TLS_EXPORTER = "tls-exporter"  # RFC 9266
TLS_UNIQUE = "tls-unique"  # RFC 5929 §3
TLS_SERVER_END_POINT = "tls-server-end-point"  # RFC 5929 §4
#: Every type we implement, strongest first (the order of the XEP-0440 list).
TYPES: tuple[str, ...] = (TLS_EXPORTER, TLS_UNIQUE, TLS_SERVER_END_POINT)


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
