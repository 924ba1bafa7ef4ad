"""Blocking raw-socket clients for attack tests: a logged-in session on the plain
port (SASL PLAIN, bind), a pinger that measures round trips, and floods bounded in
time.  Written from RFC 6120 alone; nothing here comes from the server's code.

Every loop here stops by itself: floods run for a given number of seconds, reads
time out, and sockets are closed on exit.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


class RawSession:
    """One plain-TCP stream; `login()` authenticates with PLAIN and binds `resource`."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.last_match = b""
        self.full_jid = ""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, pattern: bytes, timeout: float = 10.0) -> re.Match[bytes]:
        """Read until `pattern` matches the received bytes; consume through the match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.buffer, re.S)
            if match:
                self.last_match = match.group(0)
                self.buffer = self.buffer[match.end() :]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {pattern!r} in {self.buffer[-300:]!r}")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed before {pattern!r}: {self.buffer[-300:]!r}")
            self.buffer += data

    def read_all(self, timeout: float = 10.0) -> bytes:
        """Everything until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self.buffer += data
        out, self.buffer = self.buffer, b""
        return out

    def open(self) -> bytes:
        self.send(HEADER)
        return self.expect(rb"<stream:features.*?</stream:features>").group(0)

    def login(self, user: str, password: str, resource: str) -> str:
        self.open()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        self.expect(rb"<success[^>]*/>|<success[^>]*>.*?</success>")
        self.open()
        self.send(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            + f"<resource>{resource}</resource></bind></iq>".encode()
        )
        self.full_jid = self.expect(rb"<jid>([^<]+)</jid>").group(1).decode()
        return self.full_jid

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def ping_round_trips(session: RawSession, count: int, interval: float = 0.05) -> list[float]:
    """XEP-0199 pings to the server, one at a time; the round trip of each, in seconds."""
    times = []
    for i in range(count):
        start = time.monotonic()
        session.send(
            f"<iq type='get' id='ping{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        session.expect(rb"<iq[^>]*id=['\"]ping%d['\"]" % i, timeout=30)
        times.append(time.monotonic() - start)
        time.sleep(interval)
    return times


def pings_during(session: RawSession, seconds: float, interval: float = 0.05) -> list[float]:
    """Send a ping every `interval` for `seconds` without waiting for the answers; the
    round trip of each (a ping still unanswered 10 s after the last was sent counts
    as infinitely slow).  Unlike one ping at a time, a stall shows in every ping it
    delays, so the median says how long the stall lasted."""
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    done = threading.Event()

    def read() -> None:
        pattern = re.compile(rb"<iq[^>]*id=['\"]tick(\d+)['\"]")
        while not done.is_set():
            try:
                session.expect(rb"<iq[^>]*id=['\"]tick\d+['\"]", timeout=0.2)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            # `expect` consumed through the match: find which tick it was.
            match = pattern.findall(session.last_match)
            if match:
                answered[int(match[-1])] = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    count = int(seconds / interval)
    for i in range(count):
        sent[i] = time.monotonic()
        session.send(
            f"<iq type='get' id='tick{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        time.sleep(interval)
    deadline = time.monotonic() + 10
    while len(answered) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    done.set()
    reader.join(2)
    return [answered[i] - sent[i] if i in answered else float("inf") for i in range(count)]


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def flood(sock: socket.socket, chunk: bytes, seconds: float) -> int:
    """Send `chunk` repeatedly for `seconds` (or until the server stops reading or
    closes); return the bytes sent."""
    sent = 0
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.sendall(chunk)
        except TimeoutError:
            continue  # the server paused reading us: that is the point
        except OSError:
            break
        sent += len(chunk)
    return sent


@contextlib.contextmanager
def drained(sock: socket.socket) -> Iterator[None]:
    """Read and discard whatever the server sends on `sock` while the block runs."""
    stop = threading.Event()

    def drain() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                if not sock.recv(1 << 16):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
