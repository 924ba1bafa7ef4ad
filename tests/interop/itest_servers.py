"""The two servers slixmpp's itests run against, set up the way slixmpp's own CI sets up Prosody.

slixmpp's CI (``.woodpecker/test-integration.yml``, ``compose.yml`` and ``Containerfile`` in the
sdist) runs its itests against a Prosody container reachable as ``prosody``: accounts
``slix-ci-1@prosody`` / ``slix-ci-2@prosody`` made with ``prosodyctl register``, a MUC service on
``muc.prosody``, a component ``slixmpp.prosody`` (secret ``secret``) on port 5347, the standard
ports 5222 (STARTTLS) and 5223 (direct TLS), and the server's certificate added to the system's
trust store. Several itests depend on exactly that: ``test_tls_check`` asserts the peer ports
5222 and 5223, ``test_component`` connects to ``prosody:5347`` as ``slixmpp.prosody``.

Both servers here get that environment: they run inside a private network and mount namespace
(``itest_runner``) where ``prosody`` and its service names resolve to 127.0.0.1 and nothing else
listens, so the standard ports are free and no test edits or patches slixmpp's code. The client
trusts the server's certificate through ``SSL_CERT_FILE`` (OpenSSL's default verify path, read by
Python's ``ssl`` and so by slixmpp and aiohttp), the process-local equivalent of the CI's
``update-ca-certificates``.

* Prosody runs slixmpp's own ``itests/prosody.cfg.lua``, with only what a throwaway copy needs
  set before its first ``VirtualHost`` (foreground, private data/log/pid/certificate paths,
  loopback, the status file its CI writes to ``/var/www``). Debian's Prosody 0.12 lacks two of
  the modules its CI installs from the Prosody community repository: ``mod_muc_moderation`` comes
  from Debian's ``prosody-modules`` when installed; ``mod_service_outage_status`` is in neither.
* chatgate runs as an operator runs it (``chatgate serve`` on a TOML file, accounts with
  ``chatgate user import``), every builtin module at its defaults, its generated self-signed
  certificate, domain ``prosody``; its MUC service is at its default ``conference.prosody``,
  which the itests are told through their own ``CI_MUC_SERVER`` variable; the CI's component
  ``slixmpp.prosody`` (secret ``secret``) is a ``[[components]]`` entry, its port 5347 the
  ``[component_listener]``.

Each parallel worker gets its own pair of accounts (``slix-ci-1``/``slix-ci-2`` for the first,
as in slixmpp's CI, then ``slix-ci-3``/``slix-ci-4`` ...), so itests running at the same time never
share an account's blocklist, archive or PEP nodes; one worker's itests run one after another on
its pair, as slixmpp's CI runs all of them on its single pair.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench import procs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOMAIN = "prosody"
STARTTLS_PORT = 5222
DIRECT_TLS_PORT = 5223
COMPONENT_PORT = 5347
#: the static web server that holds chatgate's XEP-0455 status file (outside chatgate,
#: as the XEP wants; Prosody's CI serves its own with mod_http_files)
STATUS_PORT = 8088
REPO = Path(__file__).resolve().parents[2]
PROSODY = "/usr/bin/prosody"
PROSODYCTL = "/usr/bin/prosodyctl"
#: the names slixmpp's CI resolves to its Prosody container (and chatgate's own service names)
HOSTNAMES = (
    DOMAIN,
    f"muc.{DOMAIN}",
    f"upload.{DOMAIN}",
    f"slixmpp.{DOMAIN}",
    f"conference.{DOMAIN}",
    f"pubsub.{DOMAIN}",
)


@dataclass(frozen=True, slots=True)
class Account:
    jid: str
    password: str


def account_pair(worker: int) -> tuple[Account, Account]:
    """Worker w's two accounts; worker 0 has slixmpp's CI names and passwords."""
    first, second = 2 * worker + 1, 2 * worker + 2
    return (
        Account(f"slix-ci-{first}@{DOMAIN}", f"slix-ci-{first}-pass"),
        Account(f"slix-ci-{second}@{DOMAIN}", f"slix-ci-{second}-pass"),
    )


class ItestServer(Protocol):
    name: str
    #: the MUC service the itests are told about (CI_MUC_SERVER)
    muc_service: str

    def available(self) -> str | None:
        """None when it can run here, otherwise why not."""

    def prepare(self, work: Path, workers: int) -> Path:
        """Write its configuration, certificate and accounts; return the PEM to trust."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def version(self) -> str: ...

    def log(self) -> Path: ...


def write_certificate(folder: Path, names: tuple[str, ...] = HOSTNAMES) -> tuple[Path, Path]:
    """A self-signed certificate naming every service host (the sdist's own prosody.crt has
    expired), as ``folder/prosody.crt`` and ``.key``: Prosody finds it by name there."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{names[0]}.crt", folder / f"{names[0]}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class _Process:
    """The one server process started here, stopped by its PID only."""

    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        for port in (STARTTLS_PORT, DIRECT_TLS_PORT, COMPONENT_PORT):
            procs.wait_for_port(port, self.proc, 60.0, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, 20.0)
            self.proc = None


PROSODY_OVERRIDES = """
-- Set by chatgate's tests/interop/itest_servers.py for a throwaway copy (the lines above are
-- slixmpp's itests/prosody.cfg.lua as its sdist ships it).
daemonize = false
run_as_root = true
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
log = {{ debug = "{work}/prosody.log" }}
certificates = "{work}/certs"
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
component_interfaces = {{ "127.0.0.1" }}
http_interfaces = {{ "127.0.0.1" }}
https_interfaces = {{ "127.0.0.1" }}
http_files_dir = {{ "{work}/www" }}

"""


class ProsodyItestServer:
    name = "prosody"
    muc_service = f"muc.{DOMAIN}"

    def __init__(self, itests: Path) -> None:
        self._itests = itests
        self._work = Path()
        self._process: _Process | None = None

    def available(self) -> str | None:
        if not Path(PROSODY).exists() or not Path(PROSODYCTL).exists():
            return "Prosody is not installed (apt-get install prosody prosody-modules)"
        return None

    def version(self) -> str:
        text = procs.command_output(["dpkg-query", "-W", "-f=${Version}", "prosody"])
        return f"Prosody {text}" if text else "Prosody"

    def log(self) -> Path:
        return self._work / "prosody.log"

    def config_text(self, work: Path) -> str:
        """slixmpp's CI configuration, with the throwaway overrides before its first host."""
        original = (self._itests / "prosody.cfg.lua").read_text()
        head, marker, tail = original.partition('\nVirtualHost "prosody"')
        if not marker:
            raise RuntimeError('itests/prosody.cfg.lua has no VirtualHost "prosody"')
        overrides = PROSODY_OVERRIDES.format(work=work)
        replaced = {m.group(1) for m in re.finditer(r"^(\w+) = ", overrides, re.MULTILINE)}
        # Prosody warns about an option set twice (and its warning fails on some paths):
        # the original lines that the overrides replace are commented out where they stand.
        lines = [
            f"-- (replaced below) {line}" if line.split(" ", 1)[0] in replaced else line
            for line in head.splitlines()
        ]
        return "\n".join(lines) + "\n" + overrides + marker + tail

    def prepare(self, work: Path, workers: int) -> Path:
        self._work = work
        (work / "data").mkdir(parents=True)
        # What slixmpp's Containerfile writes for mod_http_files (XEP-0455's status file).
        (work / "www").mkdir()
        (work / "www" / "status.json").write_text("null\n")
        cert, _ = write_certificate(work / "certs")
        config = work / "prosody.cfg.lua"
        config.write_text(self.config_text(work))
        # `prosodyctl register USER HOST PASSWORD`, as slixmpp's Containerfile does.
        registrations = []
        for worker in range(workers):
            for account in account_pair(worker):
                user, host = account.jid.split("@")
                argv = [PROSODYCTL, "--config", str(config), "register", user, host]
                registrations.append(
                    subprocess.Popen(
                        [*argv, account.password],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                    )
                )
        for reg in registrations:
            out, _ = reg.communicate(timeout=120)
            if reg.returncode != 0:
                raise RuntimeError(f"prosodyctl register failed: {out.decode(errors='replace')}")
        self._process = _Process(work / "prosody.stdout.log")
        return cert

    def start(self) -> None:
        assert self._process is not None
        self._process.start([PROSODY, "-F", "--config", str(self._work / "prosody.cfg.lua")])

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


CHATGATE_CONFIG = """\
# Written by chatgate's tests/interop/itest_servers.py: what an operator's chatgate.toml for
# the domain "prosody" says, every module at its defaults.
[server]
domain = "{domain}"
data_dir = "{data}"
log_level = "info"

[[listeners]]
host = "127.0.0.1"
port = {starttls}
tls = "starttls"

[[listeners]]
host = "127.0.0.1"
port = {direct}
tls = "direct"

[storage]
url = "sqlite+aiosqlite:///{data}/chatgate.db"

# slixmpp's CI component (XEP-0114), as its prosody.cfg.lua declares it.
[component_listener]
host = "127.0.0.1"
port = {component}

[[components]]
domain = "slixmpp.{domain}"
secret = "secret"

# XEP-0455: where slixmpp's CI keeps its status file (an empty one, "null").
[modules.disco]
status_addresses = ["http://{domain}:{status}/status.json"]
"""


class ChatgateItestServer:
    name = "chatgate"
    muc_service = f"conference.{DOMAIN}"

    def __init__(self) -> None:
        self._work = Path()
        self._process: _Process | None = None
        self._status_files: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        return None

    def version(self) -> str:
        commit = procs.command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = procs.command_output(["git", "-C", str(REPO), "status", "--porcelain", "src"])
        state = f"{commit}{', src/ modified' if dirty else ''}" if commit else "no git"
        return f"chatgate {importlib.metadata.version('chatgate')} ({state})"

    def log(self) -> Path:
        return self._work / "chatgate.log"

    def _cli(self, *args: str) -> None:
        config = self._work / "chatgate.toml"
        result = subprocess.run(
            [sys.executable, "-m", "chatgate", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"chatgate {' '.join(args)} failed:\n{result.stderr}")

    def prepare(self, work: Path, workers: int) -> Path:
        self._work = work
        work.mkdir(parents=True)
        data = work / "var"
        (work / "chatgate.toml").write_text(
            CHATGATE_CONFIG.format(
                domain=DOMAIN,
                data=data,
                starttls=STARTTLS_PORT,
                direct=DIRECT_TLS_PORT,
                component=COMPONENT_PORT,
                status=STATUS_PORT,
            )
        )
        (work / "www").mkdir()
        (work / "www" / "status.json").write_text("null\n")  # as slixmpp's Containerfile
        lines = []
        for worker in range(workers):
            for account in account_pair(worker):
                lines.append(f"{account.jid.split('@')[0]} {account.password}\n")
        accounts = work / "accounts.txt"
        accounts.write_text("".join(lines))
        self._cli("user", "import", str(accounts))
        self._process = _Process(self.log())
        # The generated certificate is written at the first start; trusted from there.
        return data / "certs" / f"{DOMAIN}.crt"

    def start(self) -> None:
        assert self._process is not None
        config = self._work / "chatgate.toml"
        self._status_files = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(STATUS_PORT), "--bind", "127.0.0.1",
             "--directory", str(self._work / "www")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.wait_for_port(STATUS_PORT, self._status_files, 30.0, self.log())
        self._process.start(
            [sys.executable, "-m", "chatgate", "serve", "--config", str(config)],
            env={"PYTHONUNBUFFERED": "1"},
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._status_files is not None:
            procs.stop(self._status_files, 5.0)
            self._status_files = None


def build(name: str, itests: Path) -> ItestServer:
    if name == "prosody":
        return ProsodyItestServer(itests)
    if name == "chatgate":
        return ChatgateItestServer()
    raise ValueError(f"unknown server {name!r}")
