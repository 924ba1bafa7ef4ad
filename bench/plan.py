"""What a run measures: sizes and durations per mode, the scenarios and the figures they yield.

Pure data and small functions; no processes, no I/O. `bench.run` executes a plan, `bench.report`
renders its figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    users: int
    repetitions: int
    login_workers: int = 50
    warmup: float = 0.5
    duration: float = 2.0
    pairs: int = 50
    window: int = 20
    latency_duration: float = 2.0
    idle_levels: tuple[int, ...] = (1000, 5000, 10000)
    idle_concurrency: int = 100
    idle_settle: float = 0.5
    #: seconds the sessions stay silent before RSS is read: an idle session is one
    #: that has been idle a while (servers may reclaim per-connection buffers of
    #: silent connections; chatgate frees its XML parser after 2-4 s)
    idle_quiet: float = 4.5
    fanout_contacts: int = 500
    fanout_window: int = 5
    #: the group chat scenario (issue 15): occupants of one room, groupchat messages
    #: in flight
    muc_occupants: int = 100
    muc_window: int = 5
    soak_logins: int = 50_000
    #: the login phase stops here even short of `soak_logins` (Prosody needs ~100 s
    #: for 50,000; the run must stay under 15 minutes)
    soak_time_cap: float = 35.0
    fresh_start_each: bool = True  # False: short scenarios share one start per repetition
    #: the stream authority's hooks (issue 12): C connections in a closed loop, a warm-up and
    #: a window per figure, each figure stopped at this many requests (the live registry
    #: holds 100,000 viewers); "nginx" sends nginx-rtmp's exact HTTP/1.0 requests, one
    #: connection each, "keepalive" HTTP/1.1 on kept connections
    authority_connections: int = 32
    authority_warmup: float = 0.5
    authority_duration: float = 5.0
    authority_max_requests: int = 80_000
    authority_wire: str = "keepalive"
    #: repetitions that also run the cluster scenario (its three set-ups take ~20 s),
    #: None: every one
    cluster_repetitions: int | None = None
    #: messages in flight per pair in the cluster scenario: enough to keep two workers'
    #: cores busy even across workers, whose extra hop (one loop turn and a Redis round
    #: trip) makes `window` (20) latency-bound, so that figure would measure the window
    #: rather than what a worker can carry; the latencies are reported beside it
    cluster_window: int = 80
    #: the message archive scenario (issue 15, bench/mam.py): messages in the measured
    #: account's archive, the page size (RSM max) and at least this many queries per
    #: figure (each figure runs `duration` seconds, longer until it has them)
    mam_messages: int = 100_000
    mam_page: int = 50
    mam_queries: int = 300
    #: filling the archive: messages undelivered at most, and a count query (a barrier
    #: that waits for the archive writer) after every chunk
    mam_fill_window: int = 100
    mam_fill_chunk: int = 2_000

    @property
    def fanout_block(self) -> int:
        return self.fanout_contacts + 1


PLANS: dict[str, Plan] = {
    "full": Plan(mode="full", users=20_000, repetitions=3),
    "quick": Plan(
        mode="quick",
        users=2_000,
        repetitions=3,
        warmup=0.2,
        duration=0.6,
        latency_duration=0.6,
        idle_levels=(500,),
        idle_settle=0.3,
        fanout_contacts=100,
        soak_logins=1_000,
        soak_time_cap=3.0,
        fresh_start_each=False,
        authority_warmup=0.2,
        authority_duration=1.0,
        cluster_repetitions=1,
        mam_messages=20_000,
    ),
    "tiny": Plan(
        mode="tiny",
        users=300,
        repetitions=1,
        login_workers=4,
        warmup=0.2,
        duration=0.5,
        pairs=4,
        window=4,
        cluster_window=4,
        latency_duration=0.5,
        idle_levels=(200,),
        idle_concurrency=20,
        idle_settle=0.2,
        idle_quiet=0.5,
        fanout_contacts=10,
        fanout_window=2,
        muc_occupants=10,
        muc_window=2,
        soak_logins=100,
        soak_time_cap=10.0,
        fresh_start_each=False,
        authority_connections=8,
        authority_warmup=0.1,
        authority_duration=0.3,
        mam_messages=500,
        mam_queries=30,
        mam_fill_chunk=200,
    ),
}


def plan_for(mode: str, repetitions: int | None = None, users: int | None = None) -> Plan:
    plan = PLANS[mode]
    if repetitions is not None:
        plan = replace(plan, repetitions=repetitions)
    if users is not None:
        plan = replace(plan, users=users)
    return plan


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


Figures = dict[str, tuple[float, dict[str, Any]]]  # metric key -> (value, measurement window)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    task: str
    starttls: bool
    describe: str
    params: Callable[[Plan], dict[str, Any]]
    figures: Callable[[Plan, dict[str, Any]], Figures]
    metrics: Callable[[Plan], list[Metric]] = field(default=lambda p: [])
    #: how the generator reaches the server: "tcp" (the c2s port), or "bosh" / "websocket"
    #: on the peer's plain-HTTP port (issue 11)
    transport: str = "tcp"
    #: the servers it is run against (None: every one); others have no such thing
    servers: tuple[str, ...] | None = None

    def runs_on(self, server: str) -> bool:
        return self.servers is None or server in self.servers


def _login_params(p: Plan) -> dict[str, Any]:
    return {"workers": p.login_workers, "warmup": p.warmup, "duration": p.duration}


def _login_figures(suffix: str) -> Callable[[Plan, dict[str, Any]], Figures]:
    def figures(_: Plan, r: dict[str, Any]) -> Figures:
        w = r["window"]
        return {
            f"logins_per_s{suffix}": (r["logins_per_s"], w),
            f"login_p50_ms{suffix}": (r["latency"]["p50_ms"], w),
            f"login_p99_ms{suffix}": (r["latency"]["p99_ms"], w),
        }

    return figures


def _login_metrics(suffix: str, how: str) -> Callable[[Plan], list[Metric]]:
    def metrics(p: Plan) -> list[Metric]:
        k = p.login_workers
        return [
            Metric(f"logins_per_s{suffix}", f"logins/s, {how} (K={k})", "1/s", True),
            Metric(f"login_p50_ms{suffix}", f"login latency p50, {how} (K={k})", "ms", False),
            Metric(f"login_p99_ms{suffix}", f"login latency p99, {how} (K={k})", "ms", False),
        ]

    return metrics


def _throughput_params(p: Plan) -> dict[str, Any]:
    return {"pairs": p.pairs, "window_size": p.window, "warmup": p.warmup, "duration": p.duration}


def _throughput_figures(suffix: str) -> Callable[[Plan, dict[str, Any]], Figures]:
    def figures(_: Plan, r: dict[str, Any]) -> Figures:
        w = r["window"]
        return {
            f"messages_per_s{suffix}": (r["messages_per_s"], w),
            f"loaded_p50_ms{suffix}": (r["latency"]["p50_ms"], w),
            f"loaded_p99_ms{suffix}": (r["latency"]["p99_ms"], w),
        }

    return figures


def _throughput_metrics(suffix: str, how: str) -> Callable[[Plan], list[Metric]]:
    def metrics(p: Plan) -> list[Metric]:
        shape = f"{p.pairs} pairs, W={p.window}"
        return [
            Metric(f"messages_per_s{suffix}", f"messages/s, {how} ({shape})", "1/s", True),
            Metric(f"loaded_p50_ms{suffix}", f"one-way latency p50 under load, {how}", "ms", False),
            Metric(f"loaded_p99_ms{suffix}", f"one-way latency p99 under load, {how}", "ms", False),
        ]

    return metrics


def _latency_figures(_: Plan, r: dict[str, Any]) -> Figures:
    w = r["window"]
    return {
        "latency_p50_ms": (r["latency"]["p50_ms"], w),
        "latency_p99_ms": (r["latency"]["p99_ms"], w),
    }


def _idle_figures(_: Plan, r: dict[str, Any]) -> Figures:
    w = dict(r["window"], bound="memory")
    return {f"idle_kib_{lv['sessions']}": (lv["kib_per_session"], w) for lv in r["levels"]}


def _idle_metrics(p: Plan) -> list[Metric]:
    return [
        Metric(f"idle_kib_{c}", f"KiB per idle session at {c:,}", "KiB", False)
        for c in p.idle_levels
    ]


def _soak_figures(_: Plan, r: dict[str, Any]) -> Figures:
    fresh = r["phases"]["fresh"]
    churn = r["phases"]["logins"]
    after = r["phases"]["after"]
    return {
        # The fresh phase is exactly the throughput scenario on a freshly started server.
        "messages_per_s": (fresh["messages_per_s"], fresh["window"]),
        "loaded_p50_ms": (fresh["latency"]["p50_ms"], fresh["window"]),
        "loaded_p99_ms": (fresh["latency"]["p99_ms"], fresh["window"]),
        "soak_logins": (churn["logins"], churn["window"]),
        "soak_after_messages_per_s": (after["messages_per_s"], after["window"]),
        "soak_after_over_fresh": (r["after_over_fresh"], after["window"]),
    }


def _soak_metrics(p: Plan) -> list[Metric]:
    return [
        Metric("soak_logins", "logins done between the two phases", "", True),
        Metric(
            "soak_after_messages_per_s", f"messages/s after {p.soak_logins:,} logins", "1/s", True
        ),
        Metric("soak_after_over_fresh", "messages/s after logins ÷ fresh", "x", True),
    ]


#: the authority scenario's figures: generator name -> label
AUTHORITY_FIGURES = {
    "token": "token",
    "stream_key": "stream-key",
    "password_cold": "password, cold",
    "password_warm": "password, warm",
    "token_per_connection": "token, a connection per request (nginx-rtmp's wire)",
    "stream_key_per_connection": "stream-key, a connection per request (nginx-rtmp's wire)",
}


def _authority_params(p: Plan) -> dict[str, Any]:
    return {
        "connections": p.authority_connections,
        "warmup": p.authority_warmup,
        "duration": p.authority_duration,
        "max_requests": p.authority_max_requests,
        "wire": p.authority_wire,
    }


def _authority_errors(figure: dict[str, Any]) -> int:
    return int(figure.get("errors", 0)) + int(figure.get("cleanup", {}).get("errors", 0))


def _authority_figures(_: Plan, r: dict[str, Any]) -> Figures:
    """Decisions/s and p99 per credential kind; a wrong answer anywhere fails the scenario
    (a bench whose answers are wrong measures nothing), an unavailable figure is left out."""
    wrong = {name: f for name, f in r["figures"].items() if _authority_errors(f)}
    if wrong:
        raise RuntimeError(
            "wrong or missing answers: "
            + "; ".join(
                f"{name}: {_authority_errors(f)} "
                f"{(f.get('error_samples') or f.get('cleanup', {}).get('error_samples'))}"
                for name, f in wrong.items()
            )
        )
    out: Figures = {}
    for name, f in r["figures"].items():
        if "unavailable" in f:
            continue
        if not f["decisions"]:
            raise RuntimeError(f"{name}: no decision in the window ({f['requests']} requests)")
        w = f["window"]
        out[f"authority_{name}_per_s"] = (f["decisions_per_s"], w)
        out[f"authority_{name}_p99_ms"] = (f["latency"]["p99_ms"], w)
    return out


def _authority_metrics(p: Plan) -> list[Metric]:
    out = []
    for name, label in AUTHORITY_FIGURES.items():
        wire = "" if name.endswith("_per_connection") else f", {p.authority_wire}"
        how = f"nginx-rtmp on_play, C={p.authority_connections}{wire}"
        out.append(Metric(f"authority_{name}_per_s", f"{label} decisions/s ({how})", "1/s", True))
        out.append(Metric(f"authority_{name}_p99_ms", f"{label} decision p99", "ms", False))
    return out


#: the cluster scenario's set-ups and what each measures (bench/cluster.py)
CLUSTER_FIGURES = (
    ("off", "login", "cluster_off_logins_per_s", "logins/s, one process, cluster off"),
    ("off", "any", "cluster_off_messages_per_s", "messages/s, one process, cluster off"),
    ("w1", "login", "cluster_w1_logins_per_s", "logins/s, --workers 1, cluster on"),
    ("w1", "same", "cluster_w1_messages_per_s", "messages/s, --workers 1, cluster on"),
    ("w2", "login", "cluster_w2_logins_per_s", "logins/s, --workers 2"),
    ("w2", "same", "cluster_w2_same_messages_per_s", "messages/s, --workers 2, same worker"),
    ("w2", "cross", "cluster_w2_cross_messages_per_s", "messages/s, --workers 2, across workers"),
)
#: ratios: key -> (numerator, denominator, label)
CLUSTER_RATIOS = {
    "cluster_w1_over_off_messages": (
        "cluster_w1_messages_per_s",
        "cluster_off_messages_per_s",
        "messages/s, cluster on (1 worker) ÷ off",
    ),
    "cluster_w1_over_off_logins": (
        "cluster_w1_logins_per_s",
        "cluster_off_logins_per_s",
        "logins/s, cluster on (1 worker) ÷ off",
    ),
    "cluster_w2_cross_over_same": (
        "cluster_w2_cross_messages_per_s",
        "cluster_w2_same_messages_per_s",
        "messages/s per worker, across ÷ same worker (2 workers)",
    ),
}


#: what a worker carries when its core is its own: messages per CPU-second of the
#: server processes and Redis together, per placement.  On a machine whose every core
#: also runs the generator (this one has two), across-worker pairs go at the pace of
#: the busier core while same-worker pairs each go at their own core's pace; this
#: figure takes that out.  Reported beside the target's ratio, never in its place.
CLUSTER_PER_CPU = {
    "cluster_w2_same_messages_per_cpu_s": (
        "same",
        "messages per CPU-second, --workers 2, same worker",
    ),
    "cluster_w2_cross_messages_per_cpu_s": (
        "cross",
        "messages per CPU-second, --workers 2, across workers",
    ),
}
CLUSTER_PER_CPU_RATIO = (
    "cluster_w2_cross_over_same_per_cpu",
    "messages per CPU-second (server and Redis), across ÷ same worker",
)


def _per_cpu_second(result: dict[str, Any]) -> float | None:
    """Messages per CPU-second of the server processes and Redis in the window (None:
    no CPU was counted, a window too short to say)."""
    window = result["window"]
    cpu = (window.get("server_cpu_pct", 0.0) + window.get("redis_cpu_pct", 0.0)) / 100
    return round(result["messages_per_s"] / cpu) if cpu > 0 else None


def _cluster_figures(_: Plan, r: dict[str, Any]) -> Figures:
    """Rates per set-up, then the ratios the issue targets; a set-up that failed fails
    the scenario with its reason (its figures would be missing, not zero)."""
    failed = {name: v["error"] for name, v in r.items() if "error" in v}
    if failed:
        raise RuntimeError("; ".join(f"{name}: {why}" for name, why in failed.items()))
    out: Figures = {}
    for variant, part, key, _label in CLUSTER_FIGURES:
        result = r.get(variant, {}).get(part)
        if result is None:
            continue
        value = result["logins_per_s"] if part == "login" else result["messages_per_s"]
        out[key] = (value, result["window"])
    for variant in ("w2",):
        for placement in ("same", "cross"):
            result = r.get(variant, {}).get(placement)
            if result is not None:
                out[f"cluster_{variant}_{placement}_p50_ms"] = (
                    result["latency"]["p50_ms"],
                    result["window"],
                )
    for key, (top, bottom, _label) in CLUSTER_RATIOS.items():
        if top in out and bottom in out and out[bottom][0]:
            out[key] = (round(out[top][0] / out[bottom][0], 3), out[top][1])
    for key, (placement, _label) in CLUSTER_PER_CPU.items():
        result = r.get("w2", {}).get(placement)
        value = _per_cpu_second(result) if result is not None else None
        if value is not None:
            out[key] = (value, result["window"])
    same, cross = (out.get(key) for key in CLUSTER_PER_CPU)
    if same is not None and cross is not None and same[0]:
        out[CLUSTER_PER_CPU_RATIO[0]] = (round(cross[0] / same[0], 3), cross[1])
    return out


def _cluster_metrics(p: Plan) -> list[Metric]:
    shape = f"{p.pairs} pairs, W={p.cluster_window}; K={p.login_workers}"
    out = [Metric(key, f"{label} ({shape})", "1/s", True) for *_, key, label in CLUSTER_FIGURES]
    out += [
        Metric(
            f"cluster_w2_{placement}_p50_ms",
            f"one-way latency p50, --workers 2, {how}",
            "ms",
            False,
        )
        for placement, how in (("same", "same worker"), ("cross", "across workers"))
    ]
    out += [Metric(key, label, "x", True) for key, (*_, label) in CLUSTER_RATIOS.items()]
    out += [Metric(key, label, "1/s", True) for key, (_, label) in CLUSTER_PER_CPU.items()]
    out.append(Metric(*CLUSTER_PER_CPU_RATIO, "x", True))
    return out


#: the message archive scenario's figures: kind -> what a client does
MAM_FIGURES = {
    "newest": "newest, then back page by page",
    "random": "after a random id",
}


def _mam_figures(_: Plan, r: dict[str, Any]) -> Figures:
    """Per kind of page: p50/p99/max and queries/s; and p99 over every page measured
    (the target's figure)."""
    out: Figures = {}
    windows = []
    for kind in MAM_FIGURES:
        f = r["figures"][kind]
        if not f["queries"]:
            raise RuntimeError(f"{kind}: no query in the window")
        w = f["window"]
        windows.append(w)
        out[f"mam_{kind}_p50_ms"] = (f["latency"]["p50_ms"], w)
        out[f"mam_{kind}_p99_ms"] = (f["latency"]["p99_ms"], w)
        out[f"mam_{kind}_max_ms"] = (f["latency"]["max_ms"], w)
        out[f"mam_{kind}_queries_per_s"] = (f["queries_per_s"], w)
        out[f"mam_{kind}_cpu_ms"] = (f["server_cpu_ms_per_page"], w)
    worst = max(windows, key=lambda w: w.get("server_cpu_pct", 0))
    out["mam_page_p99_ms"] = (r["latency"]["p99_ms"], worst)
    out["mam_page_p99_less_waits_ms"] = (r["latency_less_core_waits"]["p99_ms"], worst)
    return out


def _mam_metrics(p: Plan) -> list[Metric]:
    shape = f"{p.mam_page} of {p.mam_messages:,} messages"
    out = []
    for kind, how in MAM_FIGURES.items():
        out += [
            Metric(
                f"mam_{kind}_queries_per_s",
                f"MAM pages/s, {how} ({shape}, one query in flight)",
                "1/s",
                True,
            ),
            Metric(f"mam_{kind}_p50_ms", f"MAM page p50, {how}", "ms", False),
            Metric(f"mam_{kind}_p99_ms", f"MAM page p99, {how}", "ms", False),
            Metric(f"mam_{kind}_max_ms", f"MAM page max, {how}", "ms", False),
            Metric(f"mam_{kind}_cpu_ms", f"MAM server CPU per page, {how}", "ms", False),
        ]
    out.append(Metric("mam_page_p99_ms", f"MAM page p99, every page ({shape})", "ms", False))
    out.append(
        Metric(
            "mam_page_p99_less_waits_ms",
            "MAM page p99, every page, less each page's waits for a core (a lower bound)",
            "ms",
            False,
        )
    )
    return out


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "login",
            "login",
            False,
            "K workers: connect, authenticate, bind, close (plain TCP)",
            _login_params,
            _login_figures(""),
            _login_metrics("", "plain TCP"),
        ),
        Scenario(
            "login_tls",
            "login",
            True,
            "the same with STARTTLS before SASL",
            _login_params,
            _login_figures("_tls"),
            _login_metrics("_tls", "STARTTLS"),
        ),
        Scenario(
            "throughput",
            "throughput",
            False,
            "N sender->receiver pairs, W messages in flight per sender (plain TCP)",
            _throughput_params,
            _throughput_figures(""),
            _throughput_metrics("", "plain TCP"),
        ),
        Scenario(
            "throughput_tls",
            "throughput",
            True,
            "the same over STARTTLS",
            _throughput_params,
            _throughput_figures("_tls"),
            _throughput_metrics("_tls", "STARTTLS"),
        ),
        Scenario(
            "login_bosh",
            "login",
            False,
            "K workers: BOSH session, authenticate, restart, bind, terminate (plain HTTP)",
            _login_params,
            _login_figures("_bosh"),
            _login_metrics("_bosh", "BOSH"),
            transport="bosh",
        ),
        Scenario(
            "login_ws",
            "login",
            False,
            "K workers: WebSocket, <open/>, authenticate, <open/>, bind, <close/> (plain HTTP)",
            _login_params,
            _login_figures("_ws"),
            _login_metrics("_ws", "WebSocket"),
            transport="websocket",
        ),
        Scenario(
            "throughput_bosh",
            "throughput",
            False,
            "N pairs over BOSH (hold=1, stanzas batched into bodies), W messages in flight",
            _throughput_params,
            _throughput_figures("_bosh"),
            _throughput_metrics("_bosh", "BOSH"),
            transport="bosh",
        ),
        Scenario(
            "throughput_ws",
            "throughput",
            False,
            "N pairs over WebSocket (one stanza per message), W messages in flight",
            _throughput_params,
            _throughput_figures("_ws"),
            _throughput_metrics("_ws", "WebSocket"),
            transport="websocket",
        ),
        Scenario(
            "latency",
            "throughput",
            False,
            "one pair, one message in flight: one-way latency",
            lambda p: {
                "pairs": 1,
                "window_size": 1,
                "warmup": p.warmup,
                "duration": p.latency_duration,
            },
            _latency_figures,
            lambda p: [
                Metric("latency_p50_ms", "one-way latency p50, one message in flight", "ms", False),
                Metric("latency_p99_ms", "one-way latency p99, one message in flight", "ms", False),
            ],
        ),
        Scenario(
            "idle",
            "idle",
            False,
            "C authenticated, available, idle sessions; server RSS growth per session",
            lambda p: {
                "levels": list(p.idle_levels),
                "concurrency": p.idle_concurrency,
                "settle": p.idle_settle,
                "quiet": p.idle_quiet,
            },
            _idle_figures,
            _idle_metrics,
        ),
        Scenario(
            "fanout",
            "fanout",
            False,
            "presence broadcast to R subscribed, available contacts",
            lambda p: {
                "contacts": p.fanout_contacts,
                "window_size": p.fanout_window,
                "warmup": p.warmup,
                "duration": p.duration,
            },
            lambda _, r: {"fanout_deliveries_per_s": (r["deliveries_per_s"], r["window"])},
            lambda p: [
                Metric(
                    "fanout_deliveries_per_s",
                    f"presence deliveries/s (R={p.fanout_contacts})",
                    "1/s",
                    True,
                )
            ],
        ),
        Scenario(
            "muc",
            "muc",
            False,
            "issue 15: one XEP-0045 room of N occupants on the server's own MUC service, one "
            "sending groupchat messages; deliveries/s to occupants (its own echo included)",
            lambda p: {
                "occupants": p.muc_occupants,
                "window_size": p.muc_window,
                "warmup": p.warmup,
                "duration": p.duration,
            },
            lambda _, r: {
                "muc_deliveries_per_s": (r["deliveries_per_s"], r["window"]),
                "muc_messages_per_s": (r["messages_per_s"], r["window"]),
            },
            lambda p: [
                Metric(
                    "muc_deliveries_per_s",
                    f"groupchat deliveries/s (one room, N={p.muc_occupants}, W={p.muc_window})",
                    "1/s",
                    True,
                ),
                Metric(
                    "muc_messages_per_s",
                    f"groupchat messages/s sent into that room (N={p.muc_occupants})",
                    "1/s",
                    True,
                ),
            ],
            servers=("chatgate", "prosody"),
        ),
        Scenario(
            "soak",
            "soak",
            False,
            "messages/s fresh, then many logins on the same process, then messages/s again",
            lambda p: {
                **_throughput_params(p),
                "logins": p.soak_logins,
                "workers": p.login_workers,
                "login_time_cap": p.soak_time_cap,
            },
            _soak_figures,
            _soak_metrics,
        ),
        Scenario(
            "authority",
            "authority",
            False,
            "the stream authority: nginx-rtmp's on_play decided with a token, a stream key, a "
            "password (each account's first check, then the same accounts again); chatgate only",
            _authority_params,
            _authority_figures,
            _authority_metrics,
            transport="http",
            servers=("chatgate",),
        ),
        Scenario(
            "cluster",
            "cluster",
            False,
            "issue 14: one process without the cluster layer, then `serve --workers 1` and "
            "`--workers 2` with [cluster] on (a bench-owned redis-server): logins/s, and "
            "messages/s with pairs on the same worker and across workers; chatgate only",
            lambda p: {"pairs": p.pairs, "window_size": p.window, "workers": p.login_workers},
            _cluster_figures,
            _cluster_metrics,
            servers=("chatgate",),
        ),
        Scenario(
            "mam",
            "mam",
            False,
            "issue 15: XEP-0313 pages from one account's archive of N messages (filled through "
            "the server once per run), one query in flight: the newest page then back page by "
            "page, and pages after random ids; a chatgate of its own with [modules.mam] on; "
            "chatgate only",
            lambda p: {
                "messages": p.mam_messages,
                "page": p.mam_page,
                "min_queries": p.mam_queries,
                "warmup": p.warmup,
                "duration": p.duration,
            },
            _mam_figures,
            _mam_metrics,
            servers=("chatgate",),
        ),
    ]
}

DEFAULT_SCENARIOS = list(SCENARIOS)
WEB_SCENARIOS = [name for name, s in SCENARIOS.items() if s.transport in ("bosh", "websocket")]


def effective_scenarios(names: list[str], starttls_everywhere: bool) -> list[Scenario]:
    """The scenarios to run, in order, after folding redundant ones.

    `throughput` is the soak's first phase when both are asked for (the same measurement on a
    freshly started server), so it is not run twice; with --starttls every scenario already
    uses STARTTLS and the `_tls` variants are dropped.
    """
    chosen = [SCENARIOS[n] for n in names]
    if "soak" in names and "throughput" in names:
        chosen = [s for s in chosen if s.name != "throughput"]
    if starttls_everywhere:
        chosen = [s for s in chosen if not s.name.endswith("_tls")]
    return chosen


def metrics_for(plan: Plan, names: list[str], starttls_everywhere: bool = False) -> list[Metric]:
    """Every metric the named scenarios produce, in display order, without duplicates."""
    out: dict[str, Metric] = {}
    if starttls_everywhere:
        names = [n for n in names if not n.endswith("_tls")]
    for n in names:
        s = SCENARIOS[n]
        if n == "soak" or (n == "throughput" and "soak" in names):
            for m in _throughput_metrics("", "plain TCP")(plan):
                out.setdefault(m.key, m)
        for m in s.metrics(plan):
            out.setdefault(m.key, m)
    if starttls_everywhere:
        return [replace(m, label=m.label.replace("plain TCP", "STARTTLS")) for m in out.values()]
    return list(out.values())
