"""`basic`: administrators chatgate keeps (Argon2id, bcrypt as imported from
Wowza), the password file's lines with `basic_password_file`, groups, plain HTTP,
and the login gate's brute-force protection, through the real admin site."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from multidict import CIMultiDictProxy

from chatgate.auth.gate import Outcome
from chatgate.http.auth.admins import AdminAccounts
from chatgate.http.auth.digest_core import ha1

from .conftest import SiteFactory


def basic(name: str, password: str) -> str:
    return aiohttp.encode_basic_auth(name, password)


async def get(
    url: str, auth: str | None = None, **headers: str
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    if auth is not None:
        headers["Authorization"] = auth
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.json(), r.headers


async def post(url: str, auth: str) -> int:
    async with aiohttp.ClientSession() as s, s.post(url, headers={"Authorization": auth}) as r:
        return r.status


async def test_argon2_administrator_logs_in_with_its_groups(make_site: SiteFactory) -> None:
    site = await make_site()
    await AdminAccounts(site.db, site.site.options).add("alice", "correct horse", ["advUser"])
    stored = await site.db.admin_users.get("alice")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    status, body, _ = await get(site.url, basic("alice", "correct horse"))
    assert status == 200
    assert body == {"name": "alice", "groups": ["advUser"], "method": "basic"}
    assert await post(site.url, basic("alice", "correct horse")) == 200


async def test_wrong_password_and_unknown_name_get_401_with_challenges(
    make_site: SiteFactory,
) -> None:
    site = await make_site()
    await AdminAccounts(site.db, site.site.options).add("alice", "correct horse", ["admin"])
    status, body, headers = await get(site.url)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    assert headers.getall("WWW-Authenticate") == [
        'Basic realm="chatgate", charset="UTF-8"',
        'Bearer realm="chatgate"',
    ]
    for auth in (basic("alice", "wrong"), basic("nobody", "correct horse")):
        status, body, headers = await get(site.url, auth)
        assert (status, body["error"]["code"]) == (401, "unauthenticated")
        assert headers.getall("WWW-Authenticate") == ['Basic realm="chatgate", charset="UTF-8"']
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts[("http-admin", "basic", Outcome.FAILED)] == 2


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
async def test_bcrypt_hash_from_wowza_is_checked_as_it_is(
    make_site: SiteFactory, prefix: str
) -> None:
    site = await make_site()
    hashed = bcrypt.hashpw(b"wowza-pass", bcrypt.gensalt(rounds=4)).decode()
    hashed = prefix + hashed[4:]
    await AdminAccounts(site.db, site.site.options).add_hashed("wowza", hashed, ["admin"])
    assert (await get(site.url, basic("wowza", "wowza-pass")))[0] == 200
    assert (await get(site.url, basic("wowza", "wowza-Pass")))[0] == 401


async def test_read_only_administrator_cannot_write(make_site: SiteFactory) -> None:
    site = await make_site()
    await AdminAccounts(site.db, site.site.options).add("viewer", "pw-viewer", ["readOnly"])
    assert (await get(site.url, basic("viewer", "pw-viewer")))[0] == 200
    assert await post(site.url, basic("viewer", "pw-viewer")) == 403


async def test_plain_http_from_afar_is_refused(make_site: SiteFactory) -> None:
    site = await make_site()
    await AdminAccounts(site.db, site.site.options).add("alice", "pw-alice", ["admin"])
    status, body, _ = await get(
        site.url, basic("alice", "pw-alice"), **{"X-Test-Address": "192.0.2.7"}
    )
    assert status == 403
    assert "HTTPS" in body["error"]["message"]
    allowed = await make_site(allow_plain_http=True)
    status, _, _ = await get(
        allowed.url, basic("alice", "pw-alice"), **{"X-Test-Address": "192.0.2.7"}
    )
    assert status == 200


async def test_password_file_lines_with_basic_password_file(
    make_site: SiteFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hashed = bcrypt.hashpw(b"bcrypt-pw", bcrypt.gensalt(rounds=4)).decode()
    digest = ha1("SHA-256", "dora", "chatgate", "digest-pw")
    (tmp_path / "admin.password").write_text(
        f"# Wowza admin.password\nbea {hashed} admin|advUser bcrypt\n"
        f"dora {digest} readOnly\npat plain-pw admin\n"
    )
    site = await make_site(basic_password_file=True)
    status, body, _ = await get(site.url, basic("bea", "bcrypt-pw"))
    assert (status, body["groups"]) == (200, ["admin", "advUser"])
    status, body, _ = await get(site.url, basic("dora", "digest-pw"))
    assert (status, body["groups"]) == (200, ["readOnly"])
    assert (await get(site.url, basic("pat", "plain-pw")))[0] == 401  # plaintext: not allowed
    with caplog.at_level(logging.WARNING, logger="chatgate.http.auth"):
        plain = await make_site(basic_password_file=True, allow_plaintext_passwords=True)
    assert "PLAINTEXT" in caplog.text
    assert (await get(plain.url, basic("pat", "plain-pw")))[0] == 200
    assert (await get(plain.url, basic("pat", "plain-pW")))[0] == 401


async def test_repeated_failures_are_held_then_throttled(make_site: SiteFactory) -> None:
    throttle = {
        "address": {
            "free_failures": 1,
            "base_delay": 1.0,
            "max_delay": 1.0,
            "max_in_flight": 2,
            "max_in_flight_per_account": 1,
        }
    }
    site = await make_site(extra={"auth": {"throttle": throttle}})
    await AdminAccounts(site.db, site.site.options).add("alice", "pw-alice", ["admin"])
    assert (await get(site.url, basic("alice", "guess-1")))[0] == 401  # free
    loop = asyncio.get_running_loop()
    started = loop.time()
    held = asyncio.create_task(get(site.url, basic("alice", "guess-2")))
    await asyncio.sleep(0.3)  # the second guess is now held, its slot taken
    status, body, headers = await get(site.url, basic("alice", "guess-3"))
    assert status == 429
    assert body["error"]["code"] == "too_many_attempts"
    assert int(headers["Retry-After"]) >= 1
    assert (await held)[0] == 401
    assert loop.time() - started >= 0.9  # the failure's answer was held
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts[("http-admin", "basic", Outcome.THROTTLED)] == 1
