"""Process plumbing for the harness: pinned start, readiness, /proc sampling, stop by PID.

Owns how a server process is started (pinned to one core with `taskset`, file-descriptor soft
limit raised to the hard limit, its own session so a Ctrl-C reaches only the harness) and how it
is measured from outside (CPU ticks and RSS from /proc). It never signals a process it did not
start.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"
SERVER_CORE = 0
GENERATOR_CORE = 1


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that no other call here returned.

    Picked below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
    default): the generator opens tens of thousands of client connections whose ports linger in
    TIME_WAIT, and a port the kernel handed out for bind(0) can collide with one of those when a
    server later tries to listen on it.
    """
    low, high = 15000, 32000
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high} on {LOOPBACK}")


def start_pinned(
    argv: Sequence[str],
    *,
    core: int | str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` pinned to `core` (or a `taskset -c` list such as "0,1"); its PID is the
    server's PID (taskset and env exec)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            ["taskset", "-c", str(core), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            preexec_fn=raise_nofile,
            start_new_session=True,
        )
    finally:
        log.close()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Wait until something accepts on 127.0.0.1:port; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n{tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout}s; see {log}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def exe_name(pid: int) -> str:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return "?"


def pin_self(core: int) -> None:
    """Pin the calling process (and children it starts later) to one core."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {core})


def command_output(argv: Sequence[str]) -> str:
    """First line of a version command, or '' when it is missing."""
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0] if out else ""


def machine_busy_seconds() -> float:
    """user + nice + system CPU seconds of the whole machine (all cores), from /proc/stat.

    irq and softirq time is left out: loopback traffic is partly processed there, on behalf of
    the server and the generator, and is nobody else's load.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()[1:4]
    return sum(int(x) for x in fields) / CLK_TCK


def wait_until_quiet(max_seconds: float, threshold_pct: float = 25.0) -> float:
    """Wait (at most `max_seconds`) until the machine's load is below `threshold_pct` of one
    core over half a second, with none of our servers running; return the seconds waited."""
    t0 = time.monotonic()
    while True:
        b0, w0 = machine_busy_seconds(), time.monotonic()
        time.sleep(0.5)
        busy = 100 * (machine_busy_seconds() - b0) / (time.monotonic() - w0)
        waited = time.monotonic() - t0
        if busy < threshold_pct or waited >= max_seconds:
            return round(waited, 1)
