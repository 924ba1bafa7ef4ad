"""One self-signed certificate for `localhost`, shared by every server under test.

ECDSA P-256, as an operator tuning for handshakes per second would choose; the same key on every
server so STARTTLS figures compare the servers, not their certificates.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.accounts import CACHE_DIR, DOMAIN


@dataclass(frozen=True, slots=True)
class CertPaths:
    certificate: Path
    private_key: Path
    combined: Path  # certificate + key in one PEM (ejabberd's certfiles)


def ensure_certificate(directory: Path = CACHE_DIR / "tls") -> CertPaths:
    paths = CertPaths(directory / "cert.pem", directory / "key.pem", directory / "combined.pem")
    if paths.combined.exists():
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    paths.certificate.write_bytes(cert_pem)
    paths.private_key.write_bytes(key_pem)
    paths.private_key.chmod(0o644)  # readable by a server that drops privileges
    paths.combined.write_bytes(cert_pem + key_pem)
    paths.combined.chmod(0o644)
    return paths
