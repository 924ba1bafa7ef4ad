"""Server-side TLS on pyOpenSSL memory BIOs: ciphertext in, plaintext and ciphertext out.

Why not the standard library: Python's `ssl` cannot export keying material
(CPython issue 82133), so it cannot compute the `tls-exporter` channel binding
(RFC 9266), the only one defined for TLS 1.3; nor can it tell whether a TLS 1.2
handshake used the extended master secret (RFC 7627), nor accept a self-signed
client certificate through a verification callback.  OpenSSL can do all three,
and pyOpenSSL exposes them.  docs/tls.md has the measured cost of this choice.

This module is a core in the sans-I/O sense: `ServerTlsConnection` takes the
bytes the socket delivered and returns the plaintext for the XML parser and the
bytes to put on the wire.  It never touches a socket, never awaits and never
reads the clock (the handshake time limit belongs to the adapter, `tcp.py`).
`ServerTls` holds what every connection of a server shares: the OpenSSL
context, the client-certificate policy and the `tls-server-end-point` data
(which depends on our certificate only).

Per connection, after the handshake (`details()`):

* ``tls-exporter``: TLS 1.3, or TLS 1.2 with the extended master secret;
  EKM("EXPORTER-Channel-Binding", empty context, 32 bytes) (RFC 9266 §2);
* ``tls-unique``: TLS 1.2 with the extended master secret only: "the first TLS
  Finished message sent in the most recent handshake" (RFC 5929 §3.1), i.e. the
  client's in a full handshake and ours in a resumed one.  Without EMS the
  triple-handshake attack makes it unsafe (RFC 7627 §1), and RFC 8446 §C.5
  leaves it undefined for TLS 1.3;
* ``tls-server-end-point``: whenever the certificate's signature names one hash.

Renegotiation is disabled (RFC 9266 §2: with renegotiation tls-exporter "is not
defined and MUST NOT be supported").

Client certificates: trust is decided on every connection, when its handshake
completes, by verifying the certificate the connection presents against the
trust store (`ServerTls.judge`).  It is never inferred from the absence of a
complaint: a resumed session (TLS 1.2 ticket or session id, TLS 1.3 ticket)
brings back its peer certificate *without* OpenSSL calling the verification
callback, so "the callback recorded no problem" says nothing about it.  A full
handshake must satisfy both the callback and that check; a resumed one, the
check, under the trust store, revocation list and clock of now (a certificate
that expired or was revoked since the first handshake is no longer trusted).
A session ticket carries the client's certificate but not the intermediate CA
certificates it sent, so a resumed connection is verified with the leaf alone:
intermediates must be in the trust store for such a client to get EXTERNAL
after resumption.

COMPAT: pyOpenSSL has no public call for "was the extended master secret used"
or "was this session resumed"; `_lib` (OpenSSL through cffi, private to
pyOpenSSL) answers both.  If a future pyOpenSSL drops them, TLS 1.2 connections
simply get neither tls-exporter nor tls-unique.  Nor has it one to give a trust
store the TLS client purpose (`X509_STORE_set_purpose`), which the check of a
resumed connection needs to refuse what the handshake's check would (a
certificate for servers only, say); without it, session resumption is turned
off where client certificates are asked for, and every connection gets a full
handshake and the callback.

Hot path: once the handshake is done, records are read and written with
`SSL_read`/`SSL_write`/`BIO_read` through the same `_lib`, into one reusable
buffer, instead of pyOpenSSL's wrappers, which allocate a buffer per call and
signal "no more data" with an exception; that halves the cost per stanza
(bench/tls_backends.py).  The buffer is shared by all connections of the
process, which is safe because every call copies out of it before returning
and all connections live on the one event-loop thread.  Without `_lib` the
public API does the same work, slower.

pyproject.toml caps pyOpenSSL at the major versions this was tested with, and
the fallback is tested too: the environment variable `CHATGATE_TLS_NO_PRIVATE_API`
(a test switch, set to anything but "" or "0") makes the import behave as if
`OpenSSL._util` had none of the handles above, in the whole process.  The
server logs a warning at start whenever the fallback is in use.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from OpenSSL import SSL, crypto

from chatgate.vocabulary.channel_binding import (
    EXPORTER_LABEL,
    EXPORTER_LENGTH,
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    TLS_UNIQUE,
)

#: Test switch: run on pyOpenSSL's public API only (see the module docstring).
NO_PRIVATE_API_ENV = "CHATGATE_TLS_NO_PRIVATE_API"
_REFUSED = os.environ.get(NO_PRIVATE_API_ENV, "") not in ("", "0")

try:  # COMPAT: see the module docstring
    if _REFUSED:
        raise ImportError(f"{NO_PRIVATE_API_ENV} is set")
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib

    _get_extms_support = _lib.SSL_get_extms_support
    _session_reused = _lib.SSL_session_reused
    _SSL_read = _lib.SSL_read
    _SSL_write = _lib.SSL_write
    _SSL_get_error = _lib.SSL_get_error
    _BIO_read = _lib.BIO_read
    _WANT_READ = _lib.SSL_ERROR_WANT_READ
    _ZERO_RETURN = _lib.SSL_ERROR_ZERO_RETURN
    _FAST = True
except (ImportError, AttributeError):  # pragma: no cover - depends on pyOpenSSL internals
    _get_extms_support = None
    _session_reused = None
    _FAST = False

try:  # COMPAT: see the module docstring
    if _REFUSED:
        raise ImportError(f"{NO_PRIVATE_API_ENV} is set")
    from OpenSSL._util import lib as _lib_purpose

    _store_set_purpose = _lib_purpose.X509_STORE_set_purpose
    _PURPOSE_SSL_CLIENT = _lib_purpose.X509_PURPOSE_SSL_CLIENT
except (ImportError, AttributeError):  # pragma: no cover - depends on pyOpenSSL internals
    _store_set_purpose = None

__all__ = [
    "NO_PRIVATE_API_ENV",
    "ClientCertPolicy",
    "ServerTls",
    "ServerTlsConnection",
    "TlsDetails",
    "TlsError",
    "private_api_in_use",
]

log = logging.getLogger(__name__)

ClientCertPolicy = Literal["disabled", "wanted", "needed"]

#: X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "the passed certificate is self-signed".
_SELF_SIGNED_LEAF = 18
#: X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY for the leaf: what a resumed session of a
#: certificate from an intermediate CA that is not in the trust store gets.
_NO_ISSUER_PROBLEM = "verification error 20 at depth 0"
_NO_ISSUER_HINT = (
    " (resumed session: a session ticket does not keep the intermediate CA certificates"
    " the client sent; list them in tls.trust_files)"
)
#: Largest plaintext of one TLS record (RFC 8446 §5.1): one SSL_read never returns more.
_RECORD = 16384
#: Ciphertext read from the memory BIO per call.
_BIO_CHUNK = 65536
#: The shared read buffer of the fast path (see the module docstring).
_BUF = _ffi.new("char[]", _BIO_CHUNK) if _FAST else None


def private_api_in_use() -> bool:
    """True when every private handle is there: the fast record path, "extended master
    secret?" and "resumed?", and the trust store's client purpose."""
    return _FAST and _store_set_purpose is not None


class TlsError(Exception):
    """The peer broke TLS (bad handshake, bad record, refused certificate).

    `outgoing` is an alert to flush before closing, possibly empty.
    """

    def __init__(self, text: str, outgoing: bytes = b"") -> None:
        super().__init__(text)
        self.outgoing = outgoing


@dataclass(frozen=True, slots=True)
class TlsDetails:
    """What the transport tells the session about an established TLS connection."""

    version: str  # "TLSv1.3"
    channel_bindings: dict[str, bytes]
    #: the client certificate when it verified on this connection; None when absent or untrusted
    peer_certificate_der: bytes | None
    #: why a presented certificate was not trusted ("" when trusted or absent)
    peer_certificate_problem: str = ""


@dataclass(slots=True)
class _PeerCheck:
    """Per-connection notes of the verification callback (the connection's app data).

    Only a full handshake calls the callback: no problem noted here never means
    "trusted" (see the module docstring).
    """

    problems: list[str] = field(default_factory=list)


class ServerTls:
    """What all server-side TLS connections of a listener share.

    `context` is a configured `SSL.Context` (certificate, key, versions); this
    class adds the client-certificate verification.  `end_point_binding` is the
    `tls-server-end-point` data of our certificate (None: undefined for it).
    `binding_types` is the set of types the operator enabled.
    """

    def __init__(
        self,
        context: SSL.Context,
        *,
        end_point_binding: bytes | None,
        binding_types: Collection[str],
        client_certificates: ClientCertPolicy = "disabled",
        accept_self_signed: bool = False,
        revoked_fingerprints: Collection[str] = (),
    ) -> None:
        self.context = context
        self.end_point_binding = end_point_binding
        self.binding_types = frozenset(binding_types)
        self.client_certificates = client_certificates
        self.accept_self_signed = accept_self_signed
        self.revoked = frozenset(revoked_fingerprints)
        self._store: crypto.X509Store | None = None
        if not private_api_in_use():
            log.warning(
                "pyOpenSSL's private API is %s: TLS runs on its public API (slower);"
                " TLS 1.2 gets neither tls-exporter nor tls-unique; session resumption"
                " is off where client certificates are asked for",
                f"turned off ({NO_PRIVATE_API_ENV})" if _REFUSED else "missing",
            )
        if client_certificates == "disabled":
            context.set_verify(SSL.VERIFY_NONE)
        else:
            mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
            if client_certificates == "needed":
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            context.set_verify(mode, self._verify)
            self._store = context.get_cert_store()
            if self._store is None or not _client_purpose(self._store):  # pragma: no cover
                # COMPAT: no per-connection check equal to the handshake's; no resumption.
                context.set_options(SSL.OP_NO_TICKET)
                context.set_session_cache_mode(SSL.SESS_CACHE_OFF)

    def connection(self) -> ServerTlsConnection:
        return ServerTlsConnection(self)

    def judge(self, conn: SSL.Connection, check: _PeerCheck) -> tuple[bytes | None, str]:
        """The client certificate of a completed handshake, resumed or not, if trusted.

        Returns (its DER, "") when trusted, (None, why) when one was presented
        but is not trusted, (None, "") when there is none.  Trust is a positive
        result: the callback's notes (full handshakes only) must be clean *and*
        the certificate must verify now, against the trust store.
        """
        if self._store is None:  # "disabled": no certificate was asked for
            return None, ""
        peer = conn.get_peer_certificate()
        if peer is None:
            return None, ""
        problems = check.problems or self._verify_now(peer, conn.get_peer_cert_chain() or [])
        if problems:
            problem = "; ".join(problems)
            if problem == _NO_ISSUER_PROBLEM and _resumed(conn):
                problem += _NO_ISSUER_HINT
            return None, problem
        return crypto.dump_certificate(crypto.FILETYPE_ASN1, peer), ""

    def _verify_now(self, leaf: crypto.X509, sent: list[crypto.X509]) -> list[str]:
        """Verify `leaf` with the intermediates the client sent (none after a ticket
        resumption) as the handshake's callback would; return the problems."""
        assert self._store is not None
        try:
            chain = crypto.X509StoreContext(self._store, leaf, sent).get_verified_chain()
        except crypto.X509StoreContextError as exc:
            errno, depth = exc.errors[0], exc.errors[1]
            if not (errno == _SELF_SIGNED_LEAF and depth == 0 and self.accept_self_signed):
                return [f"verification error {errno} at depth {depth}"]
            # Accepted self-signed: the rest of the checks (validity, purpose)
            # still apply, with the certificate as its own trust anchor.
            alone = crypto.X509Store()
            alone.add_cert(leaf)
            alone.set_flags(crypto.X509StoreFlags.CHECK_SS_SIGNATURE)
            _client_purpose(alone)
            try:
                chain = crypto.X509StoreContext(alone, leaf).get_verified_chain()
            except crypto.X509StoreContextError as again:
                return [f"verification error {again.errors[0]} at depth {again.errors[1]}"]
        if self.revoked:
            for depth, cert in enumerate(chain):
                if _fingerprint(cert) in self.revoked:
                    return [f"revoked certificate at depth {depth}"]
        return []

    def _verify(
        self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        """OpenSSL's verification callback, once per certificate of the client's chain.

        `needed`: the verdict decides the handshake.  `wanted`: the handshake
        always goes on and the verdict only decides whether the certificate
        reaches EXTERNAL (XEP-0178: a certificate we cannot use means EXTERNAL
        is not offered; the client may still log in another way).
        """
        check: _PeerCheck = conn.get_app_data()
        if not ok and errno == _SELF_SIGNED_LEAF and depth == 0 and self.accept_self_signed:
            ok = 1
        if not ok:
            check.problems.append(f"verification error {errno} at depth {depth}")
        if self.revoked and _fingerprint(cert) in self.revoked:
            ok = 0
            check.problems.append(f"revoked certificate at depth {depth}")
        return bool(ok) or self.client_certificates != "needed"


class ServerTlsConnection:
    """One server-side TLS connection; see the module docstring.

    `receive()` and `send()` return the ciphertext to write; `receive()`
    raises `TlsError` when the peer breaks TLS.  Plaintext sent before the
    handshake is complete is held and encrypted right after it.
    """

    __slots__ = (
        "_check",
        "_conn",
        "_fast",
        "_held",
        "_out_bio",
        "_peer_der",
        "_peer_problem",
        "_server",
        "_ssl",
        "closed",
        "handshake_complete",
    )

    def __init__(self, server: ServerTls) -> None:
        self._server = server
        self._conn = conn = SSL.Connection(server.context, None)
        self._check = _PeerCheck()
        conn.set_app_data(self._check)
        conn.set_accept_state()
        self._held: list[bytes] = []
        self._fast = _FAST
        if _FAST:
            self._ssl = conn._ssl  # COMPAT: private handles for the fast path
            self._out_bio = conn._from_ssl
        self.handshake_complete = False
        #: the peer sent close_notify
        self.closed = False
        self._peer_der: bytes | None = None
        self._peer_problem = ""

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed ciphertext; return (plaintext, ciphertext to send)."""
        conn = self._conn
        conn.bio_write(data)
        if not self.handshake_complete:
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                return b"", self._outgoing()
            except SSL.Error as exc:
                raise TlsError(
                    f"TLS handshake failed: {_describe(exc)}", self._outgoing()
                ) from None
            self._judge_peer()
            self.handshake_complete = True
            if self._held:
                held, self._held = self._held, []
                for chunk in held:
                    conn.sendall(chunk)
        if self._fast:
            return self._read_fast(), self._outgoing()
        chunks: list[bytes] = []
        try:
            while True:
                chunks.append(conn.recv(_RECORD))
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            self.closed = True
        except SSL.Error as exc:
            raise TlsError(f"TLS error: {_describe(exc)}", self._outgoing()) from None
        plaintext = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return plaintext, self._outgoing()

    def _judge_peer(self) -> None:
        """Decide, once per connection, whether its client certificate is trusted.

        With `needed`, a connection without a trusted certificate ends here: a
        full handshake has already failed in the callback, but a resumed one
        reaches this point with whatever its session carried.
        """
        server = self._server
        der, problem = server.judge(self._conn, self._check)
        if der is None and server.client_certificates == "needed":
            with contextlib.suppress(SSL.Error):
                self._conn.shutdown()
            raise TlsError(
                f"TLS handshake failed: client certificate not trusted: {problem or 'none'}",
                self._outgoing(),
            )
        self._peer_der, self._peer_problem = der, problem

    def send(self, data: bytes) -> bytes:
        """Encrypt `data`; return the ciphertext (empty while the handshake runs)."""
        if not self.handshake_complete:
            self._held.append(data)
            return b""
        if self.closed:
            return b""  # the peer ended TLS (close_notify): nothing more can go out
        try:
            if self._fast and data:
                # cffi passes a bytes object to `const void *` without copying it.
                written = _SSL_write(self._ssl, data, len(data))
                if written != len(data):
                    # A partial write (SSL_MODE_ENABLE_PARTIAL_WRITE) or an error:
                    # finish it the slow way, which raises the precise SSL.Error.
                    self._conn.sendall(data[max(written, 0) :])
            else:
                self._conn.sendall(data)
        except SSL.Error:
            # "protocol is shutdown": the peer closed TLS between its last read and
            # this write (a client leaving under load).  What was for it is dropped,
            # as for a closed socket; the connection's end is on its way.
            self.closed = True
            return b""
        return self._outgoing()

    def _read_fast(self) -> bytes:
        ssl_ = self._ssl
        buf = _BUF
        chunks: list[bytes] = []
        while True:
            n = _SSL_read(ssl_, buf, _RECORD)
            if n > 0:
                chunks.append(_ffi.buffer(buf, n)[:])
                continue
            error = _SSL_get_error(ssl_, n)
            if error == _WANT_READ:
                break
            if error == _ZERO_RETURN:
                self.closed = True
                break
            try:
                self._conn.recv(_RECORD)  # raises the precise SSL.Error
            except SSL.Error as exc:
                raise TlsError(f"TLS error: {_describe(exc)}", self._outgoing()) from None
            raise TlsError("TLS error", self._outgoing())
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def close(self) -> bytes:
        """Start the TLS close (close_notify); return the bytes to send."""
        if self.handshake_complete:
            with contextlib.suppress(SSL.Error):
                self._conn.shutdown()
        return self._outgoing()

    def details(self) -> TlsDetails:
        """Version, channel bindings and verified client certificate; after the handshake."""
        if not self.handshake_complete:
            raise ValueError("details() before the handshake completed")
        conn = self._conn
        version = conn.get_protocol_version_name()
        server = self._server
        enabled = server.binding_types
        ems = _ems(conn)
        bindings: dict[str, bytes] = {}
        if TLS_EXPORTER in enabled and (version == "TLSv1.3" or ems):
            # RFC 9266 §2: "Context value: Empty context value."  (In TLS 1.3 an
            # empty and an absent context are the same; in 1.2 they are not.)
            bindings[TLS_EXPORTER] = conn.export_keying_material(
                EXPORTER_LABEL, EXPORTER_LENGTH, b""
            )
        if TLS_UNIQUE in enabled and version == "TLSv1.2" and ems:
            unique = _tls_unique(conn)
            if unique:
                bindings[TLS_UNIQUE] = unique
        if TLS_SERVER_END_POINT in enabled and server.end_point_binding is not None:
            bindings[TLS_SERVER_END_POINT] = server.end_point_binding
        return TlsDetails(version, bindings, self._peer_der, self._peer_problem)

    def _outgoing(self) -> bytes:
        if self._fast:
            bio, buf = self._out_bio, _BUF
            n = _BIO_read(bio, buf, _BIO_CHUNK)
            if n <= 0:
                return b""
            out: bytes = _ffi.buffer(buf, n)[:]
            if n < _BIO_CHUNK:
                return out
            chunks = [out]
            while (n := _BIO_read(bio, buf, _BIO_CHUNK)) > 0:
                chunks.append(_ffi.buffer(buf, n)[:])
            return b"".join(chunks)
        conn = self._conn
        try:
            out = conn.bio_read(_BIO_CHUNK)
        except SSL.WantReadError:
            return b""
        if len(out) < _BIO_CHUNK:
            return out
        chunks = [out]
        try:
            while True:
                chunks.append(conn.bio_read(_BIO_CHUNK))
        except SSL.WantReadError:
            pass
        return b"".join(chunks)


def _client_purpose(store: crypto.X509Store) -> bool:
    """Verify with `store` for the TLS client purpose, as the handshake does (EKU
    clientAuth when the certificate lists key usages); False when impossible."""
    if _store_set_purpose is None:  # pragma: no cover - depends on pyOpenSSL internals
        return False
    return bool(
        _store_set_purpose(store._store, _PURPOSE_SSL_CLIENT) == 1
    )  # COMPAT: private handle


def _fingerprint(cert: crypto.X509) -> str:
    """SHA-256 fingerprint as `revoked_fingerprints` holds it (hex, no colons)."""
    return cert.digest("sha256").decode("ascii").replace(":", "").lower()


def _ems(conn: SSL.Connection) -> bool:
    """True when the TLS 1.2 handshake used the extended master secret (RFC 7627)."""
    if _get_extms_support is None:  # pragma: no cover
        return False
    return bool(_get_extms_support(conn._ssl) == 1)  # COMPAT: private handle


def _resumed(conn: SSL.Connection) -> bool | None:
    """Whether the handshake resumed a session; None when that cannot be told."""
    if _session_reused is None:  # pragma: no cover
        return None
    return bool(_session_reused(conn._ssl) == 1)  # COMPAT: private handle


def _tls_unique(conn: SSL.Connection) -> bytes | None:
    """RFC 5929 §3.1: the first Finished of the latest handshake (ours if it resumed)."""
    resumed = _resumed(conn)
    if resumed is None:  # pragma: no cover
        return None
    return conn.get_finished() if resumed else conn.get_peer_finished()


def _describe(exc: SSL.Error) -> str:
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else ():
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return ", ".join(parts) or exc.__class__.__name__
