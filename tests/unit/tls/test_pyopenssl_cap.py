"""pyOpenSSL is capped at the major versions tested, because the TLS fast path uses its
private API (`OpenSSL._util.lib`); see `xmpp/transports/openssl_tls.py` (issue 10, item 9)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def _pyopenssl() -> Requirement:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    found = [Requirement(d) for d in project["dependencies"]]
    (requirement,) = [r for r in found if r.name.lower() == "pyopenssl"]
    return requirement


def test_pyopenssl_has_an_upper_bound_at_a_major_version() -> None:
    caps = [s for s in _pyopenssl().specifier if s.operator == "<"]
    assert len(caps) == 1, "pyOpenSSL needs a cap: its private API is on the fast path"
    cap = Version(caps[0].version)
    assert cap.minor == 0 and cap.micro == 0, "cap at a major version"


def test_the_installed_pyopenssl_is_inside_the_tested_range() -> None:
    installed = Version(version("pyOpenSSL"))
    assert _pyopenssl().specifier.contains(installed)
    # The cap admits the installed major and nothing newer.
    (cap,) = [Version(s.version) for s in _pyopenssl().specifier if s.operator == "<"]
    assert cap.major == installed.major + 1
