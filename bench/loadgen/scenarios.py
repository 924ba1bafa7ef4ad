"""The scenarios, run inside the generator process against one started server.

Each returns a dict of figures plus the measurement window (server and generator CPU, RSS). The
orchestrator (`bench.run`) decides parameters and repetitions; this module only drives load.

Accounts: user n is `u<n>`/`pw<n>`. The top `fanout_block` accounts are the fan-out roster
(contacts, then the broadcaster last) and are used by no other scenario, so their roster entries
never weigh on the login figures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench import accounts, procs
from bench.loadgen.bosh import BoshClient
from bench.loadgen.measure import Window, latency_summary
from bench.loadgen.scram import ScramCache, ScramClient
from bench.loadgen.websocket import WsClient
from bench.loadgen.xmpp import (
    DOMAIN,
    SASL_NS,
    STREAM_HEADER,
    Client,
    Connection,
    XmppError,
    text_of,
)

AnyClient = Client | BoshClient | WsClient

LOGIN_TIMEOUT = 15.0
#: a web endpoint must complete one login within this before a scenario is measured on it
PROBE_TIMEOUT = 10.0
BODY_RE = re.compile(rb"<body>(\d+)</body>")
MESSAGE_END = b"</message>"
FANOUT_MARK = b">fanout<"
SUBSCRIBE_RE = re.compile(rb"<presence\b[^>]*>")
FROM_RE = re.compile(rb"""from=['"]([^'"/]+)""")
TYPE_SUBSCRIBE_RE = re.compile(rb"""type=['"]subscribe['"]""")


def marker_counter(mark: bytes, counted: Callable[[int], None]) -> Callable[[bytes], None]:
    """A connection's sink that counts `mark` in what it receives, a mark split across
    two reads included, and calls `counted(k)` for each read holding k of them."""
    tail = [b""]

    def count(data: bytes) -> None:
        if tail[0]:
            data = tail[0] + data
        k = data.count(mark)
        tail[0] = data[-(len(mark) - 1) :]
        if k:
            counted(k)

    return count


def _discard(_: bytes) -> None:
    return None


class Runner:
    """Shared state for one generator process: loop, client, accounts, server PID."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: AnyClient,
        server_pid: int,
        users: int,
        fanout_block: int,
    ) -> None:
        self.loop = loop
        self.client = client
        self.server_pid = server_pid
        self.users = users
        self.fanout_block = fanout_block
        self.pool = max(1, users - fanout_block)  # accounts for login, throughput, idle
        self._resource = itertools.count()
        self.errors: list[str] = []
        self.error_count = 0

    # helpers
    def note_error(self, e: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < 5:
            self.errors.append(f"{type(e).__name__}: {e}"[:300])

    async def probe(self, url: str) -> None:
        """One login and termination, bounded: a server that does not answer on `url` fails
        the scenario at once with a clear reason instead of after a measured window of errors."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                conn = await self.client.login(accounts.username(0), accounts.password(0), "probe")
                await conn.terminate()
        except (XmppError, OSError, TimeoutError) as e:
            why = f"{type(e).__name__}: {e}" if str(e) else f"no answer in {PROBE_TIMEOUT:.0f} s"
            raise XmppError(f"{url} did not complete a login: {why}") from e

    async def login(self, n: int) -> Connection:
        async with asyncio.timeout(LOGIN_TIMEOUT):
            return await self.client.login(
                accounts.username(n), accounts.password(n), f"r{next(self._resource)}"
            )

    async def login_many(
        self,
        numbers: Iterable[int],
        concurrency: int,
        after: Callable[[int, Connection], Awaitable[None]] | None = None,
    ) -> list[Connection]:
        """Log accounts in with bounded concurrency; fail if any login fails."""
        todo = list(numbers)
        out: list[Connection | None] = [None] * len(todo)
        it = iter(enumerate(todo))

        async def worker() -> None:
            for i, n in it:
                conn = await self.login(n)
                if after is not None:
                    await after(n, conn)
                out[i] = conn

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)))))
        return [c for c in out if c is not None]

    def window(self) -> Window:
        """A measurement window over the server (a subclass may measure several processes)."""
        return Window(self.server_pid)

    def _result(self, **figures: Any) -> dict[str, Any]:
        figures["errors"] = self.error_count
        if self.errors:
            figures["error_samples"] = self.errors
        figures["scram_cache_misses"] = self.client.cache.misses
        if isinstance(self.client, BoshClient):  # totals since the scenario's client was made
            figures["http_requests"] = self.client.pool.requests
            figures["http_connections"] = self.client.pool.opened
        return figures

    # scenarios
    async def login_rate(
        self,
        workers: int,
        warmup: float,
        duration: float,
        max_logins: int | None = None,
        first: int = 0,
    ) -> dict[str, Any]:
        """K workers: connect, (STARTTLS), authenticate, bind, close; logins/s and latency."""
        counter = itertools.count(first)
        pool = self.pool
        latencies: list[int] = []
        state = {"recording": False, "stop": False, "done": 0}
        finished = self.loop.create_future()

        async def worker() -> None:
            while not state["stop"]:
                n = next(counter) % pool
                t0 = time.perf_counter_ns()
                try:
                    conn = await self.login(n)
                except (XmppError, OSError, TimeoutError) as e:
                    self.note_error(e)
                    await asyncio.sleep(0.01)
                    continue
                t1 = time.perf_counter_ns()
                try:
                    await conn.terminate()  # TCP: close at once; BOSH: a terminate request
                except (XmppError, OSError) as e:
                    self.note_error(e)
                if state["recording"]:
                    latencies.append(t1 - t0)
                    state["done"] += 1
                    if max_logins is not None and state["done"] >= max_logins:
                        state["stop"] = True
                        if not finished.done():
                            finished.set_result(None)

        tasks = [self.loop.create_task(worker()) for _ in range(workers)]
        await asyncio.sleep(warmup)
        window = self.window()
        window.start()
        state["recording"] = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(finished), timeout=duration)
        state["recording"] = False
        measured = window.stop()
        state["stop"] = True
        await asyncio.gather(*tasks)
        done = int(state["done"])
        if not done and self.error_count:
            raise XmppError(f"no login succeeded; {self.error_count} failed: {self.errors}")
        return self._result(
            logins=done,
            logins_per_s=round(done / measured["seconds"], 1),
            latency=latency_summary(latencies),
            window=measured,
        )

    async def throughput(
        self, pairs: int, window_size: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        """N sender->receiver pairs, W messages in flight per sender; messages/s, latency."""
        numbers = list(range(2 * pairs))
        conns = await self.login_many((n % self.pool for n in numbers), concurrency=32)
        latencies: list[int] = []
        state = {
            "recording": False,
            "running": True,
            "received": 0,
            "sent_total": 0,
            "received_total": 0,
        }

        class Receiver:
            __slots__ = ("prefix", "sender", "tail")

            def __init__(self, sender: Connection, to: str) -> None:
                self.sender = sender
                ns = sender.STANZA_NS.decode()
                self.prefix = f"<message to='{to}' type='chat'{ns}><body>".encode()
                self.tail = b""

            def __call__(self, data: bytes) -> None:
                if self.tail:
                    data = self.tail + data
                end = data.rfind(MESSAGE_END)
                if end < 0:
                    self.tail = data
                    return
                end += len(MESSAGE_END)
                self.tail = data[end:]
                stamps = BODY_RE.findall(data, 0, end)
                k = len(stamps)
                if not k:
                    return
                now = time.perf_counter_ns()
                state["received_total"] += k
                if state["recording"]:
                    latencies.extend([now - int(s) for s in stamps])
                    state["received"] += k
                if state["running"]:
                    self.send(k, now)

            def send(self, k: int, now: int) -> None:
                state["sent_total"] += k
                self.sender.send_repeated(self.prefix + str(now).encode() + b"</body></message>", k)

        receivers = []
        for i in range(pairs):
            sender, receiver = conns[2 * i], conns[2 * i + 1]
            to = self._jid_of(receiver)
            sender.hand_over(_discard)
            r = Receiver(sender, to)
            receiver.hand_over(r)
            receivers.append(r)
        now = time.perf_counter_ns()
        for r in receivers:
            r.send(window_size, now)
        await asyncio.sleep(warmup)
        win = self.window()
        state["recording"] = True
        win.start()
        await asyncio.sleep(duration)
        measured = win.stop()
        state["recording"] = False
        state["running"] = False
        await asyncio.sleep(0.2)
        for c in conns:
            c.close()
        received = int(state["received"])
        if state["received_total"] > state["sent_total"]:
            # A server that duplicated messages would inflate the figure: refuse it.
            raise XmppError(
                f"received {state['received_total']} messages but sent {state['sent_total']}"
            )
        return self._result(
            pairs=pairs,
            sent_total=state["sent_total"],
            received_total=state["received_total"],
            window_size=window_size,
            messages=received,
            messages_per_s=round(received / measured["seconds"], 1),
            latency=latency_summary(latencies),
            window=measured,
        )

    def _jid_of(self, conn: Connection) -> str:
        if not conn.jid:
            raise XmppError("bind result carried no JID")
        return conn.jid

    async def idle(
        self, levels: list[int], concurrency: int, settle: float, quiet: float = 0.0
    ) -> dict[str, Any]:
        """C authenticated, available, idle sessions; server RSS per session (KiB), read
        after the sessions have been silent for `quiet` seconds."""
        # Warm the server's lazy paths (module loading, first login) before the baseline.
        warm = await self.login_many(range(min(20, self.pool)), concurrency=10)
        for c in warm:
            c.close()
        await asyncio.sleep(settle)
        base = procs.rss_kib(self.server_pid)
        held: list[Connection] = []
        figures = []

        async def available(_: int, conn: Connection) -> None:
            conn.hand_over(_discard)
            conn.write(b"<presence/>")

        win = Window(self.server_pid)
        win.start()
        for level in levels:
            more = level - len(held)
            start = len(held)
            t0 = time.perf_counter()
            held += await self.login_many(
                ((start + i) % self.pool for i in range(more)), concurrency, after=available
            )
            opened = time.perf_counter() - t0
            await asyncio.sleep(quiet)
            rss = await self._settled_rss(settle)
            figures.append(
                {
                    "sessions": level,
                    "server_rss_kib": rss,
                    "kib_per_session": round((rss - base) / level, 2),
                    "open_seconds": round(opened, 2),
                }
            )
        measured = win.stop()
        for c in held:
            c.abort()
        return self._result(baseline_rss_kib=base, levels=figures, window=measured)

    async def _settled_rss(self, settle: float) -> int:
        """RSS once it stops moving by more than 0.5 % between samples (bounded wait)."""
        last = procs.rss_kib(self.server_pid)
        deadline = time.monotonic() + max(settle * 4, 2.0)
        while time.monotonic() < deadline:
            await asyncio.sleep(settle / 2)
            now = procs.rss_kib(self.server_pid)
            if abs(now - last) <= last * 0.005:
                return now
            last = now
        return last

    async def fanout(
        self, contacts: int, window_size: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        """Broadcaster with R subscribed contacts sends presence; deliveries/s to contacts."""
        broadcaster_n, contact_ns = self._fanout_accounts(contacts)
        state = {"delivered": 0, "sent": 0, "running": True}

        def on_marks(k: int) -> None:
            state["delivered"] += k
            pump()

        def make_counter() -> Callable[[bytes], None]:
            return marker_counter(FANOUT_MARK, on_marks)

        async def online(_: int, conn: Connection) -> None:
            conn.hand_over(make_counter())
            conn.write(b"<presence/>")

        holders = await self.login_many(contact_ns, concurrency=32, after=online)
        broadcaster = await self.login(broadcaster_n)
        broadcaster.hand_over(_discard)
        presence = b"<presence><status>fanout</status></presence>"
        limit = window_size * contacts

        def pump() -> None:
            if not state["running"]:
                return
            in_flight = state["sent"] * contacts - state["delivered"]
            n = (limit - in_flight) // contacts
            if n > 0:
                state["sent"] += n
                broadcaster.write(presence * n)

        pump()
        await asyncio.sleep(warmup)
        win = Window(self.server_pid)
        d0 = state["delivered"]
        win.start()
        await asyncio.sleep(duration)
        measured = win.stop()
        delivered = state["delivered"] - d0
        state["running"] = False
        await asyncio.sleep(0.2)
        for c in [*holders, broadcaster]:
            c.close()
        return self._result(
            contacts=contacts,
            window_size=window_size,
            deliveries=delivered,
            deliveries_per_s=round(delivered / measured["seconds"], 1),
            window=measured,
        )

    def _fanout_accounts(self, contacts: int) -> tuple[int, list[int]]:
        if contacts + 1 > self.fanout_block:
            raise ValueError(f"fan-out of {contacts} needs a block of {contacts + 1} accounts")
        broadcaster = self.users - 1
        return broadcaster, list(range(broadcaster - contacts, broadcaster))

    async def soak(
        self,
        pairs: int,
        window_size: int,
        warmup: float,
        duration: float,
        logins: int,
        workers: int,
        login_time_cap: float,
    ) -> dict[str, Any]:
        """messages/s fresh, then many logins on the same process, then messages/s again."""
        fresh = await self.throughput(pairs, window_size, warmup, duration)
        churn = await self.login_rate(
            workers, warmup=0.0, duration=login_time_cap, max_logins=logins, first=2 * pairs
        )
        after = await self.throughput(pairs, window_size, warmup, duration)
        ratio = after["messages_per_s"] / fresh["messages_per_s"] if fresh["messages_per_s"] else 0
        return self._result(
            fresh_messages_per_s=fresh["messages_per_s"],
            logins=churn["logins"],
            logins_per_s=churn["logins_per_s"],
            after_messages_per_s=after["messages_per_s"],
            after_over_fresh=round(ratio, 3),
            phases={"fresh": fresh, "logins": churn, "after": after},
            window=after["window"],
        )

    # provisioning (not measured)
    async def provision_rosters(self, contacts: int) -> dict[str, Any]:
        """Make every fan-out contact subscribed to the broadcaster, over XMPP (RFC 6121 3.1)."""
        broadcaster_n, contact_ns = self._fanout_accounts(contacts)
        broadcaster = await self.login(broadcaster_n)
        bare = f"{accounts.username(broadcaster_n)}@{DOMAIN}"
        approved = 0
        buf = [b""]

        def approve(data: bytes) -> None:
            nonlocal approved
            data = buf[0] + data
            cut = data.rfind(b">") + 1
            buf[0] = data[cut:]
            out = []
            for tag in SUBSCRIBE_RE.findall(data, 0, cut):
                if TYPE_SUBSCRIBE_RE.search(tag):
                    m = FROM_RE.search(tag)
                    if m:
                        out.append(b"<presence type='subscribed' to='" + m.group(1) + b"'/>")
            if out:
                approved += len(out)
                broadcaster.write(b"".join(out))

        broadcaster.write(b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        await broadcaster.expect(b"iq")
        broadcaster.hand_over(approve)
        broadcaster.write(b"<presence/>")

        async def subscribe(_: int, conn: Connection) -> None:
            conn.write(b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
            await conn.expect(b"iq")
            conn.write(b"<presence/>")
            conn.write(f"<presence to='{bare}' type='subscribe'/>".encode())
            while True:
                _, el = await conn.expect(b"presence")
                if b"subscribed" in el[: el.find(b">")]:
                    break
            conn.close()

        async with asyncio.timeout(300):
            await self.login_many(contact_ns, concurrency=32, after=subscribe)
        broadcaster.close()
        return self._result(contacts=contacts, approved=approved)

    async def warm_accounts(self, concurrency: int) -> dict[str, Any]:
        """Log every account in once over SCRAM-SHA-1, filling the generator's key cache.

        For servers that choose their own salts (chatgate's `user import`): the PBKDF2 of each
        account is computed here, once, on every core (a process pool), instead of inside a
        measured window. Each login runs to <success/> and is checked, so this also proves that
        every account works; a server's brute-force counters see only successes.
        """
        cache: ScramCache = self.client.cache
        loop = self.loop
        computed = 0

        async def warm(pool: ProcessPoolExecutor, n: int) -> None:
            nonlocal computed
            _, conn = await loop.create_connection(
                lambda: Connection(loop), self.client.opts.host, self.client.opts.port
            )
            try:
                user, pw = accounts.username(n), accounts.password(n)
                conn.write(STREAM_HEADER)
                await conn.expect(b"stream:features")
                sc = ScramClient(cache, user, pw)
                conn.write(
                    f"<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-1'>".encode()
                    + base64.b64encode(sc.first())
                    + b"</auth>"
                )
                name, el = await conn.expect(b"challenge", b"failure")
                if name != b"challenge":
                    raise XmppError(f"SCRAM refused for {user}: {el!r}")
                server_first = base64.b64decode(text_of(el))
                attrs = dict(p.split(b"=", 1) for p in server_first.split(b",") if b"=" in p)
                salt, iterations = base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
                if not cache.has(user, salt, iterations):
                    salted = await loop.run_in_executor(pool, _pbkdf2, (user, pw, salt, iterations))
                    cache.add(user, salt, iterations, salted)
                    computed += 1
                conn.write(
                    f"<response xmlns='{SASL_NS}'>".encode()
                    + base64.b64encode(sc.final(server_first))
                    + b"</response>"
                )
                name, el = await conn.expect(b"success", b"failure")
                if name != b"success":
                    raise XmppError(f"authentication failed for {user}: {el!r}")
                sc.verify(base64.b64decode(text_of(el)))
                conn.close()
            except BaseException:
                conn.abort()
                raise

        it = iter(range(self.users))

        async def worker(pool: ProcessPoolExecutor) -> None:
            for n in it:
                await warm(pool, n)

        with ProcessPoolExecutor() as pool:
            await asyncio.gather(*(worker(pool) for _ in range(concurrency)))
        cache.save_learned()
        return self._result(logged_in=self.users, computed=computed)


def _pbkdf2(row: tuple[str, str, bytes, int]) -> bytes:
    _, pw, salt, iterations = row
    return hashlib.pbkdf2_hmac("sha1", pw.encode(), salt, iterations)
