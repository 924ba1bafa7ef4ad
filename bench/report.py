"""Turns a run's measurements into figures: medians, ranges, ratios, bounds and targets.

Writes `results.json` (everything, including each peer's exact config), `report.md` (the tables)
and `ratios.png` (matplotlib), and can replace the marked block of docs/benchmarks.md. Reads
nothing but what `bench.run` hands it.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.plan import Metric, Plan, metrics_for

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- bench:latest:begin -->"
END = "<!-- bench:latest:end -->"
NAMES = {"chatgate": "chatgate", "prosody": "Prosody", "ejabberd": "ejabberd"}
SATURATED = 90.0
DISTURBED = 25.0  # % of one core used by other processes during a window


def _bound_row(key: str, metrics: list[Metric]) -> bool:
    """Rows of the bounds table: rates and the in-flight latency, and the largest idle level."""
    if key.startswith("idle_kib_"):
        return key == [m.key for m in metrics if m.key.startswith("idle_kib_")][-1]
    # the web transports' rates too: their generator costs more per figure than TCP's
    return key.endswith(("_per_s", "_per_s_bosh", "_per_s_ws")) or key == "latency_p50_ms"


def bound_of(window: dict[str, Any]) -> str:
    """What limited a figure: the server's core, the generator's core, or neither."""
    if window.get("bound") == "memory":
        return "memory"
    if window.get("bound"):  # the cluster scenario judges its several processes itself
        return str(window["bound"])
    if window.get("server_cpu_pct", 0) >= SATURATED:
        return "server CPU"
    if window.get("generator_cpu_pct", 0) >= SATURATED:
        return "generator CPU"
    return "neither saturated"


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    label: str
    peer: str
    factor: float
    at_least: bool  # chatgate >= factor x peer, else <=
    #: listed only when the run measured it (the web transports' targets, issue 11)
    only_if_measured: bool = False


TARGETS = [
    Target("messages_per_s", "messages/s, plain TCP ≥ 2.0 x Prosody", "prosody", 2.0, True),
    Target("messages_per_s_tls", "messages/s, STARTTLS ≥ 2.0 x Prosody", "prosody", 2.0, True),
    Target("logins_per_s", "logins/s, plain TCP ≥ 1.0 x ejabberd", "ejabberd", 1.0, True),
    Target("logins_per_s_tls", "logins/s, STARTTLS ≥ 1.0 x ejabberd", "ejabberd", 1.0, True),
    Target("latency_p50_ms", "one-way latency p50 ≤ Prosody's", "prosody", 1.0, False),
    Target("latency_p99_ms", "one-way latency p99 ≤ ejabberd's", "ejabberd", 1.0, False),
    Target(
        "idle_kib_10000", "KiB per idle session at 10,000 ≤ 0.5 x Prosody", "prosody", 0.5, False
    ),
    Target("logins_per_s_bosh", "logins/s, BOSH ≥ 2.0 x Prosody", "prosody", 2.0, True, True),
    Target("logins_per_s_ws", "logins/s, WebSocket ≥ 2.0 x Prosody", "prosody", 2.0, True, True),
    Target("messages_per_s_bosh", "messages/s, BOSH ≥ 2.0 x Prosody", "prosody", 2.0, True, True),
    Target(
        "messages_per_s_ws", "messages/s, WebSocket ≥ 2.0 x Prosody", "prosody", 2.0, True, True
    ),
    Target(
        "muc_deliveries_per_s",
        "groupchat deliveries/s, one room ≥ 2.0 x Prosody",
        "prosody",
        2.0,
        True,
        True,
    ),
]


@dataclass(frozen=True, slots=True)
class AbsoluteTarget:
    """A bound on one of chatgate's own figures, where no peer has anything to compare
    (issue 12: the stream authority, on the server's one core)."""

    key: str
    label: str
    bound: float
    at_least: bool  # value >= bound, else value < bound


AUTHORITY_TARGETS = [
    AbsoluteTarget("authority_token_per_s", "token decisions/s ≥ 10,000", 10_000, True),
    AbsoluteTarget("authority_token_p99_ms", "token decision p99 < 20 ms", 20, False),
    AbsoluteTarget("authority_stream_key_per_s", "stream-key decisions/s ≥ 10,000", 10_000, True),
    AbsoluteTarget("authority_stream_key_p99_ms", "stream-key decision p99 < 20 ms", 20, False),
    AbsoluteTarget(
        "authority_password_warm_per_s", "password decisions/s, warm ≥ 5,000", 5_000, True
    ),
]


#: issue 14: what the cluster layer may cost one node, and what crossing workers may cost
CLUSTER_TARGETS = [
    AbsoluteTarget("cluster_w1_over_off_messages", "messages/s, cluster on ÷ off ≥ 0.9", 0.9, True),
    AbsoluteTarget("cluster_w1_over_off_logins", "logins/s, cluster on ÷ off ≥ 0.9", 0.9, True),
    AbsoluteTarget(
        "cluster_w2_cross_over_same",
        "messages/s per worker, across ÷ same worker ≥ 0.8",
        0.8,
        True,
    ),
]


#: issue 15: the message archive, chatgate's alone (the peers' bench configurations keep none)
MAM_MESSAGES = 100_000
MAM_TARGETS = [
    AbsoluteTarget(
        "mam_page_p99_ms", "MAM page of 50 p99 < 20 ms over 100,000 messages", 20, False
    ),
]


def _mam_rows(summary: dict[str, dict[str, dict[str, Any]]], plan: Plan) -> list[dict[str, Any]]:
    """The archive target, saying so when the run's archive was smaller than the target's."""
    note = ""
    if plan.mam_messages != MAM_MESSAGES or plan.mam_page != 50:
        note = f"measured with pages of {plan.mam_page} over {plan.mam_messages:,} messages"
    rows = _absolute_rows(summary, {}, MAM_TARGETS)
    for row in rows:
        if row["chatgate"] is not None and note:
            row["note"] = note
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:,.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def summarize(
    runs: list[dict[str, Any]], metrics: list[Metric], servers: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """metric -> server -> {median, min, max, values, bound, server_cpu_pct, generator_cpu_pct}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in metrics:
        per: dict[str, dict[str, Any]] = {}
        for s in servers:
            got = [
                r["figures"][m.key]
                for r in runs
                if r["server"] == s and m.key in r.get("figures", {})
            ]
            if not got:
                continue
            values = [g["value"] for g in got]
            windows = [g["window"] for g in got]
            per[s] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "values": values,
                "bound": Counter(bound_of(w) for w in windows).most_common(1)[0][0],
                "server_cpu_pct": statistics.median(w.get("server_cpu_pct", 0) for w in windows),
                "generator_cpu_pct": statistics.median(
                    w.get("generator_cpu_pct", 0) for w in windows
                ),
                "other_cpu_pct": statistics.median(w.get("other_cpu_pct", 0) for w in windows),
            }
        out[m.key] = per
    return out


def ratios(
    summary: dict[str, dict[str, dict[str, Any]]], reference: str, others: list[str]
) -> dict[str, dict[str, float]]:
    """metric -> peer -> reference median ÷ peer median (raw, not oriented)."""
    out: dict[str, dict[str, float]] = {}
    for key, per in summary.items():
        if reference not in per:
            continue
        for o in others:
            if o in per and per[o]["median"]:
                out.setdefault(key, {})[o] = per[reference]["median"] / per[o]["median"]
    return out


def authority_notes(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Metric key prefix -> why the authority scenario had no such figure (the first reason)."""
    out: dict[str, str] = {}
    for r in runs:
        if r.get("scenario") != "authority":
            continue
        for name, f in r.get("result", {}).get("figures", {}).items():
            if "unavailable" in f:
                out.setdefault(f"authority_{name}_", f"not available: {f['unavailable']}")
    return out


def _absolute_rows(
    summary: dict[str, dict[str, dict[str, Any]]],
    notes: dict[str, str],
    targets: list[AbsoluteTarget] = AUTHORITY_TARGETS,
) -> list[dict[str, Any]]:
    rows = []
    for t in targets:
        mine = summary.get(t.key, {}).get("chatgate", {}).get("median")
        status = "n/a"
        if mine is not None:
            ok = mine >= t.bound if t.at_least else mine < t.bound
            status = "met" if ok else "not met"
        note = next((why for prefix, why in notes.items() if t.key.startswith(prefix)), "")
        rows.append(
            {
                "target": t.label,
                "metric": t.key,
                "chatgate": mine,
                "required": t.bound,
                "status": status,
                "note": note if mine is None else "",
            }
        )
    return rows


def evaluate_targets(
    summary: dict[str, dict[str, dict[str, Any]]],
    plan: Plan,
    scenario_names: list[str] | None = None,
    notes: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    idle_key = f"idle_kib_{max(plan.idle_levels)}"
    for t in TARGETS:
        key = t.key
        note = ""
        if t.only_if_measured and key not in summary:
            continue
        if key == "idle_kib_10000" and key not in summary:
            key = idle_key
            note = f"measured at {max(plan.idle_levels):,} sessions, not 10,000"
        per = summary.get(key, {})
        peer = per.get(t.peer, {}).get("median")
        mine = per.get("chatgate", {}).get("median")
        required = None if peer is None else t.factor * peer
        status = "n/a"
        if required is not None and mine is not None:
            ok = mine >= required if t.at_least else mine <= required
            status = "met" if ok else "not met"
        rows.append(
            {
                "target": t.label,
                "metric": key,
                "chatgate": mine,
                "required": required,
                "status": status,
                "note": note,
            }
        )
    soak = summary.get("soak_after_over_fresh", {})
    logins = summary.get("soak_logins", {})
    mine = soak.get("chatgate", {}).get("median")
    done = logins.get("chatgate", {}).get("median")
    note = ""
    if done is not None and done < 50_000:
        note = f"after {done:,.0f} logins, not 50,000"
    rows.append(
        {
            "target": "messages/s after 50,000 logins ≥ 95 % of fresh",
            "metric": "soak_after_over_fresh",
            "chatgate": mine,
            "required": 0.95,
            "status": "n/a" if mine is None else ("met" if mine >= 0.95 else "not met"),
            "note": note,
        }
    )
    if scenario_names is not None and "authority" in scenario_names:
        rows += _absolute_rows(summary, notes or {})
    if scenario_names is not None and "cluster" in scenario_names:
        rows += _absolute_rows(summary, {}, CLUSTER_TARGETS)
    if scenario_names is not None and "mam" in scenario_names:
        rows += _mam_rows(summary, plan)
    return rows


def _versions(meta: dict[str, Any]) -> str:
    return "; ".join(p["version"] for p in meta.get("peers", {}).values())


def markdown(doc: dict[str, Any], metrics: list[Metric]) -> str:
    meta = doc["meta"]
    servers: list[str] = doc["servers"]
    ref = servers[0] if servers else ""
    others = servers[1:]
    summary = doc["summary"]
    plan = meta["plan"]
    m = meta["machine"]
    lines = [
        f"### {meta['mode']} run, {meta['started']} ({meta['seconds'] / 60:.1f} min)",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"kernel {m['kernel']}, Python {m['python']}, RLIMIT_NOFILE {m['nofile_hard']:,}",
        f"- Servers: {_versions(meta)}",
        f"- Method: server pinned to core {meta['server_core']}, generator (uvloop) on core "
        f"{meta['generator_core']}; {meta['mechanism']}"
        f"{', STARTTLS everywhere' if meta['starttls_everywhere'] else ''}; "
        f"{plan['users']:,} accounts; {plan['repetitions']} interleaved repetition(s) "
        + (
            "of every scenario, each on a freshly started server"
            if plan.get("fresh_start_each", True)
            else "(short scenarios share one fresh start per repetition, the soak has its own)"
        )
        + "; median (min-max).",
    ]
    if meta.get("skipped"):
        lines.append("- Skipped: " + "; ".join(f"{k}: {v}" for k, v in meta["skipped"].items()))
    head = ["figure", *[NAMES.get(s, s) for s in servers]]
    head += [f"{NAMES.get(ref, ref)} ÷ {NAMES.get(o, o)}" for o in others]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rat = doc["ratios"]
    for metric in metrics:
        per = summary.get(metric.key, {})
        if not per:
            continue
        unit = f" ({metric.unit})" if metric.unit and metric.unit not in ("1/s", "x") else ""
        better = "↑" if metric.higher_is_better else "↓"
        row = [f"{metric.label}{unit} {better}"]
        for s in servers:
            f = per.get(s)
            if f is None:
                row.append("-")
            elif len(f["values"]) > 1:
                row.append(f"{_fmt(f['median'])} ({_fmt(f['min'])}-{_fmt(f['max'])})")
            else:
                row.append(_fmt(f["median"]))
        for o in others:
            r = rat.get(metric.key, {}).get(o)
            row.append("-" if r is None else f"{r:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "What bounded each figure: server CPU, generator CPU or memory, with the median CPU of the "
        "server / the generator / everything else on the machine over the measured window "
        "(100 % = one core; 'neither saturated' means latency-bound):",
        "",
        "| figure | " + " | ".join(NAMES.get(s, s) for s in servers) + " |",
        "|" + "---|" * (len(servers) + 1),
    ]
    for metric in metrics:
        per = summary.get(metric.key, {})
        if not per or not _bound_row(metric.key, metrics):
            continue
        row = [metric.label]
        for s in servers:
            f = per.get(s)
            row.append(
                "-"
                if f is None
                else (
                    f"{f['bound']} ({f['server_cpu_pct']:.0f} / {f['generator_cpu_pct']:.0f}"
                    f" / {f['other_cpu_pct']:.0f} %)"
                )
            )
        lines.append("| " + " | ".join(row) + " |")
    disturbed: dict[str, list[str]] = {}
    for metric in metrics:
        if not _bound_row(metric.key, metrics):
            continue
        for s, f in summary.get(metric.key, {}).items():
            if f["other_cpu_pct"] > DISTURBED:
                disturbed.setdefault(metric.label, []).append(
                    f"{NAMES.get(s, s)} {f['other_cpu_pct']:.0f} %"
                )
    if disturbed:
        lines += [
            "",
            f"Disturbed (other processes used more than {DISTURBED:.0f} % of a core, median): "
            + "; ".join(f"{label}: {', '.join(who)}" for label, who in disturbed.items())
            + ". Such figures understate the server; rerun on a quiet machine.",
        ]
    lines += [
        "",
        "Targets for chatgate (issues 3, 11, 12, 14 and 15):",
        "",
        "| target | chatgate | required | status |",
        "|---|---|---|---|",
    ]
    for t in doc["targets"]:
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(
            f"| {t['target']} | {_fmt(t['chatgate'])} | {_fmt(t['required'])} | "
            f"{t['status']}{note} |"
        )
    lines += _authority_lines(doc)
    lines += _mam_lines(doc)
    errors = [r for r in doc["runs"] if "error" in r]
    if errors:
        lines += [
            "",
            f"{len(errors)} measurement(s) failed: "
            + "; ".join(f"{r['scenario']}/{r['server']}#{r['rep']}" for r in errors),
        ]
    return "\n".join(lines) + "\n"


def _authority_lines(doc: dict[str, Any]) -> list[str]:
    """How the stream authority was asked, and what is missing: its figures are chatgate's
    alone (Prosody and ejabberd are no stream authority)."""
    runs = [r for r in doc["runs"] if r.get("scenario") == "authority" and "result" in r]
    if not runs:
        return []
    r = runs[0]["result"]
    per_request = r["http_connections"] / max(1, r["http_requests"])
    wire = (
        "nginx-rtmp's exact requests (HTTP/1.0, `Connection: Close`)"
        if r["wire"] == "nginx"
        else "HTTP/1.1 keep-alive"
    )
    lines = [
        "",
        f"Stream authority (issue 12, chatgate only): {r['connections']} connections in a closed "
        f"loop, {wire}, {per_request:.2f} TCP connections per request; every viewer a new "
        "`clientid`, ended with `on_play_done` after each figure; every answer checked "
        f"({sum(x.get('result', {}).get('errors', 0) for x in runs)} wrong).",
    ]
    for prefix, why in authority_notes(doc["runs"]).items():
        label = prefix.removeprefix("authority_").rstrip("_").replace("_", " ")
        lines.append(f"- {label}: {why}")
    return lines


def _mam_lines(doc: dict[str, Any]) -> list[str]:
    """How the archive was filled and asked: its figures are chatgate's alone."""
    runs = [r for r in doc["runs"] if r.get("scenario") == "mam" and "result" in r]
    if not runs:
        return []
    r = runs[0]["result"]
    fill = r.get("provisioning", {})
    queries = sum(f["queries"] for x in runs for f in x["result"]["figures"].values())
    windows = [f["window"] for x in runs for f in x["result"]["figures"].values()]
    server_wait = statistics.median(w.get("server_wait_pct", 0) for w in windows)
    generator_wait = statistics.median(w.get("generator_wait_pct", 0) for w in windows)
    return [
        "",
        f"Message archive (issue 15, chatgate only, `[modules.mam] enabled = true` on a "
        f"chatgate of its own): {r['messages']:,} messages in one account's archive, sent "
        f"through the server from another account once per run "
        f"({fill.get('messages_per_s', 0):,.0f} messages/s, each archived twice); pages of "
        f"{r['page']} (RSM max), one query in flight, from sending the IQ to its <fin/>; "
        f"{queries:,} pages measured, every one checked against the archive's ids. "
        f"The server's threads waited for a core {server_wait:.1f} % of the measured "
        f"windows, the generator's {generator_wait:.1f} % (median; the server's include its "
        "event loop and database threads waiting for each other on its one core): the "
        "'less each page's waits' figure subtracts them from each page's latency, a lower "
        "bound of what the server itself took.",
    ]


def build(
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    plan: Plan,
    scenario_names: list[str],
    starttls_everywhere: bool,
) -> dict[str, Any]:
    servers = [s for s in meta.get("peers", {})] or sorted({r["server"] for r in runs})
    metrics = metrics_for(plan, scenario_names, starttls_everywhere)
    summary = summarize(runs, metrics, servers)
    doc: dict[str, Any] = {
        "meta": meta,
        "servers": servers,
        "metrics": [asdict(m) for m in metrics],
        "summary": summary,
        "ratios": ratios(summary, servers[0], servers[1:]) if servers else {},
        "targets": evaluate_targets(summary, plan, scenario_names, authority_notes(runs)),
        "runs": runs,
    }
    doc["markdown"] = markdown(doc, metrics)
    doc["_metrics"] = metrics
    return doc


def chart(doc: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars: the first server's advantage over each other one (>1 = better)."""
    servers = doc["servers"]
    if len(servers) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics: list[Metric] = [m for m in doc["_metrics"] if m.key in doc["ratios"]]
    headline = {"latency_p99_ms", "soak_after_over_fresh"}
    metrics = [m for m in metrics if _bound_row(m.key, metrics) or m.key in headline]
    if not metrics:
        return None
    ref, others = servers[0], servers[1:]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(metrics) * len(others) + 1.5))
    height = 0.8 / len(others)
    for i, o in enumerate(others):
        ys, xs = [], []
        for j, m in enumerate(metrics):
            r = doc["ratios"][m.key].get(o)
            if r is None or r == 0:
                continue
            ys.append(j + i * height)
            xs.append(r if m.higher_is_better else 1 / r)
        ax.barh(ys, xs, height=height, label=f"vs {NAMES.get(o, o)}")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([j + height * (len(others) - 1) / 2 for j in range(len(metrics))])
    ax.set_yticklabels([m.label for m in metrics], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"{NAMES.get(ref, ref)}'s advantage (x, log scale; > 1 means better)")
    ax.set_title(
        f"{NAMES.get(ref, ref)} relative to {', '.join(NAMES.get(o, o) for o in others)}"
        f" — {doc['meta']['mode']} run {doc['meta']['started']}"
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def refresh_docs(doc: dict[str, Any], path: Path = DOCS) -> Path | None:
    """Replace the block between the bench markers in docs/benchmarks.md with this run."""
    if not path.exists():
        return None
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    path.write_text(text[: start + len(BEGIN)] + "\n" + doc["markdown"] + text[end:])
    return path


def write(doc: dict[str, Any], out_dir: Path, *, update_docs: bool) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in doc.items() if not k.startswith("_")}
    paths = [out_dir / "results.json", out_dir / "report.md"]
    paths[0].write_text(json.dumps(data, indent=1, default=str))
    paths[1].write_text(doc["markdown"])
    png = chart(doc, out_dir / "ratios.png")
    if png is not None:
        paths.append(png)
    if update_docs:
        done = refresh_docs(doc)
        if done is not None:
            paths.append(done)
    return paths
