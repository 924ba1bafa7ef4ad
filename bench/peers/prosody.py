"""Debian's Prosody 0.12, from a private config, tuned as an operator would for a benchmark.

Tuning: the epoll backend (named explicitly), no mod_limits (so no c2s rate limit), s2s and every
module the benchmark does not exercise left out, logging at `warn` to a file, a larger TCP
backlog. Accounts are written straight into `internal_hashed` storage files
(`data/localhost/accounts/u<n>.dat`: salt, iteration_count, stored_key and server_key in hex),
which is what `prosodyctl adduser` would write, without a Lua process per user.

Prosody is run as root with `run_as_root = true` in the private config: the data lives in the
harness's work directory, not in /var/lib/prosody, and no system service is involved.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench import accounts, procs
from bench.peers import PeerOptions, PeerSetup, RunningProcess, WebPaths

PROSODY = "/usr/bin/prosody"

CONFIG = """\
-- Private Prosody config written by bench/peers/prosody.py; nothing here is a system service.
run_as_root = true
daemonize = false
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
plugin_paths = {{}}
log = {{ warn = "{work}/prosody.log" }}

-- Network: the epoll backend (0.12's best), loopback only, no s2s, bigger accept backlog.
network_backend = "epoll"
network_settings = {{ tcp_backlog = 4096 }}
interfaces = {{ "127.0.0.1" }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
legacy_ssl_ports = {{ }}

-- XMPP over HTTP (mod_bosh at /http-bind, mod_websocket at /xmpp-websocket) on one plain-HTTP
-- port on loopback; no HTTPS listener. Both transports count as secure there, as they would
-- behind a TLS-terminating proxy, so SASL runs over them as over STARTTLS.
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
https_interfaces = {{ }}
http_default_host = "{domain}"
consider_bosh_secure = true
consider_websocket_secure = true

-- Benchmark policy: TLS offered (STARTTLS) but not required; no rate limits (mod_limits is not
-- loaded); PLAIN allowed without TLS so the PLAIN flag works on plain TCP.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
{gc}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "bosh"; "websocket";
}}
modules_disabled = {{ "s2s" }}

certificates = "{work}/certs"
ssl = {{ certificate = "{cert}"; key = "{key}" }}

VirtualHost "{domain}"
    ssl = {{ certificate = "{cert}"; key = "{key}" }}

-- Group chat for the MUC scenario (issue 15): Prosody's own mod_muc, rooms open to anyone,
-- no archive (mod_muc_mam is not loaded: the scenario measures fan-out).
Component "conference.{domain}" "muc"
    restrict_room_creation = false
"""

ACCOUNT = """\
return {{
\t["iteration_count"] = {iterations};
\t["salt"] = "{salt}";
\t["server_key"] = "{server_key}";
\t["stored_key"] = "{stored_key}";
}};
"""


class ProsodyPeer:
    name = "prosody"
    salts_known = True
    web = WebPaths(bosh="/http-bind", websocket="/xmpp-websocket")  # mod_bosh's, mod_websocket's

    def __init__(self, options: PeerOptions) -> None:
        # Lua 5.4's generational collector: Prosody's default (incremental, threshold 105)
        # costs it about half its messages/s and two thirds of its logins/s on this machine.
        self._gc = f'gc = {{ mode = "{options.prosody_gc}" }}'
        self._setup: PeerSetup | None = None
        self._config_text = ""
        self._runner: RunningProcess | None = None

    def available(self) -> str | None:
        if not Path(PROSODY).exists():
            return "prosody is not installed (bash bench/install-peers.sh)"
        return None

    def version(self) -> str:
        text = procs.command_output(["dpkg-query", "-W", "-f=${Version}", "prosody"])
        return f"Prosody {text}" if text else "Prosody (unknown version)"

    def prepare(self, setup: PeerSetup) -> bool:
        self._setup = setup
        work = setup.workdir
        data = work / "data"
        if data.exists():
            shutil.rmtree(data)
        acct_dir = data / accounts.DOMAIN / "accounts"  # "localhost" needs no %-encoding
        acct_dir.mkdir(parents=True)
        (work / "certs").mkdir(exist_ok=True)
        for cred in accounts.load(setup.users):
            (acct_dir / f"{cred.user}.dat").write_text(
                ACCOUNT.format(
                    iterations=cred.iterations,
                    salt=cred.salt.decode(),
                    server_key=cred.server_key.hex(),
                    stored_key=cred.stored_key.hex(),
                )
            )
        self._config_text = CONFIG.format(
            work=work,
            port=setup.port,
            http_port=setup.http_port,
            gc=self._gc,
            cert=setup.cert.certificate,
            key=setup.cert.private_key,
            domain=accounts.DOMAIN,
        )
        (work / "prosody.cfg.lua").write_text(self._config_text)
        self._runner = RunningProcess(log=work / "prosody.stdout.log")
        return False

    def provisioned(self) -> None:
        return None

    def start(self) -> int:
        assert self._setup is not None and self._runner is not None
        cfg = self._setup.workdir / "prosody.cfg.lua"
        return self._runner.start([PROSODY, "-F", "--config", str(cfg)], self._setup.port)

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version(),
            "command": f"taskset -c {procs.SERVER_CORE} {PROSODY} -F --config prosody.cfg.lua",
            "tuning": [
                'network_backend = "epoll"',
                "mod_limits not loaded (no c2s rate limit); s2s disabled",
                "logging at warn to a file",
                "tcp_backlog = 4096",
                "mod_bosh and mod_websocket on a plain-HTTP loopback port, "
                "consider_bosh_secure / consider_websocket_secure = true",
                self._gc,
                "accounts written as internal_hashed .dat files (SCRAM-SHA-1, 4096 iterations)",
            ],
            "config": self._config_text,
        }
