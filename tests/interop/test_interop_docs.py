"""docs/interop.md's commands, run as written (the `interop-run` block)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docblocks import commands, shell_block
from tests.interop import itest_runner

ROOT = Path(__file__).resolve().parents[2]
PAGE = "docs/interop.md"


def block_commands() -> list[list[str]]:
    return [c.split("#")[0].split() for c in commands(shell_block(PAGE, "interop-run"))]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_fetches_the_itests_first() -> None:
    make = [c for c in block_commands() if c[0] == "make"]
    assert make == [["make", "test"], ["make", "slixmpp-itests"]]
    plan = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), "test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    fetch = plan.index("tests/interop/fetch_slixmpp_itests.py")
    assert fetch < plan.index("-m pytest")
    own = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "slixmpp-itests"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "tests/interop/fetch_slixmpp_itests.py" in own


def test_the_pytest_command_names_this_folder() -> None:
    (pytest_command,) = [c for c in block_commands() if "pytest" in c]
    assert pytest_command[-1] == "tests/interop"
    assert (ROOT / pytest_command[-1] / "test_slixmpp_itests.py").is_file()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_the_runner_command_prints_the_table() -> None:
    problem = itest_runner.namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    (runner,) = [c for c in block_commands() if "tests.interop.itest_runner" in c]
    assert runner[0] == ".venv/bin/python"
    done = subprocess.run(
        [sys.executable, *runner[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["itest", "chatgate"]
    assert lines[1].split() == ["test_ping.TestPing.test_ping", "pass"]
    assert lines[2].split() == ["passed", "1"]
    logs = Path(lines[3].removeprefix("logs: "))
    assert (logs / "chatgate" / "itests" / "itests.test_ping.TestPing.test_ping.log").is_file()
    shutil.rmtree(logs)
