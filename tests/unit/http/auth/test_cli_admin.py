"""`chatgate admin user|token` and `chatgate admin-password`, run as an operator
runs them (typer's runner, a config file, SQLite)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from typer.testing import CliRunner

from chatgate.cli import app
from chatgate.config import load_config
from chatgate.http.auth.admins import AdminAccounts
from chatgate.http.auth.digest_core import ha1
from chatgate.http.auth.tokens import BearerTokens, split_token
from chatgate.storage.database import Database

CONFIG = """
[server]
data_dir = "var"

[admin]
enabled = true
realm = "Wowza"
password_encoding = "md5"
auth = ["digest", "bearer"]
"""


def run(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--config", str(config)], input=stdin)
    return result.exit_code, result.output


def make(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(CONFIG)
    return path


async def in_db(config: Path, work):  # type: ignore[no-untyped-def]
    cfg = load_config(config)
    db = await Database.open(cfg.storage_url)
    try:
        return await work(db, cfg)
    finally:
        await db.close()


def test_admin_user_commands(tmp_path: Path) -> None:
    config = make(tmp_path)
    assert run(config, "admin", "user", "add", "root", "--password-stdin", stdin="pw-1\n")[0] == 0
    code, out = run(config, "admin", "user", "add", "root", "--password-stdin", stdin="pw-1\n")
    assert code == 1 and "already exists" in out
    assert run(config, "admin", "user", "add", "a:b", "--password-stdin", stdin="x\n")[0] == 2
    assert (
        run(config, "admin", "user", "add", "x", "-g", "root", "--password-stdin", stdin="x\n")[0]
        == 2
    )
    code, out = run(
        config,
        "admin",
        "user",
        "add",
        "viewer",
        "-g",
        "readOnly",
        "--password-stdin",
        stdin="pw-v\n",
    )
    assert code == 0 and "readOnly" in out

    async def check(db: Database, cfg):  # type: ignore[no-untyped-def]
        accounts = AdminAccounts(db, cfg.admin)
        root = await accounts.verify("root", "pw-1")
        assert root is not None and root.groups == ("admin",)
        assert root.digest_md5 == ha1("MD5", "root", "Wowza", "pw-1")

    asyncio.run(in_db(config, check))
    code, out = run(config, "admin", "user", "list")
    assert code == 0 and "root" in out and "viewer" in out
    assert (
        run(config, "admin", "user", "passwd", "root", "--password-stdin", stdin="pw-2\n")[0] == 0
    )
    assert run(config, "admin", "user", "passwd", "nobody", "--password-stdin", stdin="x\n")[0] == 1
    assert run(config, "admin", "user", "del", "viewer")[0] == 0
    assert run(config, "admin", "user", "del", "viewer")[0] == 1

    async def after(db: Database, cfg):  # type: ignore[no-untyped-def]
        accounts = AdminAccounts(db, cfg.admin)
        assert await accounts.verify("root", "pw-2") is not None
        assert [r.name for r in await accounts.all()] == ["root"]

    asyncio.run(in_db(config, after))


def test_admin_token_commands(tmp_path: Path) -> None:
    config = make(tmp_path)
    code, out = run(
        config, "admin", "token", "create", "--label", "ci", "-g", "readOnly", "--expires", "30d"
    )
    assert code == 0
    token = next(line for line in out.splitlines() if line.startswith("cg_"))

    async def check(db: Database, cfg):  # type: ignore[no-untyped-def]
        principal = await BearerTokens(db).check(token)
        assert principal is not None and principal.groups == frozenset({"readOnly"})
        row = (await BearerTokens(db).list())[0]
        assert row.expires_at is not None and row.expires_at - row.created_at == 30 * 86400
        return principal.token_id

    token_id = asyncio.run(in_db(config, check))
    code, out = run(config, "admin", "token", "list")
    parts = split_token(token)  # the secret may itself hold "_" (URL-safe base64)
    assert parts is not None and parts[0] == token_id
    assert code == 0 and token_id in out and parts[1] not in out
    assert run(config, "admin", "token", "create", "--label", "x", "--expires", "soon")[0] == 2
    assert run(config, "admin", "token", "revoke", token_id)[0] == 0
    assert run(config, "admin", "token", "revoke", token_id)[0] == 1

    async def revoked(db: Database, cfg):  # type: ignore[no-untyped-def]
        assert await BearerTokens(db).check(token) is None

    asyncio.run(in_db(config, revoked))


def test_admin_password_commands(tmp_path: Path) -> None:
    config = make(tmp_path)
    path = tmp_path / "admin.password"
    path.write_text("# kept\n")
    path.chmod(0o644)
    args = ("admin-password", "add", "solomio", "-g", "admin", "-g", "advUser", "--password-stdin")
    assert run(config, *args, stdin="secret\n")[0] == 0
    # the seed's own example: solomio:Wowza:secret
    assert path.read_text() == "# kept\nsolomio 43c27fa10ce3ea64d60735c79e9f1c4f admin,advUser\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run(config, *args, stdin="secret\n")[0] == 1
    assert (
        run(config, "admin-password", "passwd", "solomio", "--password-stdin", stdin="other\n")[0]
        == 0
    )
    assert (
        path.read_text().splitlines()[1]
        == f"solomio {ha1('MD5', 'solomio', 'Wowza', 'other')} admin,advUser"
    )
    assert (
        run(config, "admin-password", "passwd", "nobody", "--password-stdin", stdin="x\n")[0] == 1
    )
    assert run(config, "admin-password", "del", "solomio")[0] == 0
    assert path.read_text() == "# kept\n"
    assert run(config, "admin-password", "del", "solomio")[0] == 1
