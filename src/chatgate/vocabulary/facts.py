"""What a transport knows about one connection: TLS state, channel bindings, the
client's verified certificate and address, and the virtual host its stream chose.

Transports fill it in; mechanism selection, EXTERNAL and the connection driver
read it.  It lives in the vocabulary, not in `sasl/`, so that transports need
not import SASL.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """What the transport knows about the connection, for mechanism selection and binding."""

    domain: str
    tls_active: bool = False
    tls_version: str | None = None
    #: channel-binding type name (e.g. "tls-server-end-point") -> binding data; exactly
    #: the types this connection advertises (XEP-0440)
    channel_bindings: dict[str, bytes] = field(default_factory=dict)
    #: the client's TLS certificate, only when it passed verification (trust store or
    #: accepted self-signed, not revoked): what EXTERNAL may believe
    peer_certificate_der: bytes | None = None
    remote_address: str | None = None
