"""`python -m bench.run`: chatgate side by side with Prosody and ejabberd.

Orchestration only: prepares each server once per run (private config, accounts, fan-out
rosters), then for each repetition and scenario starts every server fresh in turn (A B C A B C
...), runs the generator process against it and stops it. The server runs on core 0 (`taskset
-c 0`), the generator and this process on core 1. Results go to `--out/<timestamp>/` as JSON,
Markdown and a PNG chart; full runs also refresh docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import accounts, procs, report
from bench.certs import ensure_certificate
from bench.peers import Peer, PeerOptions, PeerSetup, builtin_peers
from bench.plan import PLANS, SCENARIOS, Plan, Scenario, effective_scenarios, plan_for

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results"
SCRAM_LEARNED = accounts.CACHE_DIR / "scram-learned.json"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="short run (2,000 users, short windows; under 3 minutes)",
    )
    mode.add_argument(
        "--tiny",
        action="store_const",
        dest="mode",
        const="tiny",
        help="smoke run for tests: tiny sizes, one repetition",
    )
    ap.set_defaults(mode="full")
    ap.add_argument(
        "--servers",
        default="chatgate,prosody,ejabberd",
        help="comma-separated, measured in this order (default: %(default)s)",
    )
    ap.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: %(default)s"
    )
    ap.add_argument(
        "--starttls",
        action="store_true",
        help="STARTTLS in every scenario (the _tls scenarios become redundant)",
    )
    ap.add_argument("--mechanism", choices=["SCRAM-SHA-1", "PLAIN"], default="SCRAM-SHA-1")
    ap.add_argument("--repetitions", type=int, help="override the mode's repetitions (>= 1)")
    ap.add_argument("--users", type=int, help="override the mode's account count")
    ap.add_argument(
        "--prosody-gc",
        choices=["generational", "incremental"],
        default="generational",
        help="Prosody's Lua GC mode (default %(default)s, its faster one here)",
    )
    ap.add_argument(
        "--hooks-wire",
        choices=["nginx", "keepalive"],
        default="keepalive",
        help="authority scenario: nginx-rtmp's requests on HTTP/1.1 kept connections (default; "
        "the token and key figures are then also measured one HTTP/1.0 connection each, as "
        "nginx-rtmp sends them), or only one connection each",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    docs = ap.add_mutually_exclusive_group()
    docs.add_argument(
        "--update-docs",
        action="store_true",
        default=None,
        help="write the table into docs/benchmarks.md (default for full runs)",
    )
    docs.add_argument("--no-docs", action="store_false", dest="update_docs")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each server start, wait up to SECONDS for other load on the machine to "
        "drop below a quarter of a core (for shared machines; default: do not wait)",
    )
    ap.add_argument(
        "--chatgate-features",
        choices=["peers", "default"],
        default="peers",
        help="chatgate with the peers' feature set (default: what they load, so each figure "
        "compares the same work) or with its own defaults (archive, carbons, blocking, ... on: "
        "what those features cost)",
    )
    ap.add_argument("--keep-workdir", action="store_true", help="keep server data and logs")
    ap.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip servers that are not installed instead of failing",
    )
    args = ap.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.servers:
        if s not in builtin_peers():
            ap.error(f"unknown server {s!r} (known: {', '.join(builtin_peers())})")
    for s in args.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
    if args.repetitions is not None and args.repetitions < 1:
        ap.error("--repetitions must be at least 1")
    if args.update_docs is None:
        args.update_docs = args.mode == "full"
    return args


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    debian = ""
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": f"Debian {debian}" if debian else platform.platform(),
        "python": platform.python_version(),
        "nofile_hard": procs.raise_nofile(),
    }


class Generator:
    """Runs one generator task as its own process; pinned to the generator core when measuring."""

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.http_ports: dict[str, int] = {}  # peer name -> its plain-HTTP port
        #: peer name -> the authority scenario's tokens and keys (bench/authority.py)
        self.stream_credentials: dict[str, dict[str, Any]] = {}

    def run(
        self,
        peer: Peer,
        pid: int,
        port: int,
        task: str,
        params: dict[str, Any],
        *,
        starttls: bool,
        transport: str = "tcp",
        cores: str = str(procs.GENERATOR_CORE),
        timeout: float = 300.0,
    ) -> dict[str, Any]:
        spec = self._spec(peer, pid, port)
        spec.update(
            task=task,
            params=params,
            starttls=starttls or self.args.starttls,
            transport=transport,
        )
        return self._exec(spec, task, cores, timeout)

    def run_batch(
        self, peer: Peer, pid: int, port: int, scenarios: list[Scenario], timeout: float
    ) -> list[dict[str, Any]]:
        """Several scenarios, one after the other, against the same started server."""
        spec = self._spec(peer, pid, port)
        spec["batch"] = [
            {
                "task": sc.task,
                "params": sc.params(self.plan),
                "starttls": sc.starttls or self.args.starttls,
                "transport": sc.transport,
            }
            for sc in scenarios
        ]
        out = self._exec(spec, "batch", str(procs.GENERATOR_CORE), timeout)
        return list(out["results"])

    def _spec(self, peer: Peer, pid: int, port: int) -> dict[str, Any]:
        return {
            "port": port,
            "http_port": self.http_ports.get(peer.name, 0),
            "web_paths": {"bosh": peer.web.bosh, "websocket": peer.web.websocket},
            "server_pid": pid,
            "users": self.plan.users,
            "fanout_block": self.plan.fanout_block,
            "mechanism": self.args.mechanism,
            "scram_learned": None if peer.salts_known else str(SCRAM_LEARNED),
            "stream_credentials": self.stream_credentials.get(peer.name),
        }

    def _exec(self, spec: dict[str, Any], task: str, cores: str, timeout: float) -> dict[str, Any]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = subprocess.run(
            ["taskset", "-c", cores, sys.executable, "-m", "bench.loadgen"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=REPO,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"generator {task} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return json.loads(out.stdout)


def provision(peer: Peer, setup: PeerSetup, gen: Generator, plan: Plan) -> dict[str, Any]:
    """Accounts (in prepare), then salts and fan-out rosters over XMPP; not measured."""
    t0 = time.perf_counter()
    cached = peer.prepare(setup)
    notes: dict[str, Any] = {"cached": cached}
    if not cached:
        pid = peer.start()
        try:
            both = f"{procs.SERVER_CORE},{procs.GENERATOR_CORE}"
            if not peer.salts_known:
                notes["salts"] = gen.run(
                    peer,
                    pid,
                    setup.port,
                    "warm_accounts",
                    {"concurrency": 32},
                    starttls=False,
                    cores=both,
                    timeout=1800,
                )
            notes["rosters"] = gen.run(
                peer,
                pid,
                setup.port,
                "provision_rosters",
                {"contacts": plan.fanout_contacts},
                starttls=False,
                cores=both,
                timeout=900,
            )
        finally:
            peer.stop()
        peer.provisioned()
    notes["seconds"] = round(time.perf_counter() - t0, 1)
    return notes


def _timeout_for(sc: Scenario, plan: Plan) -> float:
    if sc.name == "soak":
        return 2 * (plan.warmup + plan.duration) + plan.soak_time_cap + 300
    return 300.0


def _short(figures: dict[str, tuple[float, dict[str, Any]]]) -> str:
    parts = []
    for key, (value, _) in list(figures.items())[:3]:
        parts.append(f"{key}={value:,}")
    w = next(iter(figures.values()))[1] if figures else {}
    parts.append(
        f"[srv {w.get('server_cpu_pct', 0)}% gen {w.get('generator_cpu_pct', 0)}% "
        f"other {w.get('other_cpu_pct', 0)}%]"
    )
    return " ".join(parts)


def start_units(plan: Plan, scenarios: list[Scenario]) -> list[list[Scenario]]:
    """Which scenarios share one fresh server start.

    Full runs start every server afresh for every scenario. Quick and tiny runs, to fit their
    time budget, run all scenarios one after the other on one fresh start per repetition:
    idle first, so its baseline is the fresh process, then the soak, whose "fresh" phase is
    measured before its login churn, then the short ones.
    """
    if plan.fresh_start_each:
        return [[sc] for sc in scenarios]
    first = {"idle": 0, "soak": 1}
    return [sorted(scenarios, key=lambda sc: first.get(sc.name, 2))] if scenarios else []


def measure_unit(
    peer: Peer,
    setup: PeerSetup,
    gen: Generator,
    plan: Plan,
    unit: list[Scenario],
    rep: int,
    wait_quiet: float = 0.0,
) -> tuple[list[dict[str, Any]], bool]:
    """Start `peer` fresh, run the unit's scenarios, stop it; one record per scenario."""
    records = [
        {"scenario": sc.name, "server": peer.name, "rep": rep, "shared_start": len(unit) > 1}
        for sc in unit
    ]
    ok = True
    waited = procs.wait_until_quiet(wait_quiet) if wait_quiet > 0 else 0.0
    t0 = time.perf_counter()
    try:
        pid = peer.start()
        for r in records:
            r["server_exe"] = procs.exe_name(pid)
            r["start_rss_kib"] = procs.rss_kib(pid)
        timeout = sum(_timeout_for(sc, plan) for sc in unit)
        if len(unit) == 1:
            results = [
                gen.run(
                    peer,
                    pid,
                    setup.port,
                    unit[0].task,
                    unit[0].params(plan),
                    starttls=unit[0].starttls,
                    transport=unit[0].transport,
                    timeout=timeout,
                )
            ]
        else:
            results = gen.run_batch(peer, pid, setup.port, unit, timeout)
    except Exception as e:  # one failed measurement must not end the run
        results = [{"error": f"{type(e).__name__}: {e}"[-3000:]} for _ in unit]
    finally:
        peer.stop()
    seconds = round((time.perf_counter() - t0) / len(unit), 2)
    for sc, record, result in zip(unit, records, results, strict=True):
        record["seconds"] = seconds
        record["waited_for_quiet_s"] = waited
        head = f"[{rep}/{plan.repetitions}] {sc.name:<14} {peer.name:<9}"
        try:
            if "error" in result:
                raise RuntimeError(result["error"])
            record["result"] = result
            figures = sc.figures(plan, result)
            record["figures"] = {k: {"value": v, "window": w} for k, (v, w) in figures.items()}
            log(f"{head} {_short(figures)}")
        except Exception as e:
            ok = False
            record["error"] = f"{type(e).__name__}: {e}"[-3000:]
            log(f"{head} FAILED: {record['error'][:600]}")
    return records, ok


def _measured_record(
    peer: Peer, plan: Plan, sc: Scenario, rep: int, measure: Callable[[dict[str, Any]], Any]
) -> tuple[dict[str, Any], bool]:
    """One record of a scenario that starts servers of its own: `measure(record)`
    returns its result (and may add to the record); its figures, or its error, logged."""
    record: dict[str, Any] = {"scenario": sc.name, "server": peer.name, "rep": rep}
    t0 = time.perf_counter()
    head = f"[{rep}/{plan.repetitions}] {sc.name:<14} {peer.name:<9}"
    try:
        result = measure(record)
        record["result"] = result
        figures = sc.figures(plan, result)
        record["figures"] = {k: {"value": v, "window": w} for k, (v, w) in figures.items()}
        log(f"{head} {_short(figures)}")
        ok = True
    except Exception as e:
        ok = False
        record["error"] = f"{type(e).__name__}: {e}"[-3000:]
        log(f"{head} FAILED: {record['error'][:600]}")
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record, ok


def measure_cluster(
    peer: Peer, setup: PeerSetup, gen: Generator, plan: Plan, sc: Scenario, rep: int
) -> tuple[dict[str, Any], bool]:
    """The cluster scenario's repetition `rep`: its three set-ups, one record."""
    from bench import cluster

    def measure(_: dict[str, Any]) -> Any:
        return cluster.measure(peer, setup, gen, plan, rep)

    return _measured_record(peer, plan, sc, rep, measure)


def measure_mam(
    peer: Peer,
    gen: Generator,
    plan: Plan,
    sc: Scenario,
    rep: int,
    bench: Any,
    wait_quiet: float = 0.0,
) -> tuple[dict[str, Any], bool]:
    """The message archive scenario's repetition `rep` on a chatgate of its own with the
    archive on (bench/mam.py; the archive is filled at the first): one record."""

    def measure(record: dict[str, Any]) -> Any:
        bench.fill(peer, gen, plan)
        record["waited_for_quiet_s"] = procs.wait_until_quiet(wait_quiet) if wait_quiet > 0 else 0.0
        return bench.measure(peer, gen, plan)

    return _measured_record(peer, plan, sc, rep, measure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = replace(
        plan_for(args.mode, args.repetitions, args.users), authority_wire=args.hooks_wire
    )
    scenarios = effective_scenarios(args.scenarios, args.starttls)
    started = time.time()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out / f"{stamp}-{plan.mode}"
    meta: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "mode": plan.mode,
        "plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__},
        "scenarios": args.scenarios,
        "run_scenarios": [s.name for s in scenarios],
        "starttls_everywhere": args.starttls,
        "mechanism": args.mechanism,
        "server_core": procs.SERVER_CORE,
        "generator_core": procs.GENERATOR_CORE,
    }
    registry = builtin_peers()
    peers: dict[str, Peer] = {}
    skipped: dict[str, str] = {}
    for name in args.servers:
        peer: Peer = registry[name](
            PeerOptions(
                fanout_contacts=plan.fanout_contacts,
                prosody_gc=args.prosody_gc,
                stream_hooks=any(s.name == "authority" for s in scenarios),
                default_features=args.chatgate_features == "default",
            )
        )
        why = peer.available()
        if why is None:
            peers[name] = peer
        elif args.allow_missing:
            skipped[name] = why
            log(f"skipping {name}: {why}")
        else:
            log(f"error: {name}: {why}")
            return 2
    if not peers:
        log("error: no server to measure")
        return 2
    meta["skipped"] = skipped

    log(
        f"bench: {plan.mode} run, {plan.users:,} users, {plan.repetitions} repetition(s), "
        f"servers {', '.join(peers)}, scenarios {', '.join(s.name for s in scenarios)}"
    )
    accounts.load(plan.users)
    cert = ensure_certificate()
    work_root = Path(tempfile.mkdtemp(prefix="chatgate-bench-"))
    gen = Generator(args, plan)
    setups: dict[str, PeerSetup] = {}
    runs: list[dict[str, Any]] = []
    failed = False
    try:
        for name, peer in peers.items():
            setup = PeerSetup(
                work_root / name, plan.users, procs.free_port(), cert, procs.free_port()
            )
            gen.http_ports[name] = setup.http_port
            setup.workdir.mkdir(parents=True)
            setups[name] = setup
            log(f"prepare {name}: accounts and rosters ...")
            notes = provision(peer, setup, gen, plan)
            meta.setdefault("provisioning", {})[name] = notes
            log(f"prepare {name}: done in {notes['seconds']} s")
            make_credentials = getattr(peer, "stream_credentials", None)
            if make_credentials is not None and any(
                s.name == "authority" and s.runs_on(name) for s in scenarios
            ):
                t0 = time.perf_counter()
                try:
                    creds = make_credentials()
                except Exception as e:  # the authority scenario fails, the others run
                    creds = {"error": f"stream credentials: {type(e).__name__}: {e}"[-3000:]}
                gen.stream_credentials[name] = creds
                notes["stream_credentials"] = {
                    "tokens": len(creds.get("tokens", ())),
                    "keys": len(creds.get("keys", ())),
                    "seconds": round(time.perf_counter() - t0, 1),
                    **{k: v for k, v in creds.items() if k.endswith(("_by", "_unavailable"))},
                    **({"error": creds["error"]} if "error" in creds else {}),
                }
                log(f"prepare {name}: stream credentials {notes['stream_credentials']}")
        meta["peers"] = {name: peer.describe() for name, peer in peers.items()}
        procs.pin_self(procs.GENERATOR_CORE)
        # The cluster scenario starts its own set-ups of chatgate (bench/cluster.py).
        cluster_scenario = next((sc for sc in scenarios if sc.name == "cluster"), None)
        # So does the message archive scenario, with the archive on (bench/mam.py).
        mam_scenario = next((sc for sc in scenarios if sc.name == "mam"), None)
        mam_bench = None
        if mam_scenario is not None and "chatgate" in peers:
            from bench.mam import MamBench

            mam_bench = MamBench(setups["chatgate"])
        own_start = ("cluster", "mam")
        units = start_units(plan, [sc for sc in scenarios if sc.name not in own_start])
        for rep in range(1, plan.repetitions + 1):
            for unit in units:
                for name, peer in peers.items():
                    mine = [sc for sc in unit if sc.runs_on(name)]
                    if not mine:
                        continue
                    records, ok = measure_unit(
                        peer, setups[name], gen, plan, mine, rep, args.wait_quiet
                    )
                    failed = failed or not ok
                    runs.extend(records)
            cluster_reps = plan.cluster_repetitions or plan.repetitions
            if cluster_scenario is not None and "chatgate" in peers and rep <= cluster_reps:
                record, ok = measure_cluster(
                    peers["chatgate"], setups["chatgate"], gen, plan, cluster_scenario, rep
                )
                failed = failed or not ok
                runs.append(record)
            if mam_scenario is not None and mam_bench is not None:
                record, ok = measure_mam(
                    peers["chatgate"], gen, plan, mam_scenario, rep, mam_bench, args.wait_quiet
                )
                failed = failed or not ok
                runs.append(record)
    except KeyboardInterrupt:
        failed = True
        log("interrupted")
    finally:
        for peer in peers.values():
            peer.stop()
        if args.keep_workdir or failed:
            log(f"server work directories kept in {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    meta["seconds"] = round(time.time() - started, 1)
    doc = report.build(meta, runs, plan, args.scenarios, args.starttls)
    paths = report.write(doc, out_dir, update_docs=args.update_docs)
    print(doc["markdown"])
    log(f"results: {', '.join(str(p) for p in paths)} ({meta['seconds']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["PLANS", "main"]
