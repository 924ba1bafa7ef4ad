"""(No tests here: the shared part of test_admin_api*.py.)  A real server (`chatgate serve`) with the REST API on, its administrators,
and a small client for `/api/v1`: what the admin API's e2e tests share.

Administrators are stored the way the console's wizard and the CLI store them
(`AdminAccounts.add` on the server's database); requests authenticate with
`basic` over loopback, or with a bearer token the API itself created."""

from __future__ import annotations

import base64
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.conftest import RunningServer
from tests.e2e.web import start_web_server

ADMIN = """
[admin]
enabled = true
auth = ["basic", "bearer"]

[streams]
enabled = true
rules = ["publish,play live/* user:alice@localhost"]

[modules.register]
enabled = true
approval = true
invites = "optional"
invite_tokens = [{ token = "config-invite-secret-token" }]
"""

#: (name, password, group) of the administrators every test server has
ADMINS = (
    ("admin", "s3cret-admin-password", "admin"),
    ("operator", "operator-password-1", "advUser"),
    ("watcher", "watcher-password-1", "readOnly"),
)

_ADD_ADMINS = """
import asyncio, sys
from pathlib import Path
from chatgate.cli.common import with_db
from chatgate.config import load_config
from chatgate.http.auth.admins import AdminAccounts

cfg = load_config(Path(sys.argv[1]))
async def add(db):
    admins = AdminAccounts(db, cfg.admin)
    for line in sys.stdin.read().splitlines():
        name, password, group = line.split()
        await admins.add(name, password, [group])
asyncio.run(with_db(cfg, add))
"""


def start_api_server(tmp: Path, extra: str = "") -> RunningServer:
    server = start_web_server(tmp, extra + ADMIN)
    lines = "\n".join(" ".join(a) for a in ADMINS)
    done = subprocess.run(
        [sys.executable, "-c", _ADD_ADMINS, str(server.config)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return server


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


AS = {group: basic(name, password) for name, password, group in ADMINS}


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class ApiClient:
    """`/api/v1` of one server, as one principal (an `Authorization` value)."""

    def __init__(self, server: RunningServer, authorization: str | None = AS["admin"]) -> None:
        self.base = f"http://127.0.0.1:{server.http_port}/api/v1"
        self.authorization = authorization

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = dict(kwargs.pop("headers", {}))
        if self.authorization is not None:
            headers.setdefault("Authorization", self.authorization)
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, headers=headers, **kwargs) as r,
        ):
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return Reply(r.status, body, r.headers)
