"""A misspelt `[modules.*]` table stops `chatgate check` and `chatgate serve` (exit 2).

Both run as an operator runs them, the installed command in a subprocess.
`serve` must refuse before anything starts: no listener, and not even the
data directory is created.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port

pytestmark = pytest.mark.e2e

BAD_TABLES = {
    "unknown module": ("[modules.regster]\nenabled = true\n", "modules.regster: no such module"),
    "unknown option": (
        "[modules.register]\nenabeld = true\n",
        "modules.register.enabeld: unknown option",
    ),
    "wrong type": (
        '[modules.legacy_auth]\ndigest = "yes please"\n',
        "modules.legacy_auth.digest: Input should be a valid boolean",
    ),
}


def write_config(tmp: Path, table: str) -> Path:
    config = tmp / "chatgate.toml"
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "var"

[[listeners]]
port = {free_port()}
tls = "starttls"

{table}"""
    )
    return config


def chatgate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatgate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(("table", "key"), BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_check_exits_2_naming_the_key(tmp_path: Path, table: str, key: str) -> None:
    config = write_config(tmp_path, table)
    result = chatgate("check", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr
    assert "configuration OK" not in result.stdout


@pytest.mark.parametrize(("table", "key"), BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_serve_refuses_to_start(tmp_path: Path, table: str, key: str) -> None:
    config = write_config(tmp_path, table)
    result = chatgate("serve", "--config", str(config), timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr
    assert "listening:" not in result.stderr
    assert not (tmp_path / "var").exists()


def test_check_accepts_valid_module_tables(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[modules.register]\nenabled = true\n[modules.disco]\n")
    result = chatgate("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
