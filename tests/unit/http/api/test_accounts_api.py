"""`/api/v1/accounts` over the real operations layer: status codes, the error
shape, paging, ETags, group permissions and the audit trail."""

from __future__ import annotations

from .conftest import Api


async def test_create_list_get_and_audit(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/accounts", json={"username": "alice", "password": "alice-password"}
    )
    assert status == 201, body
    assert body["jid"] == "alice@localhost" and body["locked"] is False
    status, body, headers = await api.call("GET", "/accounts")
    assert status == 200 and [a["jid"] for a in body["items"]] == ["alice@localhost"]
    assert body["next"] is None and body["total"] == 1
    assert headers["ETag"].startswith('W/"')
    status, body, _ = await api.call("GET", "/accounts/alice@localhost")
    assert status == 200 and body["username"] == "alice"

    status, body, _ = await api.call("GET", "/audit")
    assert status == 200
    [entry] = body["items"]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        "tester",
        "account.create",
        "alice@localhost",
    )
    assert "alice-password" not in str(body)


async def test_validation_errors_name_each_field(api: Api) -> None:
    status, body, _ = await api.call("POST", "/accounts", json={"username": "", "extra": 1})
    assert status == 422
    fields = {f["field"] for f in body["error"]["fields"]}
    assert fields == {"username", "password", "extra"}
    assert body["error"]["code"] == "invalid" and body["error"]["status"] == 422
    status, body, _ = await api.call(
        "POST", "/accounts", json={"username": "bob", "password": "short"}
    )
    assert status == 422 and body["error"]["fields"][0]["field"] == "password"
    status, body, _ = await api.call("GET", "/accounts?limit=501")
    assert status == 422 and body["error"]["fields"][0]["field"] == "limit"
    status, body, _ = await api.call("GET", "/accounts?cursor=garbage")
    assert status == 422 and body["error"]["fields"][0]["field"] == "cursor"


async def test_malformed_json_is_400(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/accounts", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, body, _ = await api.call("POST", "/accounts")
    assert status == 400


async def test_unknown_account_is_404_and_taken_name_409(api: Api) -> None:
    status, body, _ = await api.call("GET", "/accounts/nobody@localhost")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _, _ = await api.call("DELETE", "/accounts/nobody@localhost")
    assert status == 404
    await api.server.add_user("alice", "alice-password")
    status, body, _ = await api.call(
        "POST", "/accounts", json={"username": "alice", "password": "another-password"}
    )
    assert status == 409 and body["error"]["code"] == "conflict"


async def test_paging_with_cursor(api: Api) -> None:
    for name in ("ann", "bea", "cat"):
        await api.server.add_user(name, "password-123")
    status, first, _ = await api.call("GET", "/accounts?limit=2")
    assert [a["username"] for a in first["items"]] == ["ann", "bea"]
    status, second, _ = await api.call("GET", f"/accounts?limit=2&cursor={first['next']}")
    assert [a["username"] for a in second["items"]] == ["cat"] and second["next"] is None
    status, found, _ = await api.call("GET", "/accounts?search=EA")
    assert status == 200
    assert [a["username"] for a in found["items"]] == ["bea"]


async def test_etag_if_none_match_gives_304(api: Api) -> None:
    await api.server.add_user("ann", "password-123")
    _, _, headers = await api.call("GET", "/accounts")
    etag = headers["ETag"]
    status, body, again = await api.call("GET", "/accounts", headers={"If-None-Match": etag})
    assert status == 304 and body is None and again["ETag"] == etag
    await api.server.add_user("bea", "password-123")
    status, _, changed = await api.call("GET", "/accounts", headers={"If-None-Match": etag})
    assert status == 200 and changed["ETag"] != etag


async def test_password_lock_unlock_delete(api: Api) -> None:
    await api.server.add_user("alice", "alice-password")
    status, _, _ = await api.call(
        "PUT", "/accounts/alice@localhost/password", json={"password": "a-new-password"}
    )
    assert status == 204
    status, body, _ = await api.call("POST", "/accounts/alice@localhost/lock")
    assert status == 200 and body["locked"] is True
    status, body, _ = await api.call("POST", "/accounts/alice@localhost/unlock")
    assert status == 200 and body["locked"] is False
    status, _, _ = await api.call("DELETE", "/accounts/alice@localhost")
    assert status == 204
    assert not await api.server.db.accounts.exists("alice", "localhost")
    _, audit, _ = await api.call("GET", "/audit")
    assert [e["action"] for e in audit["items"]] == [
        "account.delete",
        "account.unlock",
        "account.lock",
        "account.password",
    ]
    assert "a-new-password" not in str(audit)


async def test_read_only_cannot_write_and_nobody_unauthenticated(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/accounts", "readOnly", json={"username": "x", "password": "long-enough"}
    )
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _, _ = await api.call("GET", "/accounts", "readOnly")
    assert status == 200
    status, _, _ = await api.call(
        "POST", "/accounts", "advUser", json={"username": "x", "password": "long-enough"}
    )
    assert status == 201
    async with api.client.get("/api/v1/accounts") as r:
        assert r.status == 401 and "WWW-Authenticate" in r.headers
    _, audit, _ = await api.call("GET", "/audit")
    assert len(audit["items"]) == 1  # only the advUser's creation


async def test_unknown_routes_and_methods_answer_in_the_error_shape(api: Api) -> None:
    status, body, _ = await api.call("GET", "/no-such-thing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, headers = await api.call("PATCH", "/accounts")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert "GET" in headers["Allow"]
