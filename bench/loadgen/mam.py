"""The message archive scenario (issue 15): XEP-0313 pages of 50 from one account's
archive of N messages, one query in flight, with a real client.

Two generator tasks, run against a chatgate whose archive is on (bench/mam.py starts it):

- `mam_provision`: user 0 sends N chat messages to user 1, who is online, so the server
  archives each twice (the sender's and the recipient's archive, docs/mam.md), at most
  `window_size` undelivered at a time.  After every `chunk` messages a count query
  (RSM `<max>0</max>`, XEP-0059 §2.7) on user 1's archive is a barrier: the server answers
  it once the rows queued before it are written, so the archive writer's bounded queue never
  holds more than two chunks' rows and no message is dropped from the archive unseen.
  The last count must be exactly N.
- `mam`: user 1 logs in to the provisioned archive on a freshly started server, checks the
  count, collects every id paging forward with the largest page the server allows (not
  measured), then measures two kinds of page of 50:

  * ``newest``: the newest page (RSM empty `<before/>`), then `<before>` the first id of
    the previous page, back through the archive (and from the newest again at its start):
    a client scrolling back through a conversation;
  * ``random``: `<after>` an id drawn at random from the whole archive: a client catching up
    from where it was, anywhere in the history.

  Latency is from writing the query IQ to reading the end of its result IQ (the `<fin/>`);
  every page is checked against the collected ids (the 50 results, in order, exactly those
  expected), so a wrong or short page fails the scenario instead of looking fast.

The client parses nothing but what it needs: the `id` attributes of `<result>` elements of
its own `queryid`, and the end of the IQ answer whose `id` it sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.loadgen.measure import latency_summary
from bench.loadgen.xmpp import Connection, XmppError

if TYPE_CHECKING:
    from bench.loadgen.scenarios import Runner

MAM_NS = "urn:xmpp:mam:2"
RSM_NS = "http://jabber.org/protocol/rsm"
#: the accounts: user 0 sends, user 1 owns the measured archive
SENDER = 0
OWNER = 1
QUERY_TIMEOUT = 60.0
#: what user 1 counts in its stream while it is filled (text content, passed through as is)
BODY_MARK = b">mamb "
RESULT_RE = re.compile(rb"<result\b[^>]*>")
ATTR_RE = re.compile(rb"""\b(id|queryid)=(?:'([^']*)'|"([^"]*)")""")
COMPLETE_RE = re.compile(rb"""\bcomplete=['"]true['"]""")
COUNT_RE = re.compile(rb"<count>(\d+)</count>")
#: one sentence of ordinary chat length; every message differs by its number
FILLER = "see you at the station at half past, bring the tickets and the blue umbrella"


def _schedstat_paths(pid: int) -> list[str]:
    """Every thread's /proc schedstat of `pid` (chatgate's event loop and its database
    thread; the generator's loop)."""
    try:
        return [f"/proc/{pid}/task/{t}/schedstat" for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _run_delay_ns(paths: list[str]) -> int:
    """Time the threads spent runnable but waiting for a core (the second schedstat
    field; 0 where the kernel keeps no such statistics)."""
    total = 0
    for path in paths:
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


class CoreWaits:
    """How long the server's and the generator's threads waited for a core: on a shared
    machine that, not the server, is what a page's tail latency can be made of.  It also
    counts the server's own threads waiting for each other on its one core, so a page
    less its waits is a lower bound of what the server itself took."""

    def __init__(self, server_pid: int) -> None:
        self.server = _schedstat_paths(server_pid)
        self.generator = _schedstat_paths(os.getpid())

    def read(self) -> tuple[int, int]:
        return _run_delay_ns(self.server), _run_delay_ns(self.generator)


@dataclass(slots=True)
class Page:
    ids: list[str]
    complete: bool
    count: int | None
    latency_ns: int


def _attrs(tag: bytes) -> dict[bytes, bytes]:
    return {m.group(1): m.group(2) or m.group(3) or b"" for m in ATTR_RE.finditer(tag)}


class ArchiveClient:
    """One connection asking XEP-0313 queries one at a time; everything else it reads
    (messages arriving while the archive is filled) goes to `on_other`, a byte counter."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.buf = b""
        self.seq = 0
        self.waiting: tuple[bytes, bytes, asyncio.Future[bytes]] | None = None
        self.marks = 0  # BODY_MARK seen outside answers (live messages)
        self._tail = b""
        self._moved = asyncio.Event()
        conn.hand_over(self.feed)

    def feed(self, data: bytes) -> None:
        scan = self._tail + data
        seen = scan.count(BODY_MARK)
        self._tail = scan[-(len(BODY_MARK) - 1) :]
        if seen:
            self.marks += seen
            self._moved.set()
        if self.waiting is None:
            return  # nothing asked: live messages only, counted above
        self.buf += data
        iq_id, _qid, fut = self.waiting
        # The answer ends with the IQ whose id we sent: <iq ... id='q7' ...>...</iq>.
        start = 0
        while True:
            i = self.buf.find(b"<iq", start)
            if i < 0:
                return
            gt = self.buf.find(b">", i)
            if gt < 0:
                return
            tag = self.buf[i : gt + 1]
            if _attrs(tag).get(b"id") != iq_id:
                start = gt + 1
                continue
            end = gt + 1 if tag.endswith(b"/>") else self.buf.find(b"</iq>", gt)
            if end < 0:
                return
            end = end if tag.endswith(b"/>") else end + len(b"</iq>")
            answer, self.buf = self.buf[:end], self.buf[end:]
            self.waiting = None
            if not fut.done():
                fut.set_result(answer)
            return

    async def query(
        self,
        page_max: int,
        *,
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        """One query on the own archive; `before=""` asks the newest page."""
        if self.waiting is not None:
            raise RuntimeError("one query at a time")
        self.seq += 1
        iq_id = f"q{self.seq}".encode()
        qid = f"m{self.seq}".encode()
        rsm = f"<max>{page_max}</max>"
        if after is not None:
            rsm += f"<after>{after}</after>"
        if before is not None:
            rsm += f"<before>{before}</before>" if before else "<before/>"
        stanza = (
            f"<iq type='set' id='{iq_id.decode()}'><query xmlns='{MAM_NS}' "
            f"queryid='{qid.decode()}'><set xmlns='{RSM_NS}'>{rsm}</set></query></iq>"
        ).encode()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.waiting = (iq_id, qid, fut)
        t0 = time.perf_counter_ns()
        self.conn.write(stanza)
        async with asyncio.timeout(QUERY_TIMEOUT):
            answer = await fut
        latency = time.perf_counter_ns() - t0
        head = answer[answer.rfind(b"<iq") :]
        if b"type='error'" in head[:200] or b'type="error"' in head[:200]:
            raise XmppError(f"query refused: {head[:400]!r}")
        if b"<fin" not in head:
            raise XmppError(f"answer without <fin/>: {head[:400]!r}")
        ids = []
        for m in RESULT_RE.finditer(answer):
            a = _attrs(m.group(0))
            if a.get(b"queryid") == qid and b"id" in a:
                ids.append(a[b"id"].decode())
        fin = head[head.find(b"<fin") :]
        count = COUNT_RE.search(fin)
        return Page(
            ids=ids,
            complete=COMPLETE_RE.search(fin[: fin.find(b">") + 1]) is not None,
            count=int(count.group(1)) if count else None,
            latency_ns=latency,
        )

    async def wait_marks(self, n: int) -> None:
        """Until `n` live messages have arrived (bounded: messages that stop coming fail)."""
        async with asyncio.timeout(QUERY_TIMEOUT):
            while self.marks < n:
                self._moved.clear()
                await self._moved.wait()

    async def count(self) -> int:
        page = await self.query(0)
        if page.count is None:
            raise XmppError("a <max>0</max> query answered no <count/>")
        return page.count


async def mam_provision(
    runner: Runner, messages: int, window_size: int, chunk: int
) -> dict[str, Any]:
    """User 0 sends `messages` chat messages to user 1 (online), `window_size` undelivered at
    most; a count query on user 1's archive after every `chunk`; its archive must end with
    exactly `messages` (more than that were there before: refused, the archive is not fresh)."""
    sender = await runner.login(SENDER)
    owner_conn = await runner.login(OWNER)
    to = runner._jid_of(owner_conn).split("/")[0]
    sender.hand_over(lambda _data: None)
    owner = ArchiveClient(owner_conn)
    # Available (RFC 6121 §4.2): a message to the bare JID goes to this session, not to
    # offline storage.
    owner_conn.write(b"<presence/>")
    already = await owner.count()
    if already:
        raise XmppError(f"user 1's archive already holds {already} messages")
    t0 = time.perf_counter()
    sent = 0
    counts = []
    while sent < messages:
        target = min(messages, sent + chunk)
        while sent < target:
            n = min(window_size - (sent - owner.marks), target - sent)
            if n <= 0:
                await owner.wait_marks(owner.marks + 1)
                continue
            sender.write(b"".join(_chat(to, k) for k in range(sent, sent + n)))
            sent += n
        await owner.wait_marks(target)
        counts.append(await owner.count())
    seconds = time.perf_counter() - t0
    final = counts[-1] if counts else 0
    delivered = owner.marks
    sender.close()
    owner_conn.close()
    if delivered != messages:
        raise XmppError(f"user 1 received {delivered} of {messages} messages")
    if final != messages:
        raise XmppError(
            f"user 1's archive holds {final} of {messages} messages "
            "(the archive writer dropped some: see the server log)"
        )
    return runner._result(
        messages=messages,
        archived=final,
        seconds=round(seconds, 2),
        messages_per_s=round(messages / seconds, 1),
        chunk=chunk,
        window_size=window_size,
    )


def _chat(to: str, k: int) -> bytes:
    return (
        f"<message to='{to}' type='chat' id='b{k}'><body>mamb {k} {FILLER}</body></message>"
    ).encode()


async def collect_ids(client: ArchiveClient, page_max: int) -> list[str]:
    """Every id of the archive, oldest first, paging forward with `page_max`."""
    ids: list[str] = []
    after: str | None = None
    while True:
        page = await client.query(page_max, after=after)
        ids += page.ids
        if page.complete or not page.ids:
            return ids
        after = page.ids[-1]


async def mam_pages(
    runner: Runner,
    messages: int,
    page: int,
    min_queries: int,
    warmup: float,
    duration: float,
    collect_page: int = 250,
    seed: int = 15,
) -> dict[str, Any]:
    """User 1's archive of `messages`: pages of `page`, newest-backwards and after random
    ids; each figure runs `duration` seconds and at least `min_queries` queries."""
    conn = await runner.login(OWNER)
    client = ArchiveClient(conn)
    held = await client.count()
    if held != messages:
        raise XmppError(f"the archive holds {held} messages, {messages} expected")
    t0 = time.perf_counter()
    ids = await collect_ids(client, collect_page)
    collected_s = time.perf_counter() - t0
    if len(ids) != messages or len(set(ids)) != messages:
        raise XmppError(f"paging forward gave {len(ids)} ids ({len(set(ids))} distinct)")
    position = {archive_id: i for i, archive_id in enumerate(ids)}
    rng = random.Random(seed)

    def check(got: list[str], first: int) -> None:
        want = ids[first : first + page]
        if got != want:
            raise XmppError(
                f"page at {first} wrong: {len(got)} ids, "
                f"{'in order' if got == sorted(got, key=position.__getitem__) else 'out of order'}"
            )

    state = {"before": ""}  # newest-backwards cursor: "" is the newest page

    async def newest() -> int:
        before = state["before"]
        p = await client.query(page, before=before)
        end = len(ids) if not before else position[before]
        check(p.ids, max(0, end - page))
        state["before"] = "" if p.complete or end <= page else p.ids[0]
        return p.latency_ns

    async def after_random() -> int:
        i = rng.randrange(0, max(1, len(ids) - page))
        p = await client.query(page, after=ids[i])
        check(p.ids, i + 1)
        return p.latency_ns

    figures: dict[str, Any] = {}
    every: list[int] = []
    every_less_waits: list[int] = []
    for name, ask in (("newest", newest), ("random", after_random)):
        stop_at = time.perf_counter() + warmup
        while time.perf_counter() < stop_at:
            await ask()
        latencies: list[int] = []
        less_waits: list[int] = []
        waits = CoreWaits(runner.server_pid)
        first = waits.read()
        win = runner.window()
        win.start()
        started = time.perf_counter()
        while time.perf_counter() - started < duration or len(latencies) < min_queries:
            s0, g0 = waits.read()
            latency = await ask()
            s1, g1 = waits.read()
            latencies.append(latency)
            less_waits.append(max(0, latency - (s1 - s0) - (g1 - g0)))
        measured = win.stop()
        last = waits.read()
        wall_ns = measured["seconds"] * 1e9
        measured["server_wait_pct"] = round(100 * (last[0] - first[0]) / wall_ns, 1)
        measured["generator_wait_pct"] = round(100 * (last[1] - first[1]) / wall_ns, 1)
        every += latencies
        every_less_waits += less_waits
        cpu_ms = 10 * measured["server_cpu_pct"] * measured["seconds"] / len(latencies)
        summary = latency_summary(latencies)
        measured["bound"] = _bound(measured, cpu_ms, summary["p50_ms"])
        figures[name] = {
            "queries": len(latencies),
            "queries_per_s": round(len(latencies) / measured["seconds"], 1),
            # the server's CPU (every thread) per page: with one query in flight, how much
            # of a page's latency is the server working
            "server_cpu_ms_per_page": round(cpu_ms, 3),
            "latency": summary,
            "latency_less_core_waits": latency_summary(less_waits),
            "window": measured,
        }
    conn.close()
    return runner._result(
        messages=messages,
        page=page,
        collect_seconds=round(collected_s, 2),
        figures=figures,
        latency=latency_summary(every),
        latency_less_core_waits=latency_summary(every_less_waits),
    )


#: share of a window the server's or the generator's threads waited for a core, and
#: share of a core the machine's other processes used, above which the machine, not the
#: server, bounded a figure
WAITED = 10.0
OTHERS = 25.0


def _bound(window: dict[str, Any], cpu_ms: float, p50_ms: float) -> str:
    """What limited a figure of one query in flight: the machine when the processes waited
    for a core a noticeable part of the window while other processes were busy; else the
    server's CPU when it works most of a page's time (its CPU per page at least 80 % of
    the median page); else the round trip itself.  (The server's two threads, its event
    loop and its database thread, share its one core: some waiting is theirs even on a
    quiet machine.)"""
    waited = window["server_wait_pct"] + window["generator_wait_pct"]
    if waited >= WAITED and window["other_cpu_pct"] >= OTHERS:
        return "machine: waited for a core"
    if window["server_cpu_pct"] >= 90 or cpu_ms >= 0.8 * p50_ms:
        return "server CPU per page"
    return "latency: one query in flight"
