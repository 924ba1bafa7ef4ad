"""`digestfile`: Wowza's `admin.password` (`username hash groups`), MD5 or SHA-256
per `password_encoding`, re-read when it changes, comments and `|` groups."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPDigestAuth

from chatgate.http.auth.digest import DigestMethod
from chatgate.http.auth.digest_core import ha1
from chatgate.http.auth.digest_file import FileSecrets
from chatgate.http.auth.password_file import read_entries, replace_entry

from .conftest import Site, SiteFactory


def get(site: Site, user: str, password: str, method: str = "GET") -> requests.Response:
    return requests.request(method, site.url, auth=HTTPDigestAuth(user, password), timeout=10)


@pytest.mark.parametrize(("encoding", "algorithm"), [("md5", "MD5"), ("sha256", "SHA-256")])
async def test_file_users_log_in_with_their_groups(
    make_site: SiteFactory, tmp_path: Path, encoding: str, algorithm: str
) -> None:
    (tmp_path / "admin.password").write_text(
        "# username hash groups\n"
        f"solomio {ha1(algorithm, 'solomio', 'Wowza', 'secret')} admin|advUser\n"
        f"guest {ha1(algorithm, 'guest', 'Wowza', 'guest')}   # no groups: read-only\n"
    )
    site = await make_site(auth=["digestfile"], realm="Wowza", password_encoding=encoding)
    answer = await asyncio.to_thread(get, site, "solomio", "secret")
    assert answer.status_code == 200
    assert answer.json() == {
        "name": "solomio",
        "groups": ["admin", "advUser"],
        "method": "digestfile",
    }
    assert f'algorithm="{algorithm}"' in answer.request.headers["Authorization"]
    guest = await asyncio.to_thread(get, site, "guest", "guest")
    assert (guest.status_code, guest.json()["groups"]) == (200, ["readOnly"])
    assert (await asyncio.to_thread(get, site, "guest", "guest", "POST")).status_code == 403
    assert (await asyncio.to_thread(get, site, "solomio", "wrong")).status_code == 401


async def test_file_is_re_read_when_it_changes(make_site: SiteFactory, tmp_path: Path) -> None:
    path = tmp_path / "admin.password"
    path.write_text(f"ann {ha1('SHA-256', 'ann', 'chatgate', 'one')} admin\n")
    site = await make_site(auth=["digestfile"])
    method = site.site.chains["api"].methods[0]
    assert isinstance(method, DigestMethod) and isinstance(method.secrets, FileSecrets)
    method.secrets.file.recheck = 0  # look at every request
    assert (await asyncio.to_thread(get, site, "ann", "one")).status_code == 200
    path.write_text(f"ann {ha1('SHA-256', 'ann', 'chatgate', 'two')} readOnly\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert (await asyncio.to_thread(get, site, "ann", "one")).status_code == 401
    answer = await asyncio.to_thread(get, site, "ann", "two")
    assert (answer.status_code, answer.json()["groups"]) == (200, ["readOnly"])


async def test_bcrypt_line_cannot_log_in_with_digest(
    make_site: SiteFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "admin.password").write_text("bea $2b$04$abcdefghijklmnopqrstuu admin\n")
    site = await make_site(auth=["digestfile"])
    assert (await asyncio.to_thread(get, site, "bea", "x")).status_code == 401
    assert "holds a bcrypt password" in caplog.text


def test_read_entries_and_replace_keep_comments() -> None:
    text = "# header\nann abc admin,advUser\n\nbob def\n"
    entries = read_entries(text)
    assert entries["ann"].groups == frozenset({"admin", "advUser"})
    assert entries["bob"].groups == frozenset({"readOnly"})
    replaced, found = replace_entry(text, "ann", "ann xyz readOnly")
    assert found and replaced == "# header\nann xyz readOnly\n\nbob def\n"
    removed, found = replace_entry(replaced, "bob", None)
    assert found and removed == "# header\nann xyz readOnly\n\n"
    added, found = replace_entry(removed, "cy", "cy 123 admin")
    assert not found and added.endswith("cy 123 admin\n")
