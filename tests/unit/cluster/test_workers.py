"""`chatgate serve --workers`: what the parent checks, what each worker runs, and the
supervisor restarting and stopping real processes (not the server: tiny Python ones,
so a test takes a second, not ten)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from chatgate.cluster.workers import (
    CONFIG_REFUSED,
    RestartBackoff,
    WorkerSupervisor,
    check_workers_allowed,
    prepare_shared_state,
    worker_config,
    worker_count,
)
from chatgate.config import Config, load_config
from chatgate.http.connection_limit import shares_ports
from chatgate.vocabulary.errors import ConfigError
from tests.redis_server import RedisServer


def _config(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "chatgate.toml"
    path.write_text(text)
    return load_config(path)


CLUSTER = "[cluster]\nenabled = true\nnode = 'alpha'\n"
LISTENERS = "[[listeners]]\nport = 5222\n[[listeners]]\nport = 5223\ntls = 'direct'\n"


def test_worker_count_auto_is_one_per_usable_core() -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count("auto") == cores
    assert worker_count("0") == cores
    assert worker_count("3") == 3


@pytest.mark.parametrize("value", ["-1", "many", ""])
def test_worker_count_refuses_nonsense(value: str) -> None:
    with pytest.raises(ValueError):
        worker_count(value)


def test_reuse_port_is_accepted_with_the_cluster(tmp_path: Path) -> None:
    config = _config(tmp_path, CLUSTER + "[[listeners]]\nport = 5222\nreuse_port = true\n")
    assert config.listeners[0].reuse_port
    assert shares_ports(config)


def test_reuse_port_without_the_cluster_names_the_option_and_the_cluster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        _config(tmp_path, "[[listeners]]\nport = 5222\nreuse_port = true\n")
    assert "listeners.0.reuse_port" in str(error.value)
    assert "[cluster] enabled" in str(error.value)


def test_a_lone_process_does_not_share_its_http_ports(tmp_path: Path) -> None:
    assert not shares_ports(_config(tmp_path, CLUSTER + LISTENERS))


def test_each_worker_has_its_own_node_name_and_shares_every_port(tmp_path: Path) -> None:
    config = _config(tmp_path, CLUSTER + LISTENERS)
    first, second = worker_config(config, 1), worker_config(config, 2)
    assert (first.cluster.node, second.cluster.node) == ("alpha-w1", "alpha-w2")
    assert all(listener.reuse_port for listener in first.listeners)
    assert [lst.port for lst in first.listeners] == [5222, 5223]
    assert shares_ports(first)
    # what a worker runs is a configuration the validators accept
    again = Config.model_validate(first.model_dump() | {"base_dir": config.base_dir})
    assert again.cluster.node == "alpha-w1"
    assert config.cluster.node == "alpha"  # the parent's is untouched


def test_a_long_node_name_still_makes_valid_worker_names(tmp_path: Path) -> None:
    config = _config(tmp_path, CLUSTER.replace("alpha", "n" * 63) + LISTENERS)
    name = worker_config(config, 12).cluster.node
    assert name.endswith("-w12") and len(name) == 63


def test_workers_are_refused_without_the_cluster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[cluster\] enabled"):
        check_workers_allowed(_config(tmp_path, LISTENERS))


def test_workers_are_refused_with_a_listener_on_port_zero(tmp_path: Path) -> None:
    config = _config(tmp_path, CLUSTER + "[[listeners]]\nport = 0\n")
    with pytest.raises(ConfigError, match=r"listeners\.0\.port"):
        check_workers_allowed(config)


async def test_preparation_refuses_an_unreachable_redis_without_its_password(
    tmp_path: Path,
) -> None:
    from tests.redis_server import free_port

    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    config = _config(
        tmp_path,
        CLUSTER
        + f"redis_url = '{url}'\n[storage]\nurl = 'sqlite+aiosqlite:///db.sqlite'\n"
        + "[[listeners]]\nport = 5222\ntls = 'none'\n[http]\nenabled = false\n",
    )
    with pytest.raises(ConfigError) as error:
        await prepare_shared_state(config)
    assert "cannot be reached" in str(error.value)
    assert "hunter2" not in str(error.value)
    assert (tmp_path / "db.sqlite").exists()  # migrated once before that


async def test_preparation_migrates_and_generates_the_certificate_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = _config(
        tmp_path,
        CLUSTER
        + f"redis_url = '{redis_server.url}'\n[storage]\nurl = 'sqlite+aiosqlite:///db.sqlite'\n"
        + "[server]\ndata_dir = 'var'\n"
        + LISTENERS
        + "[http]\nenabled = false\n",
    )
    await prepare_shared_state(config)
    assert (tmp_path / "var" / "certs" / "localhost.crt").exists()
    from chatgate.storage.database import Database

    db = await Database.open(config.storage_url)  # already at head: nothing to do
    await db.close()


def test_backoff_doubles_while_a_worker_dies_young_and_resets_after_a_long_life() -> None:
    backoff = RestartBackoff(initial=0.5, maximum=4.0, stable_after=30.0)
    assert [backoff.delay(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay(31.0) == 0.5


# -- the supervisor over real processes -------------------------------------------------


def _sleeper(code: int) -> None:
    """A stand-in worker: exits with `code` at once when it is not 0, else sleeps
    until SIGTERM (exiting 0, as the server does)."""
    if code:
        os._exit(code)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    time.sleep(60)


class _Starter:
    def __init__(self, codes: dict[int, list[int]] | None = None) -> None:
        self.started: list[tuple[int, BaseProcess]] = []
        self._codes = codes or {}

    def __call__(self, config: Config, index: int) -> BaseProcess:
        codes = self._codes.get(index, [])
        code = codes.pop(0) if codes else 0
        process = multiprocessing.get_context("fork").Process(target=_sleeper, args=(code,))
        process.start()
        self.started.append((index, process))
        return process


def _run(supervisor: WorkerSupervisor) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run(install_signals=False)))
    thread.start()
    return thread, result


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_killed_worker_is_restarted_and_all_stop_on_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starter = _Starter()
    supervisor = WorkerSupervisor(
        _config(tmp_path, CLUSTER + LISTENERS),
        2,
        starter=starter,
        backoff=RestartBackoff(initial=0.1),
    )
    thread, result = _run(supervisor)
    try:
        _wait_for(lambda: len(starter.started) == 2)
        victim = starter.started[0][1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        _wait_for(lambda: len(starter.started) == 3)
        assert starter.started[2][0] == starter.started[0][0]  # the same worker again
        assert starter.started[2][1].pid != victim.pid
    finally:
        supervisor.request_stop()
        thread.join(20)
    assert result == [0]
    assert all(not process.is_alive() for _, process in starter.started)
    assert "died unexpectedly (signal SIGKILL): restarting in 0.1 s" in caplog.text


def test_a_worker_refusing_its_configuration_stops_everything_with_code_2(
    tmp_path: Path,
) -> None:
    starter = _Starter({2: [CONFIG_REFUSED]})
    supervisor = WorkerSupervisor(_config(tmp_path, CLUSTER + LISTENERS), 2, starter=starter)
    thread, result = _run(supervisor)
    thread.join(20)
    assert result == [CONFIG_REFUSED]
    assert len(starter.started) == 2  # nobody restarted
    assert all(not process.is_alive() for _, process in starter.started)


# -- the command line -------------------------------------------------------------------


def _serve(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from chatgate.cli import app

    config = tmp_path / "chatgate.toml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["serve", "--config", str(config), *args])
    return result.exit_code, result.output


def test_serve_workers_without_the_cluster_exits_2_naming_it(tmp_path: Path) -> None:
    code, output = _serve(tmp_path, LISTENERS, "--workers", "2")
    assert code == 2
    assert "--workers needs [cluster] enabled = true" in " ".join(output.split())


def test_serve_workers_refuses_a_count_that_is_not_one(tmp_path: Path) -> None:
    code, output = _serve(tmp_path, CLUSTER + LISTENERS, "--workers", "lots")
    assert code == 2
    assert "--workers 'lots'" in output


def test_check_shows_the_cluster_without_the_redis_password(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chatgate.cli import app

    config = tmp_path / "chatgate.toml"
    config.write_text(CLUSTER + "redis_url = 'redis://:hunter2@10.0.0.5:6379/0'\n" + LISTENERS)
    result = CliRunner().invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "cluster: node alpha on redis://***@10.0.0.5:6379/0" in result.output
    assert "hunter2" not in result.output


def test_a_worker_that_cannot_reach_redis_says_so_in_one_line(tmp_path: Path) -> None:
    """Redis gone while the supervisor (re)starts a worker: the worker stops what it
    had started, logs why in one line (no traceback, no password) and exits 1."""
    import subprocess
    import sys

    from tests.redis_server import free_port

    path = tmp_path / "chatgate.toml"
    path.write_text(
        CLUSTER
        + f"redis_url = 'redis://:hunter2@127.0.0.1:{free_port()}/0'\n"
        + "[server]\ndata_dir = 'var'\n[storage]\nurl = 'sqlite+aiosqlite:///db.sqlite'\n"
        + f"[[listeners]]\nport = {free_port()}\ntls = 'none'\n[http]\nenabled = false\n"
    )
    script = (
        "import sys; from pathlib import Path; from chatgate.config import load_config;"
        " from chatgate.cluster.workers import run_worker;"
        " run_worker(load_config(Path(sys.argv[1])), 1)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "worker 1 cannot run" in done.stderr and done.stderr.count("cannot be reached") == 1
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
