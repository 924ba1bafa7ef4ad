"""TLS layer cost: the standard library's `ssl` against chatgate's pyOpenSSL layer.

Run: ``.venv/bin/python -m bench.tls_backends`` (a few seconds; numbers go to stdout).

What it measures, for the server side only (the client is the standard
library in both cases, so its cost is the same and is not counted):

* in memory (no sockets, no event loop): server CPU per full TLS 1.3 handshake;
  per small record received and sent (a 300-byte stanza each, the XMPP hot
  path); per MB of bulk data.  Standard library: `ssl.SSLObject` on memory BIOs,
  which is what asyncio's and uvloop's SSL transports drive.  chatgate:
  `ServerTlsConnection`.
* over loopback sockets with uvloop: a client process streams 16 KiB writes to
  a server that decrypts and counts them; MB/s and server CPU per MB, with the
  loop's own SSL transport against a plain transport feeding the pyOpenSSL layer.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from chatgate.config import TlsConfig
from chatgate.tls import build_server_tls, generate_self_signed
from chatgate.xmpp.transports.openssl_tls import ServerTls

STANZA = (
    b"<message to='bob@localhost' type='chat' id='x'><body>" + b"a" * 220 + b"</body></message>"
)


def _client_context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _stdlib_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


class _MemoryPair:
    """A stdlib client SSLObject and a server (stdlib or pyOpenSSL) joined in memory."""

    def __init__(self, client_ctx: ssl.SSLContext, server: ssl.SSLContext | ServerTls) -> None:
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out, server_hostname="localhost")
        self.server_time = 0.0
        if isinstance(server, ServerTls):
            self.ossl = server.connection()
            self.std = None
        else:
            self.ossl = None
            self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.std = server.wrap_bio(self.s_in, self.s_out, server_side=True)

    def server_receive(self, data: bytes) -> tuple[bytes, bytes]:
        t0 = time.perf_counter()
        result = self.ossl.receive(data) if self.ossl is not None else self._std_receive(data)
        self.server_time += time.perf_counter() - t0
        return result

    _std_ready = False

    def _std_receive(self, data: bytes) -> tuple[bytes, bytes]:
        assert self.std is not None
        self.s_in.write(data)
        if not self._std_ready:
            try:
                self.std.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self.s_out.read()
            self._std_ready = True
        chunks = []
        try:
            while True:
                chunks.append(self.std.read(16384))
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        return b"".join(chunks), self.s_out.read()

    def server_send(self, data: bytes) -> bytes:
        t0 = time.perf_counter()
        if self.ossl is not None:
            out = self.ossl.send(data)
        else:
            assert self.std is not None
            self.std.write(data)
            out = self.s_out.read()
        self.server_time += time.perf_counter() - t0
        return out

    def handshake(self) -> None:
        to_server = b""
        for _ in range(10):
            try:
                self.client.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            to_server = self.c_out.read()
            if to_server:
                _plain, to_client = self.server_receive(to_server)
                if to_client:
                    self.c_in.write(to_client)
            if done and not to_server:
                return
        raise RuntimeError("handshake did not finish")


def _per_op(label: str, count: int, seconds: float) -> str:
    return f"{label}: {seconds / count * 1e6:8.2f} µs/op ({count / seconds:,.0f}/s)"


def memory_bench(cert: Path, key: Path) -> None:
    client_ctx = _client_context(cert)
    backends: dict[str, Callable[[], ssl.SSLContext | ServerTls]] = {
        "stdlib ssl": lambda: _stdlib_server_context(cert, key),
        "pyOpenSSL ": lambda: build_server_tls(TlsConfig(), cert, key),
    }
    for name, make in backends.items():
        server = make()
        # handshakes
        n = 300
        total = 0.0
        for _ in range(n):
            pair = _MemoryPair(client_ctx, server)
            pair.handshake()
            total += pair.server_time
        print(f"{name} " + _per_op("server handshake CPU (TLS 1.3, P-256)", n, total))
        pair = _MemoryPair(client_ctx, server)
        pair.handshake()
        # small records, client -> server (receive path)
        n = 50_000
        records = []
        for _ in range(n):
            pair.client.write(STANZA)
            records.append(pair.c_out.read())
        pair.server_time = 0.0
        for rec in records:
            plain, _ = pair.server_receive(rec)
            assert plain == STANZA, (len(plain),)
        print(f"{name} " + _per_op("receive 300 B record", n, pair.server_time))
        # small records, server -> client (send path: one record per stanza)
        pair.server_time = 0.0
        for _ in range(n):
            pair.server_send(STANZA)
        print(f"{name} " + _per_op("send 300 B record   ", n, pair.server_time))
        # bulk receive
        block = os.urandom(16384)
        blobs = []
        for _ in range(2000):
            pair.client.write(block)
            blobs.append(pair.c_out.read())
        pair.server_time = 0.0
        for blob in blobs:
            pair.server_receive(blob)
        mb = 2000 * 16384 / 1e6
        print(f"{name} bulk receive: {mb / pair.server_time:8.1f} MB/s of server CPU")


# ---------------------------------------------------------------- loopback


def _client_process(port: int, cert: str, megabytes: int) -> None:
    ctx = _client_context(Path(cert))
    raw = socket.create_connection(("127.0.0.1", port))
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    block = os.urandom(16384)
    for _ in range(megabytes * 64):
        sock.sendall(block)
    sock.unwrap()
    sock.close()


class _Counter(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[int], tls: ServerTls | None) -> None:
        self.done = done
        self.count = 0
        self.tls = tls.connection() if tls is not None else None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            data, out = self.tls.receive(data)
            assert self.transport is not None
            if self.tls.closed:
                out += self.tls.close()
            if out:
                self.transport.write(out)
            if self.tls.closed:
                self.transport.close()
        self.count += len(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.count)


async def _loopback(cert: Path, key: Path, use_pyopenssl: bool, megabytes: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    tls = build_server_tls(TlsConfig(), cert, key) if use_pyopenssl else None
    std = None if use_pyopenssl else _stdlib_server_context(cert, key)
    server = await loop.create_server(lambda: _Counter(done, tls), "127.0.0.1", 0, ssl=std)
    port = server.sockets[0].getsockname()[1]
    proc = multiprocessing.Process(target=_client_process, args=(port, str(cert), megabytes))
    cpu0, t0 = time.process_time(), time.perf_counter()
    proc.start()
    count = await done
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    proc.join()
    server.close()
    name = "pyOpenSSL " if use_pyopenssl else "stdlib ssl"
    mb = count / 1e6
    print(
        f"{name} loopback (uvloop): {mb / wall:7.1f} MB/s wall, "
        f"{cpu / mb * 1e3:6.2f} ms server CPU per MB"
    )


def main() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    print(f"Python {sys.version.split()[0]}, stdlib {ssl.OPENSSL_VERSION}")
    from OpenSSL import SSL

    print(f"pyOpenSSL on {SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
        generate_self_signed("localhost", cert, key)
        memory_bench(cert, key)
        for use in (False, True):
            runner = uvloop.run if uvloop is not None else asyncio.run
            runner(_loopback(cert, key, use, 200))


if __name__ == "__main__":
    main()
