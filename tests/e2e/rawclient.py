"""A minimal blocking XMPP client for TLS tests: STARTTLS or direct TLS, SCRAM-*-PLUS, EXTERNAL.

It exists because no packaged client binds SCRAM to `tls-exporter` (slixmpp
and Debian's nbxmpp know `tls-unique` only, libstrophe 0.12 and go-sendxmpp no
-PLUS at all).  Nothing here comes from the server's code: TLS is the standard
library (`ssl`) or pyOpenSSL, the channel-binding data is what *they* compute
(`SSLObject.get_channel_binding`, scramp's own `tls-server-end-point` hash of
the certificate it received, pyOpenSSL's `export_keying_material`), and SCRAM is
scramp.  Responses are matched with regular expressions: enough for the few
elements a login needs.
"""

from __future__ import annotations

import base64
import contextlib
import re
import select
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import scramp.core
from OpenSSL import SSL
from scramp import ScramClient

from tests.e2e.conftest import RunningServer

HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


class LoginFailed(Exception):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


@dataclass
class Features:
    text: str
    mechanisms: list[str] = field(default_factory=list)
    channel_bindings: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Features:
        mechs = re.findall(r"<mechanism>([^<]+)</mechanism>", text)
        cbs = re.findall(r"<channel-binding type=[\"']([^\"']+)[\"']", text)
        return cls(text, mechs, cbs)


class RawClient:
    """One connection.  `tls` picks the library; `tls_version` pins TLS 1.2 or 1.3."""

    def __init__(
        self,
        port: int,
        ca: Path,
        *,
        direct_tls: bool = False,
        tls: Literal["stdlib", "openssl"] = "stdlib",
        tls_version: Literal["1.2", "1.3"] | None = None,
        client_cert: tuple[Path, Path] | None = None,
        timeout: float = 10,
    ) -> None:
        self.port = port
        self.ca = ca
        self.direct_tls = direct_tls
        self.tls = tls
        self.tls_version = tls_version
        self.client_cert = client_cert
        self.timeout = timeout
        self.sock: socket.socket | ssl.SSLSocket | SSL.Connection | None = None
        self.buffer = ""
        self.features = Features("")

    # ---------------------------------------------------------------- connection

    def connect(self) -> Features:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock = raw
        if self.direct_tls:
            self._wrap()
        self.features = self._open_stream()
        if not self.direct_tls:
            self._send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self._expect(r"<proceed[^>]*/>")
            self._wrap()
            self.features = self._open_stream()
        return self.features

    def _wrap(self) -> None:
        assert self.sock is not None
        raw = self.sock
        assert isinstance(raw, socket.socket) and not isinstance(raw, ssl.SSLSocket)
        if self.tls == "stdlib":
            ctx = ssl.create_default_context(cafile=str(self.ca))
            if self.tls_version is not None:
                version = getattr(ssl.TLSVersion, "TLSv1_" + self.tls_version[-1])
                ctx.minimum_version = ctx.maximum_version = version
            if self.client_cert is not None:
                ctx.load_cert_chain(*map(str, self.client_cert))
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
            return
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(str(self.ca))
        ctx.set_verify(SSL.VERIFY_PEER)
        if self.tls_version is not None:
            version = SSL.TLS1_2_VERSION if self.tls_version == "1.2" else SSL.TLS1_3_VERSION
            ctx.set_min_proto_version(version)
            ctx.set_max_proto_version(version)
        if self.client_cert is not None:
            ctx.use_certificate_chain_file(str(self.client_cert[0]))
            ctx.use_privatekey_file(str(self.client_cert[1]))
        raw.settimeout(None)  # pyOpenSSL wants a blocking socket; `_expect` polls with select
        conn = SSL.Connection(ctx, raw)
        conn.set_tlsext_host_name(b"localhost")
        conn.set_connect_state()
        conn.do_handshake()
        self.sock = conn

    def _open_stream(self) -> Features:
        self.buffer = ""
        self._send(HEADER)
        text = self._expect(r"<stream:features>.*?</stream:features>|<stream:features/>")
        return Features.parse(text)

    def _send(self, text: str) -> None:
        assert self.sock is not None
        self.sock.sendall(text.encode())

    def _expect(self, pattern: str) -> str:
        """Read until `pattern` matches; a <failure> or stream error raises LoginFailed."""
        regex = re.compile(pattern, re.S)
        failure = re.compile(
            r"<failure xmlns=['\"]urn:ietf:params:xml:ns:xmpp-sasl['\"]>\s*<([a-z-]+)|"
            r"<stream:error><([a-z-]+)",
            re.S,
        )
        while True:
            match = regex.search(self.buffer)
            if match:
                self.buffer = self.buffer[match.end() :]
                return match.group(0)
            bad = failure.search(self.buffer)
            if bad:
                end = self.buffer.find("</failure>", bad.end())
                self.buffer = self.buffer[end + len("</failure>") :] if end >= 0 else ""
                raise LoginFailed(bad.group(1) or bad.group(2))
            assert self.sock is not None
            if isinstance(self.sock, SSL.Connection) and not self.sock.pending():
                readable, _, _ = select.select([self.sock], [], [], self.timeout)
                if not readable:
                    raise TimeoutError(f"nothing while waiting for {pattern!r}")
            try:
                data = self.sock.recv(65536)
            except SSL.ZeroReturnError:
                data = b""
            if not data:
                raise ConnectionError(f"closed while waiting for {pattern!r}: {self.buffer!r}")
            self.buffer += data.decode()

    # ---------------------------------------------------------------- channel bindings

    def binding(self, cb_type: str) -> bytes:
        """The channel-binding data as the client's own TLS library computes it."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket):
            if cb_type == "tls-server-end-point":
                der = sock.getpeercert(binary_form=True)
                assert der is not None
                return scramp.core.CBindData.from_der(der).data
            data = sock.get_channel_binding(cb_type)
            assert data is not None
            return data
        assert isinstance(sock, SSL.Connection)
        if cb_type == "tls-exporter":
            # RFC 9266 §2: label "EXPORTER-Channel-Binding", empty context, 32 bytes.
            return sock.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
        if cb_type == "tls-unique":
            return sock.get_finished()  # the client's Finished comes first in a full handshake
        raise ValueError(cb_type)

    # ---------------------------------------------------------------- SASL

    def scram(
        self,
        mechanism: str,
        username: str,
        password: str,
        *,
        cb_type: str | None = None,
        cb_data: bytes | None = None,
    ) -> str:
        """SCRAM login; returns the server-first message.  Raises LoginFailed."""
        channel_binding = None
        if cb_type is not None:
            data = self.binding(cb_type) if cb_data is None else cb_data
            channel_binding = (cb_type, data)
        with _scramp_knows_tls_exporter():
            client = ScramClient([mechanism], username, password, channel_binding=channel_binding)
            first = client.get_client_first()
        self._send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>"
            f"{_b64(first.encode())}</auth>"
        )
        challenge = self._expect(r"<challenge[^>]*>([^<]*)</challenge>")
        server_first = base64.b64decode(re.sub(r"<[^>]+>", "", challenge)).decode()
        client.set_server_first(server_first)
        self._send(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            f"{_b64(client.get_client_final().encode())}</response>"
        )
        success = self._expect(r"<success[^>]*>([^<]*)</success>|<success[^>]*/>")
        payload = re.sub(r"<[^>]+>", "", success)
        client.set_server_final(base64.b64decode(payload).decode())  # checks ServerSignature
        return server_first

    def external(self, authzid: str = "") -> None:
        """EXTERNAL login with the TLS client certificate.  Raises LoginFailed."""
        body = _b64(authzid.encode()) if authzid else "="
        self._send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{body}</auth>"
        )
        self._expect(r"<success[^>]*>[^<]*</success>|<success[^>]*/>")

    def sasl(self, mechanism: str, initial: bytes | None) -> tuple[str, bytes]:
        """Start any mechanism (one no packaged client knows, say) with an initial
        response, or none; returns ``("challenge" | "success", decoded data)``.
        Raises LoginFailed."""
        # RFC 6120 §6.4.2: a zero-length initial response is sent as "=".
        body = "" if initial is None else (_b64(initial) or "=")
        self._send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{body}</auth>"
        )
        return self._sasl_answer()

    def sasl_response(self, data: bytes) -> tuple[str, bytes]:
        """Answer a challenge; returns like `sasl`.  Raises LoginFailed."""
        self._send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{_b64(data)}</response>")
        return self._sasl_answer()

    def _sasl_answer(self) -> tuple[str, bytes]:
        text = self._expect(
            r"<(challenge|success)[^>]*/>|<(challenge|success)[^>]*>[^<]*</(challenge|success)>"
        )
        kind = "challenge" if text.startswith("<challenge") else "success"
        payload = re.sub(r"<[^>]+>", "", text).strip()
        return kind, b"" if payload in ("", "=") else base64.b64decode(payload)

    def bind(self) -> str:
        """Restart the stream after SASL success and bind a resource; returns the full JID."""
        self._open_stream()
        self._send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        result = self._expect(r"<jid>([^<]+)</jid>")
        return re.sub(r"</?jid>", "", result)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self._send("</stream:stream>")
            with contextlib.suppress(OSError):
                self.sock.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _scramp_knows_tls_exporter:
    """scramp 1.5 refuses the name "tls-exporter" although it treats the data as opaque
    bytes like any other type; admit the name for the duration of one client build."""

    def __enter__(self) -> None:
        cls = scramp.core.CbName
        self._saved = (cls.SUPPORTED_TYPES, cls.UNSUPPORTED_TYPES)
        cls.SUPPORTED_TYPES = cls.SUPPORTED_TYPES | {"tls-exporter"}
        cls.UNSUPPORTED_TYPES = frozenset()

    def __exit__(self, *exc: object) -> None:
        cls = scramp.core.CbName
        cls.SUPPORTED_TYPES, cls.UNSUPPORTED_TYPES = self._saved


ALL_SCRAM = [
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
]


def start_tls_server(tmp: Path, *, mechanisms: list[str], tls: str = "") -> RunningServer:
    """`conftest.start_server` with our own mechanism list and `[tls]` table."""
    from tests.e2e.conftest import free_ports, serve

    starttls, direct, plain = free_ports(3)
    data_dir = tmp / "var"
    config = tmp / "chatgate.toml"
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{data_dir}"

[[listeners]]
port = {starttls}
tls = "starttls"

[[listeners]]
port = {direct}
tls = "direct"

[[listeners]]
port = {plain}
tls = "none"
require_tls = false

[http]
enabled = false

[auth]
mechanisms = {mechanisms!r}

[tls]
{tls}
""".replace("'", '"')
    )
    return serve(config, data_dir, (starttls, direct, plain))
