"""`make install EXTRAS=ldap` installs pyproject's optional dependencies (issue 10,
item 15): the command `serve` and `check` name when an optional package is missing.
Checked with `make -n` (print the commands, run none)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(*args: str) -> str:
    """What `make` would run, whatever is installed already (-B: as if nothing were)."""
    done = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_install_with_extras_installs_them() -> None:
    assert "pip install -q -e '.[ldap]'" in planned("install", "EXTRAS=ldap")


def test_install_without_extras_installs_the_package_alone_and_says_how() -> None:
    plan = planned("install")
    assert "pip install -q -e '.'" in plan
    assert "make install EXTRAS=ldap" in plan


def test_run_takes_extras_too() -> None:
    assert "pip install -q -e '.[ldap]'" in planned("run", "EXTRAS=ldap")


def test_the_ldap_extra_exists_in_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("ldap3") for dep in extras["ldap"])
