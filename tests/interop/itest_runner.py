"""Run slixmpp's itests against one server, inside a private network and mount namespace.

``run(server, ...)`` (what the pytest test calls) starts this module again under
``unshare --mount --net`` (root only; util-linux), where it

1. brings up a loopback of its own, on which nothing else listens, so the standard ports that
   the itests assume (5222, 5223, 5347) are free whatever runs on the machine, and two servers
   run side by side;
2. bind-mounts, in its own mount namespace only, an ``/etc/hosts`` that resolves ``prosody``
   and its service names to 127.0.0.1 and an ``/etc/resolv.conf`` pointing at the loopback (so
   the clients' SRV lookups are refused at once instead of timing out on a network that is not
   there);
3. prepares and starts the server (``itest_servers``), then runs every itest as its own
   ``python -m unittest -v itests.MODULE.CLASS.TEST`` from the sdist folder, with the
   environment slixmpp's CI gives them (``CI=woodpecker``, ``CI_ACCOUNT1``...,
   ``CI_MUC_SERVER``) and the server's certificate trusted through ``SSL_CERT_FILE``; a pool of
   workers, each with its own pair of accounts, runs them, each bounded by a timeout;
4. writes one JSON document: per test its outcome (``pass``, ``fail``, ``error``, ``skip``,
   ``timeout``), seconds and the exception line or skip reason; the server's version, and
   whether it was still running at the end.

Run by hand: ``python -m tests.interop.itest_runner --server chatgate [--only test_muc]``
prints the table (root needed for ``unshare``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.interop import itest_servers

REPO = Path(__file__).resolve().parents[2]
OUTCOMES = ("pass", "fail", "error", "skip", "timeout")
#: one itest's bound: slixmpp's `wait_until` gives up after 30 s, a test waits for a few
TEST_TIMEOUT = 75.0
WORKERS = 4


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: str
    seconds: float
    detail: str = ""


class NamespaceError(RuntimeError):
    """The private namespace could not be made (not root, no unshare)."""


# --- inside the namespace ------------------------------------------------------------------


def _enter_private_network(work: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost " + " ".join(itest_servers.HOSTNAMES) + "\n")
    resolv = work / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    for private, system in ((hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")):
        subprocess.run(["mount", "--bind", str(private), system], check=True)


def discover(itests: Path) -> list[str]:
    """Every itest's unittest id (``itests.test_x.Class.test_y``), as unittest loads them."""
    sys.path.insert(0, str(itests.parent))
    try:
        ids: list[str] = []
        loader = unittest.TestLoader()
        for path in sorted(itests.glob("test_*.py")):
            module = __import__(f"itests.{path.stem}", fromlist=["_"])
            ids.extend(t.id() for t in _flatten(loader.loadTestsFromModule(module)))
        return ids
    finally:
        sys.path.remove(str(itests.parent))


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    out: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


_SUMMARY = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$")


def parse_unittest_output(text: str) -> tuple[str, str]:
    """(outcome, detail) of a one-test ``unittest -v`` run, from its summary line, its
    ``... skipped 'why'`` line and the last line of its traceback."""
    lines = text.splitlines()
    summary = next((m for line in reversed(lines) if (m := _SUMMARY.match(line.strip()))), None)
    if summary is None:
        return "error", "no unittest summary: " + (lines[-1] if lines else "no output")
    status, counts = summary.group(1), summary.group(2) or ""
    if status == "OK":
        if "skipped" in counts:
            skip = re.search(r"\.\.\. skipped '(.*)'", text)
            return "skip", skip.group(1) if skip else counts
        return "pass", ""
    return ("error" if "errors" in counts else "fail"), _exception_text(lines)[:300]


def _exception_text(lines: list[str]) -> str:
    """The last traceback's exception: the lines after its last ``File`` line, up to the
    unittest separator (an assertion's message may take several)."""
    last_file = max((i for i, line in enumerate(lines) if line.startswith("  File ")), default=-1)
    found: list[str] = []
    for line in lines[last_file + 1 :]:
        if line.startswith(("---", "===")):
            break
        if found or (line.strip() and not line.startswith(" ")):
            found.append(line.strip())
    return " | ".join(x for x in found if x)


def selected(test_id: str, only: list[str]) -> bool:
    """Whether `--only` keeps an itest: its name (``test_muc.TestMUC.test_kick``) is or
    starts with one of them as a dotted prefix (``test_muc``, ``test_muc.TestMUC``)."""
    name = test_id.removeprefix("itests.")
    return not only or any(name == o or name.startswith(o + ".") for o in only)


def run_one(test_id: str, itests: Path, env: dict[str, str], log: Path, timeout: float) -> Outcome:
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "unittest", "-v", test_id],
            cwd=itests.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Outcome("timeout", round(time.monotonic() - start, 1), f"over {timeout:.0f} s")
    outcome, detail = parse_unittest_output(log.read_text(errors="replace"))
    return Outcome(outcome, round(time.monotonic() - start, 1), detail)


def _itest_env(server: itest_servers.ItestServer, worker: int, trust: Path) -> dict[str, str]:
    first, second = itest_servers.account_pair(worker)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "PYTEST"))}
    env.update(
        {
            # what slixmpp's CI sets: Woodpecker's CI=woodpecker, the test_integration_local
            # step's accounts and MUC service (.woodpecker/test-integration.yml)
            "CI": "woodpecker",
            "CI_ACCOUNT1": first.jid,
            "CI_ACCOUNT1_PASSWORD": first.password,
            "CI_ACCOUNT2": second.jid,
            "CI_ACCOUNT2_PASSWORD": second.password,
            "CI_MUC_SERVER": server.muc_service,
            # the CI adds the server's certificate to the trust store; this is its
            # process-local form
            "SSL_CERT_FILE": str(trust),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.pop("PYTHONPATH", None)
    return env


def run_inside(
    name: str, itests: Path, work: Path, workers: int, timeout: float, only: list[str]
) -> dict[str, Any]:
    _enter_private_network(work)
    server = itest_servers.build(name, itests)
    report: dict[str, Any] = {"server": name, "results": {}}
    reason = server.available()
    if reason is not None:
        report["unavailable"] = reason
        return report
    report["version"] = server.version()
    ids = [i for i in discover(itests) if selected(i, only)]
    trust = server.prepare(work / "server", workers)
    server.start()
    pending: queue.Queue[str] = queue.Queue()
    for test_id in ids:
        pending.put(test_id)
    results: dict[str, Outcome] = {}
    logs = work / "itests"
    logs.mkdir()

    def worker(index: int) -> None:
        env = _itest_env(server, index, trust)
        while True:
            try:
                test_id = pending.get_nowait()
            except queue.Empty:
                return
            results[test_id] = run_one(test_id, itests, env, logs / f"{test_id}.log", timeout)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report["server_running_at_end"] = server_alive(server)
    server.stop()
    report["results"] = {
        test_id.removeprefix("itests."): asdict(results[test_id]) for test_id in ids
    }
    report["server_log_tail"] = _tail(server.log(), 40)
    report["server_log"] = str(server.log())
    try:
        report["server_tracebacks"] = traceback_summaries(server.log().read_text(errors="replace"))
    except OSError as exc:
        report["server_tracebacks"] = [f"no server log: {exc}"]
    return report


def traceback_summaries(log_text: str) -> list[str]:
    """The exception line ending each Python traceback in a server's log (its first line
    that is not indented after the ``Traceback`` line), in order."""
    found: list[str] = []
    in_tb = False
    for line in log_text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
        elif in_tb and line.strip() and not line.startswith((" ", "\t")):
            found.append(line.strip()[:300])
            in_tb = False
    return found


def server_alive(server: itest_servers.ItestServer) -> bool:
    process = getattr(server, "_process", None)
    proc = getattr(process, "proc", None)
    return proc is not None and proc.poll() is None


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- outside: start the namespace ----------------------------------------------------------


def namespace_problem() -> str | None:
    """None when ``unshare --mount --net`` works here, otherwise why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) and ip (iproute2) are needed"
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "--", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot make a private network namespace (root needed): {probe.stderr.strip()}"
    return None


def run(
    server: str,
    itests: Path,
    work: Path,
    *,
    workers: int = WORKERS,
    test_timeout: float = TEST_TIMEOUT,
    total_timeout: float = 900.0,
    only: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the itests against `server` in a private namespace; its JSON report as a dict."""
    problem = namespace_problem()
    if problem is not None:
        raise NamespaceError(problem)
    work.mkdir(parents=True, exist_ok=True)
    out = work / "report.json"
    argv = [
        "unshare", "--mount", "--net", "--fork", "--",
        sys.executable, "-m", "tests.interop.itest_runner", "--inside",
        "--server", server, "--itests", str(itests), "--work", str(work),
        "--workers", str(workers), "--timeout", str(test_timeout), "--out", str(out),
    ]  # fmt: skip
    for o in only:
        argv += ["--only", o]
    log = work / "runner.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(total_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"{server}: itests over {total_timeout:.0f} s; see {log}") from None
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{server}: runner exited {proc.returncode}:\n{_tail(log, 40)}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def format_table(reports: list[dict[str, Any]]) -> str:
    names = [r["server"] for r in reports]
    ids = sorted({i for r in reports for i in r["results"]})
    rows = [f"{'itest':<58}" + "".join(f"{n:>10}" for n in names)]
    for test_id in ids:
        cells = "".join(f"{r['results'].get(test_id, {}).get('outcome', '-'):>10}" for r in reports)
        rows.append(f"{test_id:<58}{cells}")
    passed = "".join(
        f"{sum(v['outcome'] == 'pass' for v in r['results'].values()):>10}" for r in reports
    )
    rows.append(f"{'passed':<58}{passed}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", choices=["chatgate", "prosody"])
    parser.add_argument("--itests", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--timeout", type=float, default=TEST_TIMEOUT)
    parser.add_argument(
        "--only", action="append", default=[], help="an itest module, class or test; repeatable"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        report = run_inside(
            args.server[0], args.itests, args.work, args.workers, args.timeout, args.only
        )
        args.out.write_text(json.dumps(report, indent=1))
        return 0
    from tests.interop import fetch_slixmpp_itests

    itests = args.itests or fetch_slixmpp_itests.ensure() / "itests"
    work = args.work or Path(tempfile.mkdtemp(prefix="slixmpp-itests-"))
    reports = [
        run(s, itests, work / s, workers=args.workers, test_timeout=args.timeout,
            only=tuple(args.only))
        for s in (args.server or ["chatgate", "prosody"])
    ]  # fmt: skip
    print(format_table(reports))
    print(f"logs: {work}")
    for r in reports:
        for test_id, v in r["results"].items():
            if v["outcome"] != "pass":
                print(f"{r['server']}: {test_id}: {v['outcome']}: {v['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
