"""`build_chain`: each method from its name, and the combinations refused at start
with a ConfigError that says what to fix."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from chatgate.context import ServerContext
from chatgate.http.auth.base import AuthRequest, Principal
from chatgate.http.auth.registry import build_chain
from chatgate.storage.database import Database
from chatgate.vocabulary.errors import ConfigError

from .conftest import make_config


async def chain_of(tmp_path: Path, db: Database, admin: dict[str, Any], **extra: Any) -> Any:
    config = make_config(tmp_path, admin, **extra)
    ctx = ServerContext(config, db, object())  # type: ignore[arg-type]
    return await build_chain(ctx, config.admin, config.admin.auth)


async def test_every_method_is_built(tmp_path: Path, db: Database) -> None:
    (tmp_path / "admin.password").write_text("")
    for names in (["basic", "bearer"], ["digest"], ["digestfile"]):
        chain = await chain_of(tmp_path, db, {"auth": names})
        assert [m.name for m in chain.methods] == names
    remote = {"url": "http://127.0.0.1:9/", "shared_secret": "s", "backup_file": True}
    chain = await chain_of(tmp_path, db, {"auth": ["remotehttp"], "remotehttp": remote})
    assert chain.methods[0].name == "remotehttp"
    await chain.methods[0].close()


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ({}, "url and shared_secret must be set"),
        ({"url": "http://127.0.0.1/"}, "shared_secret must be set"),
        ({"url": "ftp://x/", "shared_secret": "s"}, "is not an http(s) URL"),
    ],
)
async def test_remotehttp_needs_url_and_secret(
    tmp_path: Path, db: Database, remote: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        await chain_of(tmp_path, db, {"auth": ["remotehttp"], "remotehttp": remote})


async def test_missing_password_file_is_named(tmp_path: Path, db: Database) -> None:
    with pytest.raises(ConfigError) as caught:
        await chain_of(tmp_path, db, {"auth": ["digestfile"], "password_file": "conf/admin.pw"})
    assert str(tmp_path / "conf" / "admin.pw") in str(caught.value)
    remote = {"url": "http://127.0.0.1/", "shared_secret": "s", "backup_file": True}
    with pytest.raises(ConfigError, match=r"admin\.password"):
        await chain_of(tmp_path, db, {"auth": ["remotehttp"], "remotehttp": remote})


async def test_none_needs_the_flag_and_a_loopback_listener(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="allow_none"):
        await chain_of(tmp_path, db, {"auth": ["none"]})
    with pytest.raises(ConfigError, match="loopback"):
        await chain_of(
            tmp_path, db, {"auth": ["none"], "allow_none": True}, http={"host": "0.0.0.0"}
        )
    with caplog.at_level(logging.WARNING):
        chain = await chain_of(tmp_path, db, {"auth": ["none"], "allow_none": True})
    assert "AUTHENTICATION IS OFF" in caplog.text
    request = AuthRequest("POST", "/api/v1/x", None, "127.0.0.1", secure=True, loopback=True)
    principal = await chain.authenticate(request)
    assert isinstance(principal, Principal)
    assert (principal.name, principal.groups) == ("anonymous", frozenset({"admin"}))
