"""Debian's ejabberd 23.01, from a private config, tuned as an operator would for a benchmark.

Started with `erl` directly (what `ejabberdctl foreground` runs), as root, with a private config,
spool (Mnesia) and log directory in the harness's work directory and a node name of its own.
Erlang distribution listens on 127.0.0.1 on a port the harness picks, without epmd, so nothing
system-wide is started.

Tuning: shapers off (`c2s_shaper: none`, listener `shaper: none`), `max_fsm_queue` and
`max_user_sessions` raised, logging at `warning`, one scheduler (`+S 1:1`, the server has one
core), more Erlang processes and ports, a larger accept backlog.

Accounts: the same SCRAM-SHA-1 credentials as the other peers are written into Mnesia's `passwd`
table as the `#scram{}` records ejabberd itself stores (base64 StoredKey, ServerKey and salt),
in one batch over Erlang distribution from a hidden control node: what `ejabberdctl register`
would store, without a VM start and a PBKDF2 per user.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import accounts, procs
from bench.peers import PeerOptions, PeerSetup, RunningProcess, WebPaths

ERL = "/usr/bin/erl"
EJABBERD_LIBS = "/usr/lib/x86_64-linux-gnu"

CONFIG = """\
# Private ejabberd config written by bench/peers/ejabberd.py; nothing here is a system service.
hosts:
  - "{domain}"
loglevel: warning
log_rotate_count: 0
certfiles:
  - "{combined}"
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls: true
    starttls_required: false
    backlog: 4096
  -
    port: {http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 4096
    request_handlers:
      /bosh: mod_bosh
      /ws: ejabberd_http_ws
auth_method: [internal]
auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
max_fsm_queue: 1000000
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 1000000
  max_user_offline_messages: 100
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_bosh: {{}}
  mod_disco: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
"""

VM_FLAGS = ["+K", "true", "+P", "1000000", "+Q", "1000000", "+S", "1:1", "+SDcpu", "1:1"]


def _erl_binary(b: bytes) -> str:
    return '<<"' + b.decode("ascii") + '">>'


class EjabberdPeer:
    name = "ejabberd"
    salts_known = True
    web = WebPaths(bosh="/bosh", websocket="/ws")  # the request_handlers in CONFIG

    def __init__(self, options: PeerOptions) -> None:
        del options  # nothing per-run to choose
        self._setup: PeerSetup | None = None
        self._config_text = ""
        self._runner: RunningProcess | None = None
        self._node = f"bench_ejabberd_{os.getpid()}@localhost"
        self._cookie = secrets.token_hex(16)
        self._dist_port = 0

    def available(self) -> str | None:
        if not Path(ERL).exists() or not list(Path(EJABBERD_LIBS).glob("ejabberd-*/ebin")):
            return "ejabberd is not installed (bash bench/install-peers.sh)"
        return None

    def version(self) -> str:
        text = procs.command_output(["dpkg-query", "-W", "-f=${Version}", "ejabberd"])
        otp = procs.command_output(
            [
                ERL,
                "-noshell",
                "-eval",
                'io:format("~s~n", [erlang:system_info(otp_release)]), halt().',
            ]
        )
        return f"ejabberd {text} (Erlang/OTP {otp})" if text else "ejabberd (unknown version)"

    def _argv(self, extra: list[str]) -> list[str]:
        return [
            ERL,
            "-sname",
            self._node,
            "-setcookie",
            self._cookie,
            "-start_epmd",
            "false",
            "-erl_epmd_port",
            str(self._dist_port),
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
            *extra,
        ]

    def _env(self) -> dict[str, str]:
        assert self._setup is not None
        work = self._setup.workdir
        return {
            "EJABBERD_CONFIG_PATH": str(work / "ejabberd.yml"),
            "EJABBERD_LOG_PATH": str(work / "log" / "ejabberd.log"),
            "ERL_LIBS": EJABBERD_LIBS,
            "ERL_MAX_PORTS": "1000000",
            "ERL_CRASH_DUMP": str(work / "log" / "erl_crash.dump"),
            "ERL_CRASH_DUMP_BYTES": "0",
            "HOME": str(work),
        }

    def prepare(self, setup: PeerSetup) -> bool:
        self._setup = setup
        work = setup.workdir
        for sub in ("spool", "log"):
            if (work / sub).exists():
                shutil.rmtree(work / sub)
            (work / sub).mkdir(parents=True)
        self._dist_port = procs.free_port()
        self._config_text = CONFIG.format(
            domain=accounts.DOMAIN,
            combined=setup.cert.combined,
            port=setup.port,
            http_port=setup.http_port,
        )
        (work / "ejabberd.yml").write_text(self._config_text)
        self._runner = RunningProcess(log=work / "ejabberd.stdout.log")
        self._write_accounts_file(work / "passwd.terms", setup.users)
        self.start(timeout=120)
        try:
            self._import_accounts(work / "passwd.terms")
        finally:
            self.stop()
        return False

    def _write_accounts_file(self, path: Path, users: int) -> None:
        host = _erl_binary(accounts.DOMAIN.encode())
        with path.open("w") as f:
            for c in accounts.load(users):
                scram = ",".join(
                    [
                        "scram",
                        _erl_binary(base64.b64encode(c.stored_key)),
                        _erl_binary(base64.b64encode(c.server_key)),
                        _erl_binary(base64.b64encode(c.salt)),
                        "sha",
                        str(c.iterations),
                    ]
                )
                f.write(f"{{passwd,{{{_erl_binary(c.user.encode())},{host}}},{{{scram}}}}}.\n")

    def _import_accounts(self, terms: Path) -> None:
        """One hidden Erlang node writes every record and dumps Mnesia's log."""
        script = (
            f"Node = '{self._node}', "
            "pong = net_adm:ping(Node), "
            f'{{ok, Rs}} = file:consult("{terms}"), '
            "ok = rpc:call(Node, mnesia, wait_for_tables, [[passwd], 60000]), "
            "ok = rpc:call(Node, lists, foreach, [fun mnesia:dirty_write/1, Rs], 600000), "
            "dumped = rpc:call(Node, mnesia, dump_log, []), "
            'io:format("imported ~p~n", [length(Rs)]), halt(0).'
        )
        argv = [
            ERL,
            "-sname",
            f"bench_ctl_{os.getpid()}@localhost",
            "-setcookie",
            self._cookie,
            "-start_epmd",
            "false",
            "-erl_epmd_port",
            str(self._dist_port),
            "-dist_listen",
            "false",
            "-hidden",
            "-noshell",
            "-eval",
            script,
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if out.returncode != 0 or "imported" not in out.stdout:
            raise RuntimeError(f"ejabberd account import failed:\n{out.stdout}\n{out.stderr}")

    def provisioned(self) -> None:
        return None

    def start(self, timeout: float = 120.0) -> int:
        assert self._setup is not None and self._runner is not None
        work = self._setup.workdir
        argv = self._argv(
            [
                "-noinput",
                *VM_FLAGS,
                "-mnesia",
                "dir",
                f'"{work / "spool"}"',
                "-s",
                "ejabberd",
            ]
        )
        return self._runner.start(
            argv, self._setup.port, env=self._env(), cwd=work, timeout=timeout
        )

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop(timeout=60)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version(),
            "command": "taskset -c 0 erl -sname NODE -noinput "
            + " ".join(VM_FLAGS)
            + " -mnesia dir SPOOL -s ejabberd",
            "tuning": [
                "c2s_shaper: none; listener shaper: none (no traffic shaping)",
                "max_fsm_queue: 1000000; max_user_sessions: 1000000",
                "loglevel: warning",
                "Erlang VM: " + " ".join(VM_FLAGS),
                "listener backlog: 4096",
                "ejabberd_http on a plain-HTTP loopback port: /bosh (mod_bosh), "
                "/ws (ejabberd_http_ws); the c2s shaper (none) applies to both",
                "accounts written to Mnesia passwd as #scram{} (SCRAM-SHA-1, 4096 iterations)",
            ],
            "config": self._config_text,
        }
