"""A throwaway PostgreSQL cluster for tests: `initdb` into its own temporary folder,
one `postgres` process on a free loopback port, stopped by PID, the folder removed.

Debian's `postgresql` package (installed by tests/install-system-deps.sh) provides
the binaries under /usr/lib/postgresql/<version>/bin; the system service and its
clusters are never used.  `initdb` and `postgres` refuse to run as root, so when the
tests run as root they run as the `postgres` user the package creates (the folder is
handed to that user); as any other user they run as that user.

Access: TCP on 127.0.0.1 only, with a password generated per cluster (scram-sha-256);
the Unix socket lives inside the private folder.  Durability is off (fsync,
synchronous_commit, full_page_writes): a crashed test cluster is simply thrown away.

    server = start_postgres()
    url = server.create_database("t1")   # postgresql+asyncpg://...@127.0.0.1:port/t1
    server.stop(); server.start()        # an outage, same port, data kept
    server.stop("immediate")             # as a crash (SIGQUIT)
    server.close()                       # stop and remove the folder

`with start_postgres() as server:` closes it at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ports import free_port

#: the database `start_postgres` creates and `.url` names
DEFAULT_DATABASE = "chatgate"
SUPERUSER = "postgres"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def postgres_bindir() -> Path:
    """Debian's newest /usr/lib/postgresql/<version>/bin, else the folder of `initdb` on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError("PostgreSQL is not installed (run tests/install-system-deps.sh)")
    return Path(found).resolve().parent


def postgres_available() -> bool:
    try:
        postgres_bindir()
    except RuntimeError:
        return False
    return True


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to the `postgres` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": SUPERUSER, "group": SUPERUSER, "extra_groups": []}


def _owner_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(SUPERUSER)
    return entry.pw_uid, entry.pw_gid


@dataclass
class PostgresServer:
    """One `postgres` process over a cluster in `folder`; `stop()` and `start()` again
    keep its port and its data (outage tests)."""

    folder: Path
    bindir: Path = field(default_factory=postgres_bindir)
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "run"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database `start_postgres` created."""
        return self.url_for(DEFAULT_DATABASE)

    def url_for(self, database: str) -> str:
        """SQLAlchemy (asyncpg) URL of `database` on this server."""
        return f"postgresql+asyncpg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """libpq/asyncpg DSN of `database` (no SQLAlchemy driver suffix)."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    # -- cluster life ---------------------------------------------------------------

    def init(self) -> None:
        """`initdb` the cluster (once): superuser `postgres` with the generated password."""
        self.data.mkdir(mode=0o700)
        self.socket_dir.mkdir(mode=0o700)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        ids = _owner_ids()
        if ids is not None:
            for path in (self.folder, self.data, self.socket_dir, pwfile):
                os.chown(path, *ids)
        try:
            self._check(
                [
                    str(self.bindir / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    SUPERUSER,
                    "--pwfile",
                    str(pwfile),
                    "--auth-local",
                    "scram-sha-256",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink()

    def start(self) -> None:
        """Start `postgres` on 127.0.0.1:`port` and wait until it accepts connections."""
        if self.process is not None:
            return
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "log_min_messages=warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            cwd=self.folder,
            **_run_as(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            ready = subprocess.run(
                [
                    str(self.bindir / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-t",
                    "1",
                ],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"postgres did not start on port {self.port}:\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        """Stop `postgres` by its PID: `fast` (SIGINT: clients disconnected, open
        transactions rolled back, clean shutdown) or `immediate` (SIGQUIT: as a crash)."""
        if self.process is None:
            return
        sig = signal.SIGQUIT if mode == "immediate" else signal.SIGINT
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- databases ------------------------------------------------------------------

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement with psql (autocommit) and return its unaligned output."""
        result = self._check(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                statement,
            ],
            as_owner=False,
        )
        return result.stdout.decode()

    def create_database(self, name: str, template: str = "template0") -> str:
        """Create the empty database `name` (a copy of `template`) and return its URL."""
        _check_name(name)
        _check_name(template)
        self.sql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        _check_name(name)
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    # -- helpers --------------------------------------------------------------------

    def _check(self, argv: list[str], as_owner: bool = True) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"}
        result = subprocess.run(
            argv,
            capture_output=True,
            env=env,
            cwd=self.folder,
            check=False,
            timeout=120,
            **(_run_as() if as_owner else {}),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )
        return result


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")


def _parent_folder() -> Path:
    """The system's temporary folder, or /tmp when the `postgres` user could not
    reach into it (a TMPDIR under root's home, say)."""
    chosen = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() == 0 and any(
        not folder.stat().st_mode & 0o001 for folder in (chosen, *chosen.parents)
    ):
        return Path("/tmp")
    return chosen


def start_postgres() -> PostgresServer:
    """A new cluster in a temporary folder, started, with the empty database `chatgate`."""
    server = PostgresServer(
        Path(tempfile.mkdtemp(prefix="chatgate-postgres-", dir=_parent_folder()))
    )
    try:
        server.init()
        server.start()
        server.create_database(DEFAULT_DATABASE)
    except BaseException:
        server.close()
        raise
    return server
