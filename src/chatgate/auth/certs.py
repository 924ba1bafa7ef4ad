"""Client-certificate identities (XEP-0178): which JIDs a certificate names, and its fingerprint.

This module owns reading identities out of a DER certificate: the
id-on-xmppAddr otherNames of subjectAltName (RFC 6120 §13.7.1.4, OID
1.3.6.1.5.5.7.8.5, a UTF8String), and the fallbacks an operator may enable
(rfc822Name / emailAddress, subject CN).  It decides nothing about trust: the
TLS layer verifies the chain, and only a verified certificate ever reaches
`ConnectionFacts.peer_certificate_der`.  Pure functions; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from chatgate.jid import JID, InvalidJID

__all__ = [
    "IDENTITY_SOURCES",
    "ID_ON_XMPPADDR",
    "certificate_jids",
    "fingerprint",
    "xmpp_addrs",
]

#: RFC 6120 §13.7.1.4: id-on-xmppAddr OBJECT IDENTIFIER ::= { id-on 5 }, id-on = id-pkix 8.
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
IDENTITY_SOURCES = ("xmpp-addr", "email", "cn")

_UTF8_STRING = 0x0C


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, lowercase hex without colons."""
    return hashlib.sha256(der).hexdigest()


def _der_utf8_string(data: bytes) -> str:
    """Decode one DER UTF8String (tag 12); raises ValueError for anything else.

    RFC 6120 §13.7.1.4: ``XmppAddr ::= UTF8String``.  cryptography hands an
    otherName's value over as the DER encoding of that inner value.
    """
    if len(data) < 2 or data[0] != _UTF8_STRING:
        raise ValueError("not a UTF8String")
    length = data[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset = 2 + count
    if offset + length != len(data):
        raise ValueError("DER length does not match")
    return data[offset:].decode("utf-8")


def xmpp_addrs(cert: x509.Certificate) -> list[str]:
    """The id-on-xmppAddr values in subjectAltName, as written (malformed ones skipped)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    found = []
    for name in san.get_values_for_type(x509.OtherName):
        if name.type_id != ID_ON_XMPPADDR:
            continue
        try:
            found.append(_der_utf8_string(name.value))
        except (ValueError, UnicodeDecodeError):
            continue
    return found


def _emails(cert: x509.Certificate) -> list[str]:
    values: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        values.extend(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    values.extend(
        str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    )
    return values


def _common_names(cert: x509.Certificate) -> list[str]:
    return [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _bare_jids(values: Iterable[str], domain: str) -> list[str]:
    """Bare JIDs of `domain` with a localpart, prepared (RFC 7622), in order, once each."""
    jids: list[str] = []
    try:
        domain = JID.parse(domain).domain
    except InvalidJID:
        return jids
    for value in values:
        try:
            jid = JID.parse(value)
        except InvalidJID:
            continue
        if not jid.local or jid.domain != domain:
            continue
        bare = str(jid.bare)
        if bare not in jids:
            jids.append(bare)
    return jids


def certificate_jids(der: bytes, domain: str, sources: Sequence[str] = ("xmpp-addr",)) -> list[str]:
    """The bare JIDs on `domain` that a certificate names, from the first source that has any.

    XEP-0178 §3 (client): a JID in a certificate is an id-on-xmppAddr; "If the
    certificate does not contain a valid XMPP address ..., the server MAY
    attempt to determine if there is a registered account associated with the
    user, for example by ... the Common Name in the certificate".  Sources are
    tried in the configured order and the first one naming any JID of this
    domain wins, so a certificate with an xmppAddr is never read by its CN when
    `xmpp-addr` comes first.  JIDs of other domains are ignored (we can only
    authenticate our own users).  Raises ValueError for an unknown source or a
    certificate that does not parse.
    """
    cert = x509.load_der_x509_certificate(der)
    readers = {"xmpp-addr": xmpp_addrs, "email": _emails, "cn": _common_names}
    for source in sources:
        reader = readers.get(source)
        if reader is None:
            raise ValueError(f"unknown identity source {source!r}")
        jids = _bare_jids(reader(cert), domain)
        if jids:
            return jids
    return []
