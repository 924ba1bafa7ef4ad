"""Bearer tokens: shown once, stored hashed, scoped to groups, expiring, revocable;
a wrong token is a guess for the login gate."""

from __future__ import annotations

import hashlib
import time

import aiohttp

from chatgate.auth.gate import Outcome
from chatgate.http.auth.tokens import BearerTokens

from .conftest import Site, SiteFactory


async def call(site: Site, token: str, method: str = "GET") -> tuple[int, list[str]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s, s.request(method, site.url, headers=headers) as r:
        return r.status, r.headers.getall("WWW-Authenticate", [])


async def test_token_is_stored_hashed_and_proves_its_groups(make_site: SiteFactory) -> None:
    site = await make_site()
    tokens = BearerTokens(site.db)
    token, row = await tokens.create("ci", ["readOnly"], created_by="alice")
    prefix, token_id, secret = token.split("_", 2)
    assert (prefix, token_id) == ("cg", row.id)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(await site.db.admin_tokens.all())
    assert (await call(site, token))[0] == 200
    assert (await call(site, token, "POST"))[0] == 403  # scoped to readOnly
    writer, _ = await tokens.create("deploy", ["advUser"], created_by="alice")
    assert (await call(site, writer, "POST"))[0] == 200


async def test_expired_revoked_and_wrong_tokens_are_refused(make_site: SiteFactory) -> None:
    site = await make_site()
    tokens = BearerTokens(site.db)
    expired, _ = await tokens.create(
        "old", ["admin"], "alice", ttl_seconds=60, now=time.time() - 61
    )
    revoked, row = await tokens.create("gone", ["admin"], "alice")
    assert await tokens.revoke(row.id)
    assert not await tokens.revoke(row.id)
    good, _ = await tokens.create("good", ["admin"], "alice")
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for token in (expired, revoked, wrong_secret, "cg_nothing", "not-a-token"):
        status, challenges = await call(site, token)
        assert status == 401, token
        assert challenges == ['Bearer realm="chatgate", error="invalid_token"']
    counts = site.ctx.login_gate.counters.snapshot()
    assert counts[("http-admin", "bearer", Outcome.FAILED)] == 5


async def test_last_use_is_written_at_most_once_a_minute(make_site: SiteFactory) -> None:
    site = await make_site()
    tokens = BearerTokens(site.db)
    token, row = await tokens.create("ci", ["admin"], "alice", now=1000)
    principal = await tokens.check(token, now=2000)
    assert (
        principal is not None
        and principal.token_id == row.id
        and principal.actor == f"token:{row.id}"
    )
    assert (await site.db.admin_tokens.get(row.id)).last_used_at == 2000  # type: ignore[union-attr]
    await tokens.check(token, now=2030)
    assert (await site.db.admin_tokens.get(row.id)).last_used_at == 2000  # type: ignore[union-attr]
    await tokens.check(token, now=2061)
    assert (await site.db.admin_tokens.get(row.id)).last_used_at == 2061  # type: ignore[union-attr]
