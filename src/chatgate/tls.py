"""TLS set-up: the server's TLS context, and a self-signed certificate when none is configured.

`server_tls` builds what the listeners use: an OpenSSL context (pyOpenSSL) with
the configured versions, client-certificate policy and trust store, wrapped in
`ServerTls` with the `tls-server-end-point` data of our certificate.  Why
pyOpenSSL and not `ssl`: see `xmpp/transports/openssl_tls.py` and docs/tls.md.
`server_context` (the standard library's `ssl.SSLContext`) stays for benchmarks
and tools that compare the two.

A generated certificate is ECDSA P-256 by default: its handshakes cost a
fraction of RSA-2048's, which shows directly in logins per second with STARTTLS.

TLS 1.2 offers only AEAD suites with ECDHE (`TLS12_CIPHERS`), what Mozilla's
"intermediate" profile keeps; TLS 1.3 suites are AEAD by definition.  Sessions
resume through tickets only: the server keeps no session cache (see
`build_server_tls`).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from chatgate.config import Config, TlsConfig
from chatgate.vocabulary.channel_binding import TLS_SERVER_END_POINT, tls_server_end_point
from chatgate.vocabulary.errors import ConfigError
from chatgate.xmpp.transports.openssl_tls import ServerTls

if TYPE_CHECKING:
    # pyOpenSSL names the "no overlap" answer's type only privately.
    from OpenSSL.SSL import _NoOverlappingProtocols as _NoOverlap

log = logging.getLogger(__name__)

#: TLS 1.2 suites: forward secrecy (ECDHE) and AEAD (AES-GCM, ChaCha20-Poly1305) only,
#: for ECDSA and RSA certificates.  No CBC: its MAC-then-encrypt has a history of
#: padding-oracle attacks (Lucky Thirteen, POODLE-style variants), and every client
#: that speaks TLS 1.2 has AES-GCM.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


def certificate_paths(config: Config) -> tuple[Path, Path]:
    """The configured certificate and key, or where the generated pair lives."""
    if config.tls.certificate is not None:
        if config.tls.private_key is None:
            raise ConfigError("tls.private_key: required when tls.certificate is set")
        return config.path(config.tls.certificate), config.path(config.tls.private_key)
    certs = config.data_dir / "certs"
    domain = config.server.domain
    return certs / f"{domain}.crt", certs / f"{domain}.key"


def ensure_certificate(config: Config) -> tuple[Path, Path]:
    """Return the certificate and key paths, generating a self-signed pair if none exists.

    A generated certificate that does not name every served domain (a virtual host
    was added) is replaced by one that does, and that is logged as a WARNING naming
    the old and the new SHA-256 fingerprints: clients that were told to trust the
    old certificate (pinned it, or imported it) stop matching and must be given
    the new one.  `chatgate check` says so before the start that does it
    (`names_missing`).
    """
    cert_path, key_path = certificate_paths(config)
    if config.tls.certificate is not None:
        for what, path in (("tls.certificate", cert_path), ("tls.private_key", key_path)):
            if not path.is_file():
                raise ConfigError(f"{what}: {path} does not exist")
        return cert_path, key_path
    domains = config.served_domains
    replaced: tuple[str, list[str]] | None = None
    fresh = cert_path.exists() and key_path.exists()
    if fresh:
        missing = names_missing(cert_path, domains)
        if missing:
            replaced = (_fingerprint(cert_path), missing)
            fresh = False
    if not fresh:
        generate_self_signed(
            domains[0], cert_path, key_path, key_type=config.tls.key_type, more_names=domains[1:]
        )
        log.info("generated a self-signed certificate for %s in %s", ", ".join(domains), cert_path)
    if replaced is not None:
        old, missing = replaced
        log.warning(
            "the generated certificate %s did not name %s: REPLACED (old sha256 %s, new sha256"
            " %s); clients that trusted the old certificate must be given the new one",
            cert_path,
            ", ".join(missing),
            old,
            _fingerprint(cert_path),
        )
    return cert_path, key_path


def names_missing(cert_path: Path, domains: tuple[str, ...]) -> list[str]:
    """The served domains a generated certificate does not name exactly (clients refuse
    a wildcard right above a top-level label, such as *.localhost); every domain when
    the file is not a certificate with names."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return list(domains)
    names = set(sans.get_values_for_type(x509.DNSName))
    return [d for d in domains if d not in names]


def _fingerprint(cert_path: Path) -> str:
    """The certificate's SHA-256 fingerprint, colon-separated hex ("?" if unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return "?"
    return cert.fingerprint(hashes.SHA256()).hex(":")


def generate_self_signed(
    domain: str,
    cert_path: Path,
    key_path: Path,
    *,
    key_type: str = "ec",
    days: int = 825,
    more_names: tuple[str, ...] = (),
) -> None:
    if key_type == "rsa":
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = rsa.generate_private_key(65537, 2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(domain), x509.DNSName(f"*.{domain}")]
    alt_names += [x509.DNSName(name) for name in more_names]
    if domain == "localhost":
        alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context; client certificates are not requested (yet)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls: cannot load {cert_path} / {key_path}: {exc}") from None
    ctx.set_alpn_protocols(["xmpp-client"])  # XEP-0368 direct TLS
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


def describe_certificate(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = ", ".join(str(n.value) for n in sans)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":")
    return f"{names} (expires {cert.not_valid_after_utc:%Y-%m-%d}, sha256 {fingerprint[:23]}...)"


_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


def server_tls(config: Config) -> ServerTls:
    """The listeners' TLS: certificate (generated if none), versions, client certificates.

    Raises `ConfigError` for unreadable files, a version range that is empty,
    or a client-certificate policy with nothing to trust.
    """
    cert_path, key_path = ensure_certificate(config)
    return build_server_tls(
        config.tls,
        cert_path,
        key_path,
        trust_files=[config.path(p) for p in config.tls.trust_files],
        trust_dirs=[config.path(p) for p in config.tls.trust_dirs],
    )


def http_tls(config: Config) -> ServerTls:
    """The HTTPS listener's TLS: `[tls]`'s certificate, versions and trust store, with
    `[http] client_certificates` when it is set."""
    options = config.tls
    policy = config.http.client_certificates
    if policy is not None and policy != options.client_certificates:
        options = options.model_copy(update={"client_certificates": policy})
    cert_path, key_path = ensure_certificate(config)
    return build_server_tls(
        options,
        cert_path,
        key_path,
        trust_files=[config.path(p) for p in config.tls.trust_files],
        trust_dirs=[config.path(p) for p in config.tls.trust_dirs],
        alpn=HTTP_ALPN,
    )


#: ALPN of the c2s listeners: XEP-0368 direct TLS names "xmpp-client".
XMPP_ALPN = (b"xmpp-client",)
#: ALPN of the HTTPS listener: aiohttp speaks HTTP/1.1 only, so a browser that
#: offers h2 first must be given http/1.1 (or nothing, which also means HTTP/1.1).
HTTP_ALPN = (b"http/1.1",)


def build_server_tls(
    options: TlsConfig,
    cert_path: Path,
    key_path: Path,
    *,
    trust_files: list[Path] | None = None,
    trust_dirs: list[Path] | None = None,
    alpn: tuple[bytes, ...] = XMPP_ALPN,
) -> ServerTls:
    """`server_tls` for explicit paths (tests and benchmarks use it directly).

    `alpn` lists the protocols we select, in our order of preference, from what
    the client offers; none in common: no protocol is selected and the handshake
    goes on (RFC 7301 §3.2 allows a server to ignore the extension).
    """
    trust_files = list(options.trust_files) if trust_files is None else trust_files
    trust_dirs = list(options.trust_dirs) if trust_dirs is None else trust_dirs
    if float(options.min_version) > float(options.max_version):
        raise ConfigError("tls.min_version is above tls.max_version")
    if (
        options.client_certificates != "disabled"
        and not (trust_files or trust_dirs)
        and not options.accept_self_signed
    ):
        raise ConfigError(
            f"tls.client_certificates = {options.client_certificates!r} needs trust_files, "
            "trust_dirs or accept_self_signed: no client certificate could be trusted"
        )
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(_VERSIONS[options.min_version])
    ctx.set_max_proto_version(_VERSIONS[options.max_version])
    # No compression (CRIME), no renegotiation (RFC 9266 §2 forbids tls-exporter
    # with it; RFC 5929's bindings are ambiguous across it).
    ctx.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
    )
    ctx.set_cipher_list(TLS12_CIPHERS.encode())
    # Resumption through tickets only, which the client keeps.  OpenSSL's server
    # session cache (TLS 1.2 session ids) would hold up to 20,480 sessions for two
    # hours, each with the client's certificate chain as sent (up to 100 KB, some
    # 600 KB once parsed): memory anyone could pin before logging in.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # Resumption with client certificates needs a session id context.
    ctx.set_session_id(b"chatgate-c2s")
    try:
        ctx.use_certificate_chain_file(str(cert_path))
        ctx.use_privatekey_file(str(key_path))
        ctx.check_privatekey()
    except (SSL.Error, OSError) as exc:
        raise ConfigError(f"tls: cannot load {cert_path} / {key_path}: {exc}") from None
    ctx.set_alpn_select_callback(partial(_select_alpn, alpn))
    for path in trust_files:
        try:
            ctx.load_verify_locations(str(path))
            for cert in x509.load_pem_x509_certificates(path.read_bytes()):
                ctx.add_client_ca(cert)
        except (SSL.Error, OSError, ValueError) as exc:
            raise ConfigError(f"tls.trust_files: cannot load {path}: {exc}") from None
    for path in trust_dirs:
        if not path.is_dir():
            raise ConfigError(f"tls.trust_dirs: {path} is not a folder")
        ctx.load_verify_locations(None, str(path))
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    end_point = None
    if TLS_SERVER_END_POINT in options.channel_bindings:
        end_point = tls_server_end_point(leaf.public_bytes(serialization.Encoding.DER))
    return ServerTls(
        ctx,
        end_point_binding=end_point,
        binding_types=options.channel_bindings,
        client_certificates=options.client_certificates,
        accept_self_signed=options.accept_self_signed,
        revoked_fingerprints=options.revoked_fingerprints,
    )


def _select_alpn(
    ours: tuple[bytes, ...], conn: SSL.Connection, offered: list[bytes]
) -> bytes | _NoOverlap:
    for protocol in ours:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS
