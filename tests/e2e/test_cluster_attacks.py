"""The cluster layer attacked as a hostile client and as faults would (issue 14):
three `chatgate serve` nodes, one PostgreSQL, one Redis (`cluster_harness.py`),
clients on raw sockets (what an attacker controls byte for byte).

- resource names that could break the cluster's wire formats (the claim value
  ``node|sid``, the snapshot field ``bare/resource``, frames with a 2-byte target
  length) still get messages, presence and roster pushes across nodes;
- binds of one full JID, and of more resources than `max_resources`, raced over
  the nodes: exactly one / exactly `max_resources` survive, and Redis says so;
- a flood of big stanzas to a user on another node: an honest pair's latency,
  the nodes' memory, the forward queue's refusals and their log lines;
- Redis frozen (SIGSTOP), cut off with its data kept, and stopped mid-burst;
- churn over the nodes with a node killed and restarted under its name before
  its heartbeat expired; a message that finds a node dead; a node restarted
  just after Redis returned.

Eight weaknesses these tests found were fixed (their tests pass); what the
cluster still gets wrong is marked `xfail(strict=True)` with the reason: such a
test fails as XPASS when its fix lands, and then the mark goes (except the
frozen-flood memory test, whose outcome varies between runs: not strict).

The nodes' `node_timeout` here is 8 s (a restart must beat it); the forward
queue is 1 MiB and reading from a client is not rate-limited (`c2s_rate = 0`),
so that one client can fill the queue.  Logs of a failed test are kept in
`test-artifacts/test_cluster_attacks/<test>/`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape, unescape

import pytest
import redis

from tests.redis_server import start_redis

from .cluster_harness import (
    NODE_TIMEOUT,
    ClusterNodeProcess,
    LocalCluster,
    import_users,
    logs_kept_on_failure,
    migrate,
    node_config,
    shared_database,
)
from .conftest import free_ports

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CHATGATE_TEST_ARTIFACTS", ROOT / "test-artifacts"))

#: longer than a restart of a node takes, so a node killed and started again is
#: back before the others judged it dead
TIMEOUT = 8.0
MAX_RESOURCES = 4
FORWARD_QUEUE = 1 << 20
#: the first line lands in the harness's [cluster] table (it is appended to it)
EXTRA = f"""forward_queue_bytes = {FORWARD_QUEUE}

[limits]
c2s_rate = 0

[session]
max_resources = {MAX_RESOURCES}
"""
CHURN_USERS = [f"c{i}" for i in range(24)]
USERS = {
    name: f"{name}-password"
    for name in [
        "sender",
        *(f"odd{i}" for i in range(6)),
        "alice",
        "bob",
        "att0",
        "att1",
        "att2",
        "victim",
        "race",
        "many",
        "leak",
        "local1",
        "local2",
        "watch",
        "mover",
        "watch2",
        "mover2",
        "watch3",
        "mover3",
        *CHURN_USERS,
    ]
}
PREFIX = "chatgate:"


def start_attack_cluster() -> LocalCluster:
    """`cluster_harness.start_cluster` with this module's `node_timeout` (the harness
    fixes it at 1 s; a restart under the same name must come back before it)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="chatgate-attacks-"))
    redis_server = start_redis()
    storage_url, postgres = shared_database(folder)
    cluster = LocalCluster(folder, redis_server, storage_url, postgres=postgres)
    try:
        migrate(storage_url)
        for name, port in zip(("n1", "n2", "n3"), free_ports(3), strict=True):
            node = ClusterNodeProcess(name, folder / name, port)
            node.folder.mkdir()
            text = node_config(name, node.folder, port, storage_url, redis_server.url, EXTRA)
            node.config.write_text(
                text.replace(f"node_timeout = {NODE_TIMEOUT}", f"node_timeout = {TIMEOUT}")
            )
            cluster.nodes[name] = node
        import_users(cluster["n1"].config, USERS)
        for node in cluster.nodes.values():
            node.launch()
        for node in cluster.nodes.values():
            node.wait_listening()
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    cluster = start_attack_cluster()
    try:
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _keep_logs_on_failure(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[None]:
    yield from logs_kept_on_failure(request, cluster)


@pytest.fixture(scope="module")
def store(cluster: LocalCluster) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    yield client
    client.close()


# -- a raw client ------------------------------------------------------------------------

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


class BindRefused(Exception):
    pass


class Raw:
    """One c2s connection on a socket: logged in with PLAIN, a resource bound; then a
    thread reads everything (kept with its arrival times, or only counted)."""

    def __init__(
        self,
        node: ClusterNodeProcess,
        user: str,
        resource: str,
        *,
        keep: bool = True,
        presence: bool = False,
    ) -> None:
        self.node = node.name
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=20)
        self.data = bytearray()
        self.chunks: list[tuple[float, int]] = []  # (arrival time, end offset)
        self.received = 0
        self.keep = keep
        self.eof = threading.Event()
        self.jid = ""
        try:
            self._login(user, resource)
        except BaseException:
            self.sock.close()
            raise
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if presence:
            self.send("<presence/>")

    def _until(self, *tokens: bytes) -> bytes:
        while not any(t in self.data for t in tokens):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed: {bytes(self.data)[-300:]!r}")
            self.data += chunk
        return bytes(self.data)

    def _login(self, user: str, resource: str) -> None:
        self.sock.sendall(HEADER)
        self._until(b"</stream:features>")
        self.data.clear()
        token = base64.b64encode(f"\0{user}\0{USERS[user]}".encode()).decode()
        self.sock.sendall(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        answer = self._until(b"<success", b"</failure>")
        assert b"<success" in answer, answer
        self.data.clear()
        self.sock.sendall(HEADER)
        self._until(b"</stream:features>")
        self.data.clear()
        self.sock.sendall(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{escape(resource)}</resource></bind></iq>".encode()
        )
        answer = self._until(b"</iq>", b"</stream:stream>")
        if b"type='result'" not in answer and b'type="result"' not in answer:
            raise BindRefused(answer.decode(errors="replace"))
        match = re.search(rb"<jid>(.*?)</jid>", answer, re.S)
        assert match is not None, answer
        self.jid = unescape(match.group(1).decode(), {"&apos;": "'", "&quot;": '"'})
        self.data.clear()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(262144)
                if not chunk:
                    break
                self.received += len(chunk)
                if self.keep:
                    self.data += chunk
                    self.chunks.append((time.monotonic(), len(self.data)))
        except OSError:
            pass
        self.eof.set()

    def send(self, text: str | bytes) -> None:
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def wait(self, pattern: bytes, timeout: float = 8.0) -> bytes:
        """Everything received so far, once it holds `pattern` (a regex)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.data, re.S):
                return bytes(self.data)
            time.sleep(0.01)
        raise AssertionError(
            f"{self.jid} on {self.node}: no {pattern!r} in {timeout} s; got "
            f"{bytes(self.data)[-600:]!r}"
        )

    def arrival(self, offset: int) -> float:
        """When the byte at `offset` arrived."""
        for when, end in self.chunks:
            if end > offset:
                return when
        raise AssertionError("offset not received")

    @property
    def open(self) -> bool:
        return not self.eof.is_set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"</stream:stream>")
        self.eof.wait(3)
        self.abort()

    def abort(self) -> None:
        """Gone without a goodbye (shutdown: a close alone sends nothing while the
        reading thread still holds the socket)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def message(to: str, body: str, mid: str = "m") -> str:
    return f"<message to='{escape(to, {chr(39): '&apos;'})}' type='chat' id='{mid}'><body>{escape(body)}</body></message>"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def claims(store: redis.Redis, bare: str) -> dict[str, str]:
    """The directory's claims of `bare` in Redis: resource -> 'node|sid'."""
    held = store.hgetall(f"{PREFIX}res:{bare}")
    return {_text(k): _text(v) for k, v in held.items()}


def snapshot_fields(store: redis.Redis, node: str, bare: str) -> list[str]:
    """The fields of `node`'s snapshot in Redis that are sessions of `bare`."""
    fields = [_text(k) for k in store.hkeys(f"{PREFIX}sessions:{node}")]
    return [f for f in fields if f.startswith(f"{bare}/")]


def no_claims(store: redis.Redis, *bares: str) -> Callable[[], None]:
    """A check for `settle`: none of `bares` holds a claim in Redis."""

    def check() -> None:
        held = {bare: claims(store, bare) for bare in bares}
        assert all(not h for h in held.values()), held

    return check


def rss_kb(node: ClusterNodeProcess) -> int:
    for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def settle(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Until `check()` stops raising AssertionError (then once more, to raise it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            check()
            return
        except AssertionError:
            time.sleep(0.1)
    check()


# -- resource names against the wire formats ----------------------------------------------

ODD_RESOURCES = [
    "pipe|in|it",  # the claim value is "node|sid"
    "slash/in/it",  # the snapshot field is "bare/resource"
    "ünïcødé ☃ 𝄞",
    "r" * 1023,  # RFC 7622 §3.4: the longest resourcepart, one byte per character
    "é" * 511,  # 1022 bytes, two per character
    "q'\"<&>{}[],:\\",  # what XML, JSON and Lua strings escape
]


def test_odd_resources_get_messages_presence_and_roster_pushes_across_nodes(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    sender = Raw(cluster["n1"], "sender", "s")
    odd: list[Raw] = []
    helpers: list[Raw] = []
    try:
        for i, resource in enumerate(ODD_RESOURCES):
            session = Raw(cluster["n2"], f"odd{i}", resource)
            assert session.jid == f"odd{i}@localhost/{resource}"
            odd.append(session)
            session.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
            session.wait(rb"id=.r1.")
            # the claim in Redis names exactly this resource, on n2
            assert list(claims(store, f"odd{i}@localhost")) == [resource]
            assert claims(store, f"odd{i}@localhost")[resource].startswith("n2|")
            assert snapshot_fields(store, "n2", f"odd{i}@localhost") == [
                f"odd{i}@localhost/{resource}"
            ]
        for i, (session, resource) in enumerate(zip(odd, ODD_RESOURCES, strict=True)):
            full = f"odd{i}@localhost/{resource}"
            sender.send(message(full, f"to odd {i}", f"o{i}"))
            got = session.wait(rf"to odd {i}".encode())
            assert b"from='sender@localhost/s'" in got or b'from="sender@localhost/s"' in got
            # directed presence from the odd resource reaches n1 with its full JID intact
            session.send(f"<presence to='sender@localhost/s'><status>st{i}</status></presence>")
            got = sender.wait(rf"<status>st{i}</status>".encode())
            element = re.search(
                rf"<presence[^>]*>(?:(?!</presence>).)*st{i}</status></presence>".encode(),
                got,
                re.S,
            )
            assert element is not None, got[-400:]
            assert ElementTree.fromstring(element.group(0)).get("from") == full
            # a roster set by another resource of the account, on n3: the push crosses
            helper = Raw(cluster["n3"], f"odd{i}", "helper")
            helpers.append(helper)
            helper.send(
                f"<iq type='set' id='set{i}'><query xmlns='jabber:iq:roster'>"
                f"<item jid='friend{i}@localhost' name='f{i}'/></query></iq>"
            )
            helper.wait(rf"id=.set{i}.".encode())
            session.wait(rf"friend{i}@localhost".encode())
        # a resource with a control character is refused by PRECIS, nothing else moves
        with pytest.raises(BindRefused):
            Raw(cluster["n2"], "odd0", "line\nbreak")
        sender.send(message(f"odd0@localhost/{ODD_RESOURCES[0]}", "still there", "again"))
        odd[0].wait(rb"still there")
    finally:
        for session in [*odd, *helpers]:
            session.close()
        sender.close()

    def released() -> None:
        for i in range(len(ODD_RESOURCES)):
            assert claims(store, f"odd{i}@localhost") == {}
            for node in ("n1", "n2", "n3"):
                assert snapshot_fields(store, node, f"odd{i}@localhost") == []

    settle(released)


# -- races over the nodes -----------------------------------------------------------------


def _race(cluster: LocalCluster, binds: list[tuple[str, str, str]]) -> tuple[list[Raw], list[str]]:
    """Bind (node, user, resource) all at once from threads: (bound, refusals)."""
    barrier = threading.Barrier(len(binds))

    def one(node: str, user: str, resource: str) -> Raw | str:
        barrier.wait(10)
        for _ in range(5):
            try:
                return Raw(cluster[node], user, resource)
            except BindRefused as exc:
                return str(exc)
            except AssertionError as exc:  # SASL's "try again later": nine at once
                if "temporary-auth-failure" not in str(exc):
                    raise
                time.sleep(0.05)
        raise AssertionError("login refused five times")

    with concurrent.futures.ThreadPoolExecutor(len(binds)) as pool:
        outcomes = list(pool.map(lambda b: one(*b), binds))
    return [o for o in outcomes if isinstance(o, Raw)], [o for o in outcomes if isinstance(o, str)]


def test_same_full_jid_raced_on_every_node_leaves_exactly_one_session(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    """RFC 6120 §7.7.2.2 newest-wins, decided across nodes: however the binds
    interleave, one session is left open, Redis names it, and it gets the messages."""
    sender = Raw(cluster["n1"], "sender", "race-sender")
    everyone: list[Raw] = []
    try:
        for round_ in range(RACE_ROUNDS):
            bound, refused = _race(cluster, [(n, "race", "same") for n in ("n1", "n2", "n3") * 3])
            everyone += bound
            assert refused == []
            time.sleep(0.3)  # the conflicts' closes cross the nodes

            def one_left(bound: list[Raw] = bound, round_: int = round_) -> None:
                alive = [s for s in bound if s.open]
                assert len(alive) == 1, (
                    f"round {round_}: {len(alive)} sessions of race@localhost/same open"
                    f" (on {[s.node for s in alive]}), Redis holds {claims(store, 'race@localhost')}"
                )

            settle(one_left)
            survivor = next(s for s in bound if s.open)
            held = claims(store, "race@localhost")
            assert list(held) == ["same"]
            assert held["same"].split("|")[0] == survivor.node
            sender.send(message("race@localhost/same", f"round {round_}", f"r{round_}"))
            survivor.wait(rf"round {round_}".encode())
            survivor.close()
            settle(no_claims(store, "race@localhost"))
    finally:
        sender.close()
        for session in everyone:
            session.abort()


#: rounds of nine binds (several sessions were left open in round 1 to 7 of a run here)
RACE_ROUNDS = 12


def test_max_resources_raced_on_every_node_holds_exactly(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    binds = [(("n1", "n2", "n3")[i % 3], "many", f"res{i}") for i in range(10)]
    bound, refused = _race(cluster, binds)
    try:
        assert len(bound) == MAX_RESOURCES, (len(bound), refused)
        assert len(refused) == 10 - MAX_RESOURCES
        assert all("resource-constraint" in r for r in refused), refused
        held = claims(store, "many@localhost")
        assert sorted(held) == sorted(s.jid.split("/", 1)[1] for s in bound)
        for session in bound:
            assert held[session.jid.split("/", 1)[1]].split("|")[0] == session.node
    finally:
        for session in bound:
            session.close()
    settle(no_claims(store, "many@localhost"))


# -- a flood to a user on another node ------------------------------------------------------

FLOOD_SECONDS = 6.0
BIG_BODY = "A" * 100_000


def _latencies(
    sender: Raw, receiver: Raw, to: str, count: int, gap: float, tag: str
) -> list[float]:
    """Send `count` messages `gap` s apart; each one's one-way latency (inf: lost)."""
    sent: dict[int, float] = {}
    for i in range(count):
        sent[i] = time.monotonic()
        sender.send(message(to, f"{tag}-{i}-end", f"{tag}{i}"))
        time.sleep(gap)
    with contextlib.suppress(AssertionError):
        receiver.wait(rf"{tag}-{count - 1}-end".encode(), timeout=5)
    time.sleep(0.3)
    data = bytes(receiver.data)
    out = []
    for i in range(count):
        at = data.find(f"{tag}-{i}-end".encode())
        out.append(receiver.arrival(at) - sent[i] if at >= 0 else float("inf"))
    return out


def test_flood_to_another_node_leaves_honest_traffic_and_memory_bounded(
    cluster: LocalCluster,
) -> None:
    n1, n2 = cluster["n1"], cluster["n2"]
    victim = Raw(n2, "victim", "v", keep=False)
    alice = Raw(n1, "alice", "h")
    bob = Raw(n2, "bob", "h")
    attackers = [Raw(n1, f"att{i}", "x", keep=False) for i in range(3)]
    since = len(n1.log_text())
    try:
        base = _latencies(alice, bob, "bob@localhost/h", 20, 0.02, "base")
        rss_before = {n.name: rss_kb(n) for n in (n1, n2)}
        stop = threading.Event()
        sent_bytes = [0] * len(attackers)
        stanza = message("victim@localhost/v", BIG_BODY).encode()

        def flood(k: int) -> None:
            while not stop.is_set():
                try:
                    attackers[k].sock.sendall(stanza)
                except OSError:
                    return
                sent_bytes[k] += len(stanza)

        threads = [threading.Thread(target=flood, args=(k,), daemon=True) for k in range(3)]
        for thread in threads:
            thread.start()
        peak = dict(rss_before)
        sampler_stop = threading.Event()

        def sample() -> None:
            while not sampler_stop.is_set():
                for n in (n1, n2):
                    peak[n.name] = max(peak[n.name], rss_kb(n))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(0.5)
        during = _latencies(alice, bob, "bob@localhost/h", int(FLOOD_SECONDS / 0.1), 0.1, "flood")
        stop.set()
        for thread in threads:
            thread.join(5)
        time.sleep(2.0)
        sampler_stop.set()
        sampler.join()
        rss_after = {n.name: rss_kb(n) for n in (n1, n2)}
        after = _latencies(alice, bob, "bob@localhost/h", 20, 0.02, "after")
        log = n1.log_text()[since:]
        refusals = log.count("cross-node delivery refused")
        lost = sum(1 for x in during if x == float("inf"))
        finite = sorted(x for x in during if x != float("inf"))
        print(
            f"\nflood: {sum(sent_bytes) / 1e6:.1f} MB sent by 3 clients in ~{FLOOD_SECONDS:.0f} s,"
            f" victim read {victim.received / 1e6:.1f} MB;"
            f" honest p50 before {statistics.median(base) * 1000:.1f} ms,"
            f" during {statistics.median(finite) * 1000 if finite else -1:.1f} ms"
            f" (max {max(finite, default=-1) * 1000:.1f} ms, lost {lost}/{len(during)}),"
            f" after {statistics.median(after) * 1000:.1f} ms;"
            f" RSS kB before {rss_before} peak {peak} after {rss_after};"
            f" 'refused' log lines on n1: {refusals}"
        )
        # the honest pair's messages all arrive, promptly, during the flood
        assert lost == 0, f"{lost} of {len(during)} honest cross-node messages lost"
        assert statistics.median(finite) < 0.25
        assert max(finite) < 2.0
        assert max(after) < 1.0
        # memory: bounded while flooded, given back (mostly) after
        for name in ("n1", "n2"):
            assert peak[name] - rss_before[name] < 150_000, (name, rss_before, peak)
            # What the allocator keeps of the flood's freed 100 kB buffers is the
            # known, unresolved growth of the frozen-flood xfail below; this bounds
            # it (a fresh-clone run measured 82 MB after ~720 MB flooded).
            assert rss_after[name] - rss_before[name] < 120_000, (name, rss_before, rss_after)
        # how often refusals are logged: test_redis_frozen_flood_is_held_to_the_forward_queue
    finally:
        for session in [victim, alice, bob, *attackers]:
            session.abort()


# -- churn, a node killed and back under its name --------------------------------------------


def test_churn_with_a_node_killed_and_restarted_before_its_timeout(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    nodes = ("n1", "n2", "n3")
    n3 = cluster["n3"]
    watcher = Raw(cluster["n1"], "watch", "w")
    # the watcher on n1 is subscribed to "mover"'s presence; mover is on n3
    subscribe(watcher, Raw(n3, "mover", "m", presence=True))
    done = [0]
    failures = [0]
    kill_at = 60

    def cycle(i: int) -> None:
        node = cluster[nodes[i % 3]]
        try:
            session = Raw(node, CHURN_USERS[i % len(CHURN_USERS)], f"k{i % 5}", presence=True)
        except Exception:
            failures[0] += 1  # n3 down
            return
        if i % 4 == 0:
            session.abort()
        else:
            session.close()
        done[0] += 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = list(pool.map(cycle, range(kill_at)))
        assert len(first) == kill_at
        n3.kill()
        killed_at = time.monotonic()
        rest = pool.map(cycle, range(kill_at, kill_at + 90))
        since3 = len(n3.log_text())
        n3.start()
        back_after = time.monotonic() - killed_at
        list(rest)
        list(pool.map(cycle, range(kill_at + 90, kill_at + 150)))
    churn = time.monotonic() - started
    print(
        f"\nchurn: {done[0]} logins+logouts in {churn:.1f} s ({failures[0]} refused while n3"
        f" was down); n3 back {back_after:.1f} s after kill -9 (node_timeout {TIMEOUT} s)"
    )
    assert back_after < TIMEOUT, "the restart was not faster than node_timeout"
    assert "Traceback" not in n3.log_text()[since3:]
    # the watcher on n1 was told mover is gone (the run it knew was replaced)
    watcher.wait(unavailable("mover@localhost/m"), timeout=8)
    # no stand-in is left for the old run's session: a message to it is stored
    watcher.send(message("mover@localhost/m", "to the old run"))

    def directory_empty() -> None:
        for user in [*CHURN_USERS, "mover"]:
            assert claims(store, f"{user}@localhost") == {}, user
        for node in nodes:
            fields = store.hkeys(f"{PREFIX}sessions:{node}")
            left = [_text(k) for k in fields if not _text(k).startswith("watch@")]
            assert left == [], (node, left)

    settle(directory_empty, timeout=8)
    # nothing stands in for a dead session: messages to offline users are stored and
    # delivered at their next login, on any node
    for i, user in enumerate(CHURN_USERS[:6]):
        watcher.send(message(f"{user}@localhost/k{i % 5}", f"stored for {user}"))
    time.sleep(0.5)
    for i, user in enumerate(CHURN_USERS[:6]):
        session = Raw(cluster[nodes[(i + 1) % 3]], user, "later", presence=True)
        try:
            session.wait(rf"stored for {user}\b".encode())
        finally:
            session.close()
    later = Raw(cluster["n2"], "mover", "m2", presence=True)
    try:
        later.wait(rb"to the old run")
    finally:
        later.close()
        watcher.close()


def subscribe(watcher: Raw, contact: Raw) -> None:
    """`watcher` subscribes to `contact`'s presence (RFC 6121 §3.1), and gets it."""
    bare = contact.jid.split("/", 1)[0]
    watcher.send(f"<presence/><presence type='subscribe' to='{bare}'/>")
    contact.wait(rb"type=.subscribe.")
    contact.send(f"<presence type='subscribed' to='{watcher.jid.split('/')[0]}'/>")
    contact.send("<presence/>")
    watcher.wait(rf"<presence [^>]*from=[\"']{re.escape(contact.jid)}[\"'][^>]*/>".encode())


def unavailable(full: str) -> bytes:
    """A regex: unavailable presence from exactly `full`."""
    jid = re.escape(full).encode()
    sender = rb"from=[\"']" + jid + rb"[\"']"
    return (
        rb"<presence[^>]*("
        + sender
        + rb"[^>]*type=.unavailable.|type=.unavailable.[^>]*"
        + sender
        + rb")"
    )


def test_a_message_that_finds_a_node_dead_does_not_hide_its_users_departure(
    cluster: LocalCluster,
) -> None:
    """A PUBLISH nobody heard tells the sender's node that the other is dead before its
    heartbeat expires; the contacts on that node must still get unavailable presence
    (issue 14: "its users' contacts see them unavailable")."""
    n1, n2 = cluster["n1"], cluster["n2"]
    watcher = Raw(n1, "watch2", "w")
    subscribe(watcher, Raw(n2, "mover2", "m", presence=True))
    since = len(n1.log_text())
    n2.kill()
    try:
        watcher.send(message("mover2@localhost/m", "to the dead node"))
        n1.wait_for_log("did not answer", since=since, timeout=5)
    finally:
        n2.start()
    n1.wait_for_log("node n2 restarted", since=since, timeout=10)
    try:
        # the message itself was stored, not lost
        later = Raw(n1, "mover2", "m2", presence=True)
        later.wait(rb"to the dead node")
        later.close()
        watcher.wait(unavailable("mover2@localhost/m"), timeout=2)
    finally:
        watcher.close()


# -- Redis frozen, cut off, stopped ---------------------------------------------------------


@dataclass
class Freeze:
    """What a 2 s freeze of Redis (SIGSTOP) did while one client on n1 flooded."""

    local: list[float]  # same-node latencies meanwhile (s)
    rss_before: int  # n1, kB
    rss_peak: int
    rss_after: int  # 1 s after SIGCONT
    flooded_bytes: int
    redis_read: int  # bytes Redis read from its clients from the freeze to 1 s after
    refusal_lines: int  # "cross-node delivery refused" lines n1 logged
    across_after: float | None  # s from 1 s after SIGCONT until a message crossed again
    flooder_read: int  # what the flooding client received meanwhile (bounces, own presence)


def _frozen(
    cluster: LocalCluster, store: redis.Redis, stanza: Callable[[str], str], user: str
) -> Freeze:
    """Redis frozen for 2 s while `user` on n1 sends `stanza(full JID on n2)` as fast
    as it can and two users chat on n1; then a message from n1 to n2."""
    n1, n2 = cluster["n1"], cluster["n2"]
    one, two = Raw(n1, "local1", f"a{user}"), Raw(n1, "local2", f"b{user}")
    # the flood's target reads without keeping (a slow reader is closed by its node)
    far = Raw(n2, "bob", f"far{user}", keep=False)
    flooder = Raw(n1, user, "frozen", keep=False)
    sessions = [one, two, far, flooder]
    since = len(n1.log_text())
    try:
        read_before = int(store.info("stats")["total_net_input_bytes"])
        before = rss_kb(n1)
        stop = threading.Event()
        flooded = [0]
        data = stanza(far.jid).encode()

        def flood() -> None:
            while not stop.is_set():
                try:
                    flooder.send(data)
                except OSError:
                    return
                flooded[0] += len(data)

        thread = threading.Thread(target=flood, daemon=True)
        os.kill(redis_pid(cluster), signal.SIGSTOP)
        try:
            thread.start()
            started = time.monotonic()
            local = _latencies(one, two, two.jid, 10, 0.1, f"frozen-{user}")
            peak = rss_kb(n1)
            while time.monotonic() - started < 2.0:
                peak = max(peak, rss_kb(n1))
                time.sleep(0.1)
        finally:
            os.kill(redis_pid(cluster), signal.SIGCONT)
        stop.set()
        thread.join(5)
        time.sleep(1.0)
        read = int(store.info("stats")["total_net_input_bytes"]) - read_before
        after = rss_kb(n1)
        # a client told "wait" tries again: how long until a message crosses again
        thawed = time.monotonic()
        across = None
        later = Raw(n2, "bob", f"later{user}")
        sessions.append(later)
        for attempt in range(16):
            one.send(message(later.jid, f"after the freeze {attempt}", f"after{attempt}"))
            with contextlib.suppress(AssertionError):
                later.wait(rb"after the freeze \d", timeout=0.5)
                across = time.monotonic() - thawed
                break
        freeze = Freeze(
            local,
            before,
            peak,
            after,
            flooded[0],
            read,
            n1.log_text()[since:].count("cross-node delivery refused"),
            across,
            flooder.received,
        )
        print(f"\n{freeze}")
        return freeze
    finally:
        for session in sessions:
            session.abort()


@pytest.fixture(scope="module")
def frozen_messages(cluster: LocalCluster, store: redis.Redis) -> Freeze:
    """Messages of 100 kB to a user on n2, flooded while Redis is frozen."""
    return _frozen(cluster, store, lambda far: message(far, BIG_BODY), "att0")


def test_redis_frozen_two_seconds_local_service_continues(frozen_messages: Freeze) -> None:
    """While Redis does not answer, same-node chat goes on unhindered; after, messages
    cross again."""
    assert max(frozen_messages.local) < 0.5, frozen_messages.local
    assert frozen_messages.across_after is not None
    assert frozen_messages.across_after < 3.0


@pytest.mark.xfail(
    # Not strict: how much the allocator keeps varies from run to run (a fresh-clone
    # run at c6056c9 stayed under the bound and failed CI as XPASS).
    strict=False,
    reason="n1's RSS grows by ~75 MB under an 800 MB/2 s flood of 100 kB messages with"
    " the per-connection rate limit off, although what waits for Redis stays bounded"
    " (Redis reads ~9 MB after the thaw) and refusals are one episode: allocator"
    " retention of large freed buffers, not a queue; not resolved (closing note)",
)
def test_redis_frozen_flood_is_held_to_the_forward_queue(frozen_messages: Freeze) -> None:
    """A flood of messages across while Redis does not read: the node holds no more
    than about `forward_queue_bytes` (plus the socket's buffers) for Redis, its
    memory does not grow with the flood, and the refusal is one log line."""
    freeze = frozen_messages
    assert freeze.flooded_bytes > 50 * FORWARD_QUEUE
    assert freeze.redis_read < 16 * FORWARD_QUEUE, freeze
    assert freeze.rss_peak - freeze.rss_before < 32_000, freeze
    assert freeze.refusal_lines <= 2, freeze


def test_presence_flood_while_redis_is_frozen_is_bounded(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    """Each presence change is announced to the other nodes with the presence itself
    (up to the stanza limit): while Redis does not read, what waits for it must be
    bounded like the forward queue, not grow with what one client sends."""
    status = "S" * 200_000
    freeze = _frozen(
        cluster, store, lambda _far: f"<presence><status>{status}</status></presence>", "alice"
    )
    assert max(freeze.local) < 0.5, freeze.local
    assert freeze.flooded_bytes > 50 * FORWARD_QUEUE
    # Per node, the forward queue and the held announcements (each about
    # forward_queue_bytes) plus what the kernel's socket buffers on both ends
    # took before the node saw its socket full (several MiB each): bounded, and
    # nothing like what was flooded (before the bound: 86-741 MB).
    assert freeze.redis_read < 40 * FORWARD_QUEUE, freeze
    assert freeze.rss_peak - freeze.rss_before < 32_000, freeze


def redis_pid(cluster: LocalCluster) -> int:
    process = cluster.redis.process
    assert process is not None
    return process.pid


@contextlib.contextmanager
def cut_off(cluster: LocalCluster, store: redis.Redis) -> Iterator[None]:
    """Redis unreachable for every node, its data kept (a network cut): a password is
    required and every connection but this test's is closed; on exit the password
    goes and the test waits until n1 has resynchronised."""
    n1 = cluster["n1"]
    since = len(n1.log_text())
    store.config_set("requirepass", "cut-off")
    try:
        store.execute_command("AUTH", "cut-off")
        store.client_kill_filter(_type="normal", skipme=True)
        store.client_kill_filter(_type="pubsub", skipme=True)
        n1.wait_for_log("Redis", since=since, timeout=5)
        yield
    finally:
        store.config_set("requirepass", "")
    n1.wait_for_log("reachable again", since=since, timeout=10)
    time.sleep(1.0)


def test_claims_of_sessions_ended_while_redis_was_cut_off_are_released(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    """Redis unreachable but its data kept (a network cut, or a Redis restarted from
    its RDB file, Debian's default): a session that ends meanwhile must not leave
    its claim behind, or `max_resources` and the `reject` policy lock the account."""
    n1 = cluster["n1"]
    leaving = Raw(n1, "leak", "gone")
    staying = Raw(n1, "leak", "stays")
    try:
        assert sorted(claims(store, "leak@localhost")) == ["gone", "stays"]
        with cut_off(cluster, store):
            leaving.close()
            time.sleep(0.5)
        assert staying.open
        held = claims(store, "leak@localhost")
        assert sorted(held) == ["stays"], f"claims left in Redis: {held}"
        assert snapshot_fields(store, "n1", "leak@localhost") == ["leak@localhost/stays"]
    finally:
        staying.close()


def test_a_message_refused_for_another_node_is_bounced_to_its_sender(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    """Redis away: cross-node delivery is refused (docs/cluster.md); the sender must
    learn it (RFC 6120 §8.3: an error stanza), not believe the message delivered."""
    sender = Raw(cluster["n1"], "local1", "bounce")
    receiver = Raw(cluster["n2"], "local2", "bounce")
    try:
        with cut_off(cluster, store):
            sender.send(message(receiver.jid, "refused across", "refused1"))
            got = sender.wait(
                rb"<message[^>]*(type=.error.[^>]*id=.refused1.|id=.refused1.[^>]*type=.error.)",
                timeout=3,
            )
            assert b"refused across" not in bytes(receiver.data)
            assert got
    finally:
        sender.close()
        receiver.close()


def test_redis_stopped_mid_burst_then_the_directory_matches_the_sessions(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    nodes = ("n1", "n2", "n3")
    sessions = [Raw(cluster[nodes[i % 3]], CHURN_USERS[i], f"b{i}") for i in range(6)]
    stop = threading.Event()
    logins: list[Raw] = []
    errors: list[str] = []
    attempts = [0]

    def burst() -> None:
        i = 0
        while not stop.is_set():
            src = sessions[i % 6]
            with contextlib.suppress(OSError):
                src.send(message(f"{CHURN_USERS[(i + 1) % 6]}@localhost/b{(i + 1) % 6}", f"x{i}"))
            i += 1
            time.sleep(0.002)

    def login_loop() -> None:
        """Logins and logouts; the first two of each account stay."""
        i = 0
        while not stop.is_set():
            try:
                session = Raw(cluster[nodes[i % 3]], CHURN_USERS[6 + i % 6], f"l{i}")
            except Exception as exc:  # a login during the outage may fail cleanly
                errors.append(repr(exc))
            else:
                if i < 12:
                    logins.append(session)
                else:
                    session.close()
            i += 1
            attempts[0] = i

    threads = [threading.Thread(target=burst), threading.Thread(target=login_loop)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        since = {node: len(cluster[node].log_text()) for node in nodes}
        cluster.redis.stop()
        time.sleep(1.5)
        cluster.redis.start()
        for node in nodes:
            cluster[node].wait_for_log("reachable again", since=since[node], timeout=10)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    time.sleep(1.5)
    try:
        # every open session is claimed by its node in Redis, and nothing else is
        everyone = [*sessions, *logins]

        def matches() -> None:
            for user in CHURN_USERS[:12]:
                bare = f"{user}@localhost"
                expected = {
                    s.jid.split("/", 1)[1]: s.node
                    for s in everyone
                    if s.open and s.jid.startswith(bare + "/")
                }
                held = {r: v.split("|")[0] for r, v in claims(store, bare).items()}
                assert held == expected, (bare, held, expected)

        settle(matches, timeout=6)
        print(
            f"\nredis stopped mid-burst: {attempts[0]} logins, {len(errors)} failed: {errors[:3]}"
        )
    finally:
        for session in [*sessions, *logins]:
            session.abort()
    settle(no_claims(store, *(f"{u}@localhost" for u in CHURN_USERS[:12])))


def test_a_node_restarted_just_after_redis_returned_is_noticed(
    cluster: LocalCluster, store: redis.Redis
) -> None:
    """The grace after Redis returns is for heartbeats that could not be written; a
    new boot id under a known name is proof of a restart, and must not be missed."""
    n1, n2 = cluster["n1"], cluster["n2"]
    watcher = Raw(n1, "watch3", "w")
    subscribe(watcher, Raw(n2, "mover3", "m", presence=True))
    try:
        with cut_off(cluster, store):
            pass
        since = len(n1.log_text())
        n2.kill()
        n2.start()
        n1.wait_for_log("node n2 restarted", since=since, timeout=TIMEOUT + 2)
        watcher.wait(unavailable("mover3@localhost/m"), timeout=2)
    finally:
        watcher.close()


def test_the_release_of_an_old_session_keeps_a_newer_sessions_snapshot(
    store: redis.Redis,
) -> None:
    """The release script run as the directory runs it, on this module's Redis under a
    prefix of its own: session '...5' of u/r was replaced on the same node by '...57'
    (sids are the boot id and a counter), and the release of '...5' arrives after."""
    from chatgate.cluster.directory import _RELEASE

    res, snapshot, field = "attack-test:res:u@localhost", "attack-test:sessions:n9", "u@localhost/r"
    store.delete(res, snapshot)
    store.hset(res, "r", "n9|b00t57")
    store.hset(snapshot, field, json.dumps(["b00t57", True, 0, None, False]))
    store.eval(
        _RELEASE,
        3,
        res,
        snapshot,
        "attack-test:nodes",
        "r",
        "b00t5",
        "u@localhost",
        "attack-test:events:",
        "n9",
    )
    try:
        assert store.hget(res, "r") == b"n9|b00t57"
        assert store.hget(snapshot, field) is not None, "the newer session left the snapshot"
    finally:
        store.delete(res, snapshot)


def test_no_node_logged_a_traceback(cluster: LocalCluster) -> None:
    for name, text in cluster.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
