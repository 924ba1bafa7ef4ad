"""The setup wizard's checks: does a certificate load, can a database be reached.

Each check returns a `Check` (ok, and a sentence for the operator) and never
raises: a wrong path, a key that does not match, a refused connection, a
missing database driver are all answers, worded without secrets (a URL's
password is never repeated).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import create_async_engine

from chatgate.administration.configuration import safe_url as redacted_url

#: seconds a connection test may take
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str


def check_certificate(cert: Path, key: Path, domain: str) -> Check:
    """Whether `cert` (PEM chain) and `key` (PEM, unencrypted) load together, and
    whether the certificate names `domain`."""
    for what, path in (("certificate", cert), ("private key", key)):
        if not path.is_file():
            return Check(False, f"The {what} {path} does not exist or is not a file.")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        return Check(False, f"The certificate and key do not load together: {exc.reason or exc}.")
    except OSError as exc:
        return Check(False, f"Cannot read the files: {exc.strerror or exc}.")
    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except (ValueError, x509.ExtensionNotFound):
        dns = []
    covered = domain in dns or any(
        n.startswith("*.") and domain.endswith(n[1:]) and domain.count(".") == n.count(".")
        for n in dns
    )
    expires = leaf.not_valid_after_utc.strftime("%Y-%m-%d")
    if not covered:
        return Check(
            True,
            f"The certificate and key load (expires {expires}), but the certificate does not"
            f" name {domain} ({', '.join(dns) or 'no DNS names'}): clients will refuse it.",
        )
    return Check(True, f"The certificate and key load; it names {domain} and expires {expires}.")


def postgres_url(url: str) -> str:
    """A PostgreSQL URL with the asyncio driver chatgate uses (`postgresql+asyncpg`)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def safe_url(url: str) -> str:
    """`url` with its password hidden, for messages and logs (what the operator
    typed is not repeated at all when it is not a URL)."""
    try:
        make_url(url)
    except ArgumentError:
        return "(not a URL)"
    return redacted_url(url)


async def test_database(url: str, timeout: float = CONNECT_TIMEOUT) -> Check:
    """Connect to `url` and run `SELECT 1`, within `timeout` seconds."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return Check(False, "This is not a database URL (postgresql://user:password@host/name).")
    if not parsed.drivername.startswith(("postgresql", "sqlite")):
        return Check(
            False, f"chatgate stores its data in PostgreSQL or SQLite, not {parsed.drivername}."
        )
    try:
        engine = create_async_engine(url, pool_pre_ping=False)
    except NoSuchModuleError:
        return Check(False, f"The database driver for {parsed.drivername} is not available.")
    except ModuleNotFoundError as exc:
        return Check(
            False,
            f"The database driver is not installed on this server ({exc.name}): install it"
            " (pip install asyncpg) and test again.",
        )
    except ArgumentError as exc:
        return Check(False, f"This URL cannot be used: {exc}.")
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return Check(False, f"No answer from {safe_url(url)} within {timeout:.0f} seconds.")
    except ModuleNotFoundError as exc:
        return Check(
            False,
            f"The database driver is not installed on this server ({exc.name}): install it"
            " (pip install asyncpg) and test again.",
        )
    except Exception as exc:  # every driver has its own errors: report, never raise
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        return Check(False, f"Connecting to {safe_url(url)} failed: {reason}")
    finally:
        await engine.dispose()
    return Check(True, f"Connected to {safe_url(url)}.")
