"""chatgate itself, from a private config, in the same harness as the peers.

Contract with chatgate (docs/benchmarks.md): `chatgate serve --config FILE` runs in the
foreground (the process we measure), `chatgate user import FILE --config FILE` creates accounts
from `username password` lines. chatgate chooses its own SCRAM salts, so the harness learns them
once (SASL first step, then abort) and computes the generator's keys before any measurement.

Account creation and roster provisioning cost minutes at 20,000 users, so the provisioned data
directory is cached in `bench/.cache/`, keyed by the user count, the fan-out roster size and a
hash of chatgate's storage and auth code (a schema change rebuilds it).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import accounts, authority, procs
from bench.peers import PeerOptions, PeerSetup, RunningProcess, WebPaths

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "chatgate"

CONFIG = """\
# Private chatgate config written by bench/peers/chatgate.py.
[server]
domain = "{domain}"
data_dir = "{data}"
log_level = "warning"

[[listeners]]
host = "127.0.0.1"
port = {port}
tls = "starttls"
require_tls = false

[tls]
certificate = "{cert}"
private_key = "{key}"

[auth]
mechanisms = ["SCRAM-SHA-1", "PLAIN"]
allow_plain_without_tls = true

[auth.throttle]
# Brute-force protection off, as the peers run without mod_limits / mod_fail2ban: the
# generator opens thousands of logins a second from one address.
enabled = false

[limits]
# Traffic shaping as wide open as the peers' (no mod_limits, ejabberd shapers off), but
# still on, so its cost per read is in the figures: the generator sends ~1 MB/s per
# sender and opens K logins at once from one address.
c2s_rate = 1_000_000_000
c2s_burst = 1_000_000_000
preauth_rate = 1_000_000_000
preauth_burst = 1_000_000_000
preauth_stanzas_per_second = 1_000_000
preauth_stanza_burst = 1_000_000
max_preauth_connections_per_address = 100_000

[storage]
url = "sqlite+aiosqlite:///{data}/chatgate.db"
{http}{streams}
[modules.register]
# The bench's accounts (bench/accounts.py) have the short passwords pw0, pw1, ...
# that every peer imports; chatgate's account policy would refuse them.
min_password_length = 1

# The same features as the peers' benchmark configurations (Prosody loads roster, disco,
# ping, BOSH, WebSocket and, for the group chat scenario, mod_muc without an archive):
# what issue 15 added and they do not load is off, so each figure compares the same work.
[modules.mam]
enabled = false
[modules.carbons]
enabled = false
[modules.blocking]
enabled = false
[modules.push]
enabled = false
[modules.pep]
enabled = false
[modules.private_storage]
enabled = false
[modules.bookmarks]
enabled = false
[modules.adhoc]
enabled = false
[modules.upload]
enabled = false
[modules.stream_management]
enabled = false
[modules.csi]
enabled = false
"""


#: where the block that turns issue 15's features off starts in `CONFIG`
PARITY = "# The same features as the peers' benchmark configurations"

HTTP = """
[http]
# BOSH at /http-bind and WebSocket at /xmpp-websocket (issue 11), plain HTTP on loopback;
# the HTTPS port is a free one too, so a running development server's 5281 is never hit.
port = {http_port}
tls_port = {https_port}

[http.chat]
# The bundled web chat is not measured; its static route stays out of the way.
enabled = false
"""

NO_HTTP = """
# [http] left out: this chatgate has no HTTP listener yet (no `http` table in its Config), so
# the BOSH and WebSocket scenarios fail at their first login with connection refused.
"""


STREAMS = """
[streams]
# The stream authority's hooks (issue 12) for the authority scenario: nginx-rtmp's
# on_play under bench/ with a token, a stream key or an account's password
# (bench/authority.py); hook_networks stays loopback.
enabled = true
rules = [{rules}]
"""


def streams_supported() -> bool:
    """Whether this chatgate's configuration knows the `[streams]` table (issue 12)."""
    try:
        from chatgate.config import Config
    except ImportError:
        return False
    return "streams" in Config.model_fields


def http_supported() -> bool:
    """Whether this chatgate's configuration knows the `[http]` table (issue 11).

    Its configuration refuses unknown tables, so writing `[http]` into a chatgate that predates
    its HTTP listener would stop every scenario, TCP included, from starting.
    """
    try:
        from chatgate.config import Config
    except ImportError:
        return False
    return "http" in Config.model_fields


def chatgate_command() -> list[str]:
    """The installed console script next to this Python, else `python -m chatgate`."""
    script = Path(sys.executable).with_name("chatgate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chatgate"]


def _code_hash() -> str:
    h = hashlib.sha256()
    for sub in ("storage", "auth", "sasl", "config.py"):
        root = SRC / sub
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(SRC)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


class ChatgatePeer:
    name = "chatgate"
    salts_known = False
    web = WebPaths(bosh="/http-bind", websocket="/xmpp-websocket")  # DESIGN.md's listener

    def __init__(self, options: PeerOptions) -> None:
        self._setup: PeerSetup | None = None
        self._config_text = ""
        self._runner: RunningProcess | None = None
        self.fanout_contacts = options.fanout_contacts
        self.stream_hooks = options.stream_hooks
        self.default_features = options.default_features

    def available(self) -> str | None:
        try:
            out = subprocess.run(
                [*chatgate_command(), "--help"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"chatgate is not runnable: {e}"
        if out.returncode != 0 or "serve" not in out.stdout:
            return f"chatgate --help failed: {(out.stderr or out.stdout).strip()[-300:]}"
        return None

    def version(self) -> str:
        out = procs.command_output([*chatgate_command(), "version"])
        rev = procs.command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = procs.command_output(["git", "-C", str(REPO), "status", "--porcelain", "src"])
        return f"{out or 'chatgate'} (git {rev}{'+dirty' if dirty else ''})"

    def _cache_dir(self, users: int) -> Path:
        return accounts.CACHE_DIR / f"chatgate-{users}u-{self.fanout_contacts}r-{_code_hash()}"

    def prepare(self, setup: PeerSetup) -> bool:
        self._setup = setup
        work = setup.workdir
        data = work / "var"
        if data.exists():
            shutil.rmtree(data)
        self._config_text = CONFIG.format(
            domain=accounts.DOMAIN,
            data=data,
            port=setup.port,
            cert=setup.cert.certificate,
            key=setup.cert.private_key,
            http=(
                HTTP.format(http_port=setup.http_port, https_port=procs.free_port())
                if setup.http_port and http_supported()
                else NO_HTTP
            ),
            streams=(
                STREAMS.format(rules=", ".join(f'"{r}"' for r in authority.RULES))
                if self.stream_hooks and streams_supported()
                else ""
            ),
        )
        if self.default_features:  # every feature as an operator gets it by default
            self._config_text = self._config_text[: self._config_text.index(PARITY)]
        cfg = work / "chatgate.toml"
        cfg.write_text(self._config_text)
        self._runner = RunningProcess(log=work / "chatgate.log")
        cached = self._cache_dir(setup.users)
        if (cached / "READY").exists():
            shutil.copytree(cached / "var", data)
            return True
        data.mkdir(parents=True)
        users_file = work / "users.txt"
        accounts.write_import_file(users_file, setup.users)
        out = subprocess.run(
            [*chatgate_command(), "user", "import", str(users_file), "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=work,
        )
        if out.returncode != 0:
            raise RuntimeError(f"chatgate user import failed:\n{out.stdout}\n{out.stderr}")
        return False

    def stream_credentials(self) -> dict[str, Any]:
        """Tokens and stream keys for the authority scenario, made with `chatgate streams`
        in the prepared data directory (the server stopped)."""
        assert self._setup is not None
        return authority.provision(chatgate_command(), self._setup.workdir / "chatgate.toml")

    def provisioned(self) -> None:
        """Keep the provisioned data directory for the next run."""
        assert self._setup is not None
        cached = self._cache_dir(self._setup.users)
        if cached.exists():
            shutil.rmtree(cached)
        cached.mkdir(parents=True)
        shutil.copytree(self._setup.workdir / "var", cached / "var")
        (cached / "READY").write_text("ok\n")

    def start(self) -> int:
        assert self._setup is not None and self._runner is not None
        cfg = self._setup.workdir / "chatgate.toml"
        return self._runner.start(
            [*chatgate_command(), "serve", "--config", str(cfg)],
            self._setup.port,
            cwd=self._setup.workdir,
        )

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop(timeout=30)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version(),
            "command": "taskset -c 0 chatgate serve --config chatgate.toml",
            "tuning": [
                "one process on one core; log_level warning",
                "[auth.throttle] enabled = false (brute-force protection off, like the peers)",
                "accounts created with `chatgate user import` (its own salts and iterations)",
                "issue 15's features (archive, carbons, blocking, PEP, ...) "
                + (
                    "on, as chatgate's defaults (--chatgate-features default)"
                    if self.default_features
                    else "off, as the peers' bench configurations load none of them; MUC on"
                ),
            ],
            "config": self._config_text,
        }
