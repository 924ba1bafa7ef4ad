"""Debian's nginx for the end-to-end tests: run from a temporary folder on
loopback, in the foreground, never as the system service."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def write_conf(tmp: Path, body: str, *, modules: tuple[Path, ...] = ()) -> Path:
    """`tmp/nginx.conf`: one foreground worker whose pid and error log are in
    `tmp`, dynamic `modules` loaded, then `body` (the `http` or `rtmp` block)."""
    loads = "".join(f"load_module {module};\n" for module in modules)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""{loads}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
{body}
"""
    )
    return conf


@contextmanager
def running(conf: Path, tmp: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """nginx with `conf` until the block ends; `ready` is asked until it says the
    server answers (10 s at most, failing at once if nginx exits)."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (tests/install-system-deps.sh installs it)")
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not ready():
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
            assert time.monotonic() < deadline, "nginx did not answer within 10 s"
            time.sleep(0.1)
        yield
    finally:
        nginx.terminate()
        nginx.wait(10)
