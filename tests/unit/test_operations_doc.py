"""docs/operations.md and examples/chatgate.service tell one story.

The service commands of the page need root and systemd, so they are not run
here; instead each is held against what it must agree with: the unit file
(`systemd-analyze verify`, where it is installed), the user and the paths the
unit names, the `[tls]` paths the certificate hook fills, the listener ports the
SRV records name, and the extras the package declares.  The backup and restore
commands are run for real by tests/e2e/test_backup_restore.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatgate.cli import app
from tests.docblocks import ROOT, blocks, chatgate_arguments, commands, shell_block
from tests.docblocks import simple_commands as words_of

PAGE = "docs/operations.md"
UNIT = ROOT / "examples" / "chatgate.service"


def unit_settings(text: str | None = None) -> dict[str, list[str]]:
    """`Key=value` settings of the unit (a key may repeat), sections merged."""
    settings: dict[str, list[str]] = {}
    for line in (text if text is not None else UNIT.read_text()).splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def one(key: str) -> str:
    values = unit_settings()[key]
    assert len(values) == 1, key
    return values[0]


def page_toml(containing: str) -> dict:
    """The toml snippet of the page that contains `containing`."""
    found = [b for b in blocks("toml") if b.page == PAGE and containing in b.text]
    assert len(found) == 1, containing
    return tomllib.loads(found[0].text)


def all_words(name: str) -> list[list[str]]:
    return [w for command in commands(shell_block(PAGE, name)) for w in words_of(command)]


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


# ---------------------------------------------------------------- the unit file


def test_the_unit_runs_the_server_as_its_own_user_with_private_files() -> None:
    assert one("User") == "chatgate" and one("Group") == "chatgate"
    assert one("UMask") == "0077"
    assert one("StateDirectoryMode") == "0700"
    data_dir = page_toml("data_dir")["server"]["data_dir"]
    assert one("ReadWritePaths") == data_dir == f"/var/lib/{one('StateDirectory')}"
    assert page_toml("data_dir")["storage"]["url"].endswith(f"//{data_dir}/chatgate.db")


def test_the_unit_is_hardened() -> None:
    settings = unit_settings()
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert settings.get(key) == [value], key
    assert "@system-service" in settings["SystemCallFilter"]
    assert "ExecReload" not in settings  # there is no reload: docs say restart


def test_the_unit_starts_a_command_the_cli_accepts() -> None:
    words = one("ExecStart").split()
    arguments = chatgate_arguments(words)
    assert arguments is not None and arguments[0] == "serve"
    result = CliRunner().invoke(app, [*arguments, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this checkout's.
    program = Path(sys.executable).with_name("chatgate")
    assert program.exists()
    text = UNIT.read_text().replace("/opt/chatgate/bin/chatgate", str(program))
    unit = tmp_path / "chatgate.service"
    unit.write_text(text)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert "chatgate.service" not in verify.stderr, verify.stderr
    # The check is a real one: a misspelt directive is reported.
    unit.write_text(text.replace("ProtectHome=", "ProtectHom="))
    broken = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "ProtectHom" in broken.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    if exposure is not None:  # systemd >= 250
        assert float(exposure.group(1)) <= 2.0, security.stdout


# ---------------------------------------------------------------- the page's commands


def test_the_install_commands_make_what_the_unit_expects() -> None:
    install = all_words("service-install")
    useradd = next(w for w in install if w[0] == "useradd")
    assert useradd[-1] == one("User")
    assert option(useradd, "--home-dir") == one("ReadWritePaths")
    data = next(w for w in install if w[0] == "install" and w[-1] == one("ReadWritePaths"))
    assert option(data, "-m") == "0700" and option(data, "-o") == one("User")
    config = option(one("ExecStart").split(), "--config")
    init = next(w for w in install if chatgate_arguments(w) is not None)
    assert chatgate_arguments(init) == ["init", "--config", config]
    assert ["chmod", "0640", config] in install
    assert ["chgrp", one("Group"), config] in install
    venv = next(w for w in install if w[:3] == ["python3", "-m", "venv"])
    assert one("ExecStart").startswith(f"{venv[3]}/bin/chatgate ")


def test_the_enable_commands_install_this_unit() -> None:
    enable = all_words("service-enable")
    copy = next(w for w in enable if w[0] == "install")
    assert (ROOT / copy[-2]).resolve() == UNIT
    assert copy[-1] == "/etc/systemd/system/chatgate.service"
    assert ["systemctl", "enable", "--now", "chatgate"] in enable


def test_the_administration_commands_run_as_the_service_user() -> None:
    config = option(one("ExecStart").split(), "--config")
    for words in all_words("service-cli"):
        assert words[:3] == ["sudo", "-u", one("User")]
        assert option(words, "--config") == config


def test_the_certificate_hook_fills_the_tls_paths_and_restarts() -> None:
    tls = page_toml("private_key")["tls"]
    hook = all_words("certbot-deploy-hook")
    installed = {w[-1]: w for w in hook if w[0] == "install" and "-d" not in w}
    assert set(installed) == {tls["certificate"], tls["private_key"]}
    key = installed[tls["private_key"]]
    assert option(key, "-m") == "0640" and option(key, "-g") == one("Group")
    assert ["systemctl", "restart", "chatgate"] in hook


def test_the_srv_records_name_the_documented_ports() -> None:
    (zone,) = [b for b in blocks("text") if b.page == PAGE and "_xmpp-client" in b.text]
    ports = {}
    for line in zone.text.splitlines():
        fields = line.split()
        if "SRV" in fields:
            ports[fields[0].split(".")[0]] = int(fields[fields.index("SRV") + 3])
    listeners = page_toml('"::"')["listeners"]
    by_tls = {listener["tls"]: listener["port"] for listener in listeners}
    assert ports == {"_xmpp-client": by_tls["starttls"], "_xmpps-client": by_tls["direct"]}
    assert {listener["host"] for listener in listeners} == {"0.0.0.0", "::"}


def test_the_extras_table_lists_every_extra_the_package_declares() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    operator_extras = {k: v for k, v in extras.items() if k not in ("test", "bench")}
    text = (ROOT / PAGE).read_text()
    rows = dict(re.findall(r"^\| `([\w-]+)` \| `([\w.-]+)` \|", text, re.M))
    assert set(rows) == set(operator_extras)
    for extra, package in rows.items():
        assert any(re.match(rf"{re.escape(package)}\b", r) for r in operator_extras[extra])
        assert f"pip install 'chatgate[{extra}]'" in text
