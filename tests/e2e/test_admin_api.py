"""`/api/v1` of a real server (`chatgate serve` with `[admin] enabled`), every
endpoint through HTTP with `basic` administrators of each group and a bearer
token the API made, and slixmpp clients whose sessions the API lists and kicks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import AuthenticationFailed, RunningServer, connect, logged_in
from tests.e2e.test_admin_api_support import AS, ApiClient, start_api_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_api_server(tmp_path_factory.mktemp("admin-api"))
    try:
        srv.add_user("alice", "alice-password")
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture
def api(server: RunningServer) -> ApiClient:
    return ApiClient(server)


async def test_openapi_document_is_public_and_describes_every_route(
    server: RunningServer,
) -> None:
    reply = await ApiClient(server, None).call("GET", "/openapi.json")
    assert reply.status == 200
    doc = reply.body
    assert doc["openapi"].startswith("3.1")
    assert set(doc["components"]["securitySchemes"]) == {"basic", "bearer"}
    assert "/accounts/{jid}" in doc["paths"] and "/sessions/{jid}" in doc["paths"]
    assert doc["paths"]["/accounts"]["post"]["requestBody"]["required"] is True
    operations = [op for path in doc["paths"].values() for op in path.values()]
    assert len(operations) >= 30
    for op in operations:
        assert "default" in op["responses"] and op["security"], op["operationId"]


async def test_credentials_are_required_and_groups_decide(server: RunningServer) -> None:
    anonymous = await ApiClient(server, None).call("GET", "/accounts")
    assert anonymous.status == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    assert anonymous.body["error"]["code"] == "unauthenticated"
    wrong = await ApiClient(server, "Basic cm9vdDpub3Bl").call("GET", "/accounts")
    assert wrong.status == 401

    reader = ApiClient(server, AS["readOnly"])
    assert (await reader.call("GET", "/accounts")).status == 200
    refused = await reader.call("POST", "/accounts", json={"username": "x", "password": "y" * 9})
    assert refused.status == 403 and refused.body["error"]["code"] == "forbidden"
    assert (await reader.call("DELETE", "/accounts/alice@localhost")).status == 403
    operator = ApiClient(server, AS["advUser"])
    assert (await operator.call("GET", "/config")).status == 403
    assert (await operator.call("GET", "/tokens")).status == 403
    assert (await ApiClient(server).call("GET", "/config")).status == 200


async def test_account_lifecycle_reaches_xmpp_logins(server: RunningServer, api: ApiClient) -> None:
    made = await api.call(
        "POST", "/accounts", json={"username": "carol", "password": "carol-password"}
    )
    assert made.status == 201, made.body
    assert made.body["jid"] == "carol@localhost"
    async with logged_in(server, "carol@localhost", "carol-password"):
        pass

    changed = await api.call(
        "PUT", "/accounts/carol@localhost/password", json={"password": "carol-new-password"}
    )
    assert changed.status == 204
    with pytest.raises(AuthenticationFailed):
        await connect(server, "carol@localhost", "carol-password")

    locked = await api.call("POST", "/accounts/carol@localhost/lock")
    assert locked.status == 200 and locked.body["locked"] is True
    with pytest.raises(AuthenticationFailed):
        await connect(server, "carol@localhost", "carol-new-password")
    assert (await api.call("POST", "/accounts/carol@localhost/unlock")).body["locked"] is False
    async with logged_in(server, "carol@localhost", "carol-new-password"):
        pass

    assert (await api.call("DELETE", "/accounts/carol@localhost")).status == 204
    gone = await api.call("GET", "/accounts/carol@localhost")
    assert gone.status == 404 and gone.body["error"]["code"] == "not_found"
    with pytest.raises(AuthenticationFailed):
        await connect(server, "carol@localhost", "carol-new-password")


async def test_account_errors(api: ApiClient) -> None:
    taken = await api.call(
        "POST", "/accounts", json={"username": "alice", "password": "whatever-password"}
    )
    assert taken.status == 409 and taken.body["error"]["code"] == "conflict"
    invalid = await api.call("POST", "/accounts", json={"username": "dave", "password": "short"})
    assert invalid.status == 422
    assert [f["field"] for f in invalid.body["error"]["fields"]] == ["password"]
    malformed = await api.call(
        "POST", "/accounts", data="{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400 and malformed.body["error"]["code"] == "malformed_json"
    assert (await api.call("GET", "/accounts?limit=0")).status == 422


async def test_list_pages_and_etags(server: RunningServer, api: ApiClient) -> None:
    for name in ("page-a", "page-b", "page-c"):
        server.add_user(name, "password-123")
    first = await api.call("GET", "/accounts?search=page-&limit=2")
    assert [a["username"] for a in first.body["items"]] == ["page-a", "page-b"]
    assert first.body["total"] == 3 and first.body["next"]
    rest = await api.call("GET", f"/accounts?search=page-&limit=2&cursor={first.body['next']}")
    assert [a["username"] for a in rest.body["items"]] == ["page-c"] and rest.body["next"] is None
    again = await api.call(
        "GET", "/accounts?search=page-&limit=2", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status == 304 and again.headers["ETag"] == first.headers["ETag"]


async def test_sessions_are_listed_and_kicked(server: RunningServer, api: ApiClient) -> None:
    client = await connect(server, "alice@localhost/laptop", "alice-password")
    disconnected = asyncio.get_running_loop().create_future()
    client.add_event_handler(
        "disconnected", lambda _e: disconnected.done() or disconnected.set_result(True)
    )
    try:
        listed = await api.call("GET", "/sessions?account=alice@localhost")
        assert listed.status == 200
        [session] = listed.body["items"]
        assert session["jid"] == "alice@localhost/laptop"
        assert session["transport"] == "tcp" and session["direct_tls"] is False
        assert session["address"] == "127.0.0.1"
        assert session["tls_version"].startswith("TLSv1.")
        assert session["mechanism"].startswith("SCRAM-SHA-")
        account = await api.call("GET", "/accounts/alice@localhost")
        assert account.body["sessions"] == ["alice@localhost/laptop"]

        kicked = await api.call("DELETE", "/sessions/alice@localhost%2Flaptop")
        assert kicked.status == 200, kicked.body
        assert kicked.body["jid"] == "alice@localhost/laptop"
        error = await asyncio.wait_for(client.stream_errors.get(), 10)
        assert error["condition"] == "policy-violation"  # type: ignore[index]
        await asyncio.wait_for(disconnected, 10)
    finally:
        await asyncio.wait_for(client.disconnect(), 5)
    after = await api.call("GET", "/sessions?account=alice@localhost")
    assert after.body["items"] == []
    missing = await api.call("DELETE", "/sessions/alice@localhost%2Flaptop")
    assert missing.status == 404


async def test_message_and_headline_from_the_server(server: RunningServer, api: ApiClient) -> None:
    async with logged_in(server, "alice@localhost/desk", "alice-password") as client:
        sent = await api.call(
            "POST",
            "/messages",
            json={"to": "alice@localhost", "body": "maintenance at 22:00", "subject": "notice"},
        )
        assert sent.status == 200 and sent.body["delivered_now"] is True
        message = await client.next_message()
        assert str(message["from"]) == "localhost"
        assert (message["body"], message["subject"]) == ("maintenance at 22:00", "notice")
        await api.call(
            "POST",
            "/messages",
            json={"to": "alice@localhost/desk", "body": "just you", "type": "headline"},
        )
        headline = await client.next_message()
        assert (headline["type"], headline["body"]) == ("headline", "just you")
    nobody = await api.call("POST", "/messages", json={"to": "nobody@localhost", "body": "x"})
    assert nobody.status == 404
    remote = await api.call("POST", "/messages", json={"to": "x@example.org", "body": "x"})
    assert remote.status == 422 and remote.body["error"]["fields"][0]["field"] == "to"
    too_long = await api.call(
        "POST", "/messages", json={"to": "alice@localhost", "body": "x" * 65_537}
    )
    assert too_long.status == 413 or too_long.status == 422


async def test_roster_of_an_account(server: RunningServer, api: ApiClient) -> None:
    server.add_user("rosie", "rosie-password")
    async with logged_in(server, "rosie@localhost", "rosie-password") as client:
        await client.update_roster("alice@localhost", name="Alice", groups=["friends"])
    roster = await api.call("GET", "/accounts/rosie@localhost/roster")
    assert roster.status == 200
    [item] = roster.body["items"]
    assert (item["jid"], item["name"], item["groups"]) == ("alice@localhost", "Alice", ["friends"])
    assert (await api.call("GET", "/accounts/nobody@localhost/roster")).status == 404


async def test_registration_approval_and_invitations(server: RunningServer, api: ApiClient) -> None:
    settings = await api.call("GET", "/registration/settings")
    assert settings.body["approval"] is True and settings.body["configured_invite_tokens"] == 1
    assert "config-invite-secret-token" not in str(settings.body)
    pending = await api.call("GET", "/registration/pending")
    assert pending.status == 200 and pending.body["items"] == []
    missing = await api.call("POST", "/registration/pending/nobody@localhost/approve")
    assert missing.status == 404

    made = await api.call(
        "POST", "/invitations", json={"username": "invitee", "uses": 1, "expires_in": 3600}
    )
    assert made.status == 201, made.body
    assert made.body["uri"].startswith("xmpp:invitee@localhost?register;preauth=")
    listed = await api.call("GET", "/invitations")
    ids = [i["id"] for i in listed.body["items"]]
    assert made.body["id"] in ids
    assert made.body["token"] not in str(listed.body)
    held = await api.call(
        "POST", "/accounts", json={"username": "invitee", "password": "invitee-password"}
    )
    assert held.status == 409  # the invitation reserves the name
    assert (await api.call("DELETE", f"/invitations/{made.body['id']}")).status == 204
    assert (await api.call("DELETE", f"/invitations/{made.body['id']}")).status == 404


async def test_stream_rules_keys_tokens_and_live(api: ApiClient) -> None:
    rules = await api.call("GET", "/streams/rules")
    assert rules.body["items"] == [
        {"rule": "publish,play live/* user:alice@localhost", "source": "config", "invalid": None}
    ]
    added = await api.call("POST", "/streams/rules", json={"rule": "play  public/*  anonymous"})
    assert added.status == 201 and added.body["rule"] == "play public/* anonymous"
    again = await api.call("POST", "/streams/rules", json={"rule": "play public/* anonymous"})
    assert again.status == 409
    bad = await api.call("POST", "/streams/rules", json={"rule": "fly everywhere"})
    assert bad.status == 422 and bad.body["error"]["fields"][0]["field"] == "rule"
    removed = await api.call(
        "POST", "/streams/rules/remove", json={"rule": "play public/* anonymous"}
    )
    assert removed.status == 204

    key = await api.call("POST", "/streams/keys/alice@localhost")
    assert key.status == 201 and len(key.body["key"]) >= 20
    keys = await api.call("GET", "/streams/keys")
    assert [(k["account"], k["key_id"]) for k in keys.body["items"]] == [
        ("alice@localhost", key.body["key_id"])
    ]
    assert key.body["key"] not in str(keys.body)
    assert (await api.call("DELETE", "/streams/keys/alice@localhost")).status == 204
    assert (await api.call("DELETE", "/streams/keys/alice@localhost")).status == 404

    token = await api.call(
        "POST", "/streams/tokens", json={"stream": "live/alice", "action": "publish", "ttl": 600}
    )
    assert token.status == 201, token.body
    revoked = await api.call("POST", "/streams/tokens/revoke", json={"token": token.body["token"]})
    assert revoked.body == {"token_id": token.body["token_id"], "revoked": True}
    live = await api.call("GET", "/streams/live")
    assert live.status == 200 and live.body["items"] == []


async def test_stats_and_redacted_config(server: RunningServer, api: ApiClient) -> None:
    async with logged_in(server, "alice@localhost/stats", "alice-password"):
        stats = await api.call("GET", "/stats")
        assert stats.status == 200
        assert stats.body["sessions"]["tcp"] >= 1 and stats.body["sessions_total"] >= 1
        assert any(x["outcome"] == "succeeded" for x in stats.body["logins"])
    config = await api.call("GET", "/config")
    assert config.body["server"]["domain"] == "localhost"
    assert config.body["admin"]["enabled"] is True
    assert "config-invite-secret-token" not in str(config.body)
    tokens = config.body["modules"]["register"]["invite_tokens"]
    assert tokens == [{"token": "***"}] or tokens[0]["token"] == "***"


async def test_bearer_tokens_made_by_the_api(server: RunningServer, api: ApiClient) -> None:
    made = await api.call(
        "POST", "/tokens", json={"label": "ci script", "groups": ["readOnly"], "ttl": 3600}
    )
    assert made.status == 201, made.body
    bearer = ApiClient(server, f"Bearer {made.body['token']}")
    assert (await bearer.call("GET", "/accounts")).status == 200
    assert (await bearer.call("POST", "/streams/keys/alice@localhost")).status == 403
    listed = await api.call("GET", "/tokens")
    assert made.body["id"] in [t["id"] for t in listed.body["items"]]
    assert made.body["token"] not in str(listed.body)
    assert (await api.call("DELETE", f"/tokens/{made.body['id']}")).status == 204
    assert (await bearer.call("GET", "/accounts")).status == 401


async def test_every_change_is_audited_newest_first(api: ApiClient) -> None:
    await api.call("POST", "/accounts", json={"username": "audited", "password": "password-123"})
    await api.call("POST", "/accounts/audited@localhost/lock")
    first = await api.call("GET", "/audit?limit=1")
    [newest] = first.body["items"]
    assert (newest["action"], newest["target"], newest["actor"]) == (
        "account.lock",
        "audited@localhost",
        "admin",
    )
    assert newest["method"] == "basic" and newest["address"] == "127.0.0.1"
    second = await api.call("GET", f"/audit?limit=1&cursor={first.body['next']}")
    assert second.body["items"][0]["action"] == "account.create"
    assert "password-123" not in str(second.body)
    only = await api.call("GET", "/audit?action=account.create&limit=500")
    assert {e["action"] for e in only.body["items"]} == {"account.create"}
