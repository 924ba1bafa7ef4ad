"""MediaMTX's HTTP authentication requests replayed (streaming-contract.md)."""

from __future__ import annotations

import json

import pytest

from chatgate.streams.adapters import (
    CredentialKind,
    Credentials,
    HookAction,
    HookRequest,
    Question,
    Verdict,
    builtin_adapters,
)
from chatgate.streams.adapters.mediamtx import MediaMtxAdapter

adapter = MediaMtxAdapter(node="mtx1")


def body(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "user": "alice",
        "password": "hunter2",
        "token": "",
        "ip": "192.0.2.7",
        "action": "publish",
        "path": "live/alice",
        "protocol": "rtsp",
        "id": "5f1a4b1e-3a0c-4c56-9a0d-1c2f6b1b2c3d",
        "query": "",
    }
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def post(data: bytes, path: str = "auth") -> HookRequest:
    return HookRequest("POST", path, b"", {"content-type": "application/json"}, data, "127.0.0.1")


def ask(data: bytes) -> Question:
    parsed = adapter.parse(post(data))
    assert isinstance(parsed, Question), parsed
    return parsed


def test_registered() -> None:
    assert builtin_adapters(load_entry_points=False).get("mediamtx") is MediaMtxAdapter


def test_publish_with_user_and_password() -> None:
    q = ask(body())
    assert q.action is HookAction.PUBLISH
    assert q.stream == "live/alice" and q.name == "live/alice"
    assert q.credentials == Credentials.password("alice", "hunter2")
    assert q.client_address == "192.0.2.7"
    # not tracked (MediaMTX sends no done), but logged
    assert q.client_id is None
    assert q.detail is not None and "5f1a4b1e-3a0c-4c56-9a0d-1c2f6b1b2c3d" in q.detail
    assert q.node == "mtx1"
    assert q.detail == "publish via rtsp (session 5f1a4b1e-3a0c-4c56-9a0d-1c2f6b1b2c3d)"
    assert "hunter2" not in repr(q)


@pytest.mark.parametrize(
    ("word", "action"),
    [("read", HookAction.PLAY), ("playback", HookAction.PLAY), ("publish", HookAction.PUBLISH)],
)
def test_stream_actions(word: str, action: HookAction) -> None:
    q = ask(body(action=word, path="cam1", user="", password=""))
    assert q.action is action and q.stream == "cam1"
    assert q.credentials.kind is CredentialKind.NONE
    assert word in q.detail


@pytest.mark.parametrize("word", ["api", "metrics", "pprof"])
def test_admin_actions_have_no_stream(word: str) -> None:
    q = ask(body(action=word, path="", protocol=""))
    assert q.action is HookAction.ADMIN and q.stream is None and q.name is None


def test_newer_builds_userAgent_and_null_id() -> None:
    q = ask(body(id=None, userAgent="ffmpeg/5.1"))
    assert q.client_id is None


def test_token_field_and_query_credentials() -> None:
    assert ask(body(user="", password="", token="1abc")).credentials == Credentials.token("1abc")
    q = ask(body(user="", password="", query="key=k%2B1&x=y"))
    assert q.credentials == Credentials.stream_key("k+1")
    q = ask(body(user="", password="", query="token=1t&token=1u"))
    assert q.credentials.kind is CredentialKind.INVALID
    # MediaMTX's own fields win over the query
    q = ask(body(query="token=1t"))
    assert q.credentials == Credentials.password("alice", "hunter2")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"password": ""}, "username without password"),
        ({"user": ""}, "password without username"),
        ({"token": "1t"}, "more than one kind of credential"),
        ({"password": "x" * 1025}, "secret longer than 1024 characters"),
    ],
)
def test_invalid_credentials(changes: dict[str, object], problem: str) -> None:
    creds = ask(body(**changes)).credentials
    assert creds.kind is CredentialKind.INVALID and creds.problem == problem


def test_answers() -> None:
    q = ask(body())
    request = post(body())
    assert adapter.respond(request, q, Verdict.allow()).status == 200
    assert adapter.respond(request, q, Verdict.deny("not granted")).status == 403
    assert adapter.respond(request, q, Verdict.deny("x")).body == b"x\n"
    assert adapter.respond(request, q, Verdict.unauthenticated()).status == 401
    assert adapter.respond(request, q, Verdict.rename("live/x")).status == 500
    assert adapter.respond(request, q, Verdict.reveal("k")).status == 500


def test_deny_without_credentials_is_401_so_rtsp_clients_retry() -> None:
    q = ask(body(user="", password="", action="read"))
    assert adapter.respond(post(b""), q, Verdict.deny("not granted")).status == 401
    q = ask(body(user="", password="", query="username=&password="))
    assert adapter.respond(post(b""), q, Verdict.deny("not granted")).status == 401
    # wrong credentials are a plain refusal
    q = ask(body(user="alice", password="wrong"))
    assert adapter.respond(post(b""), q, Verdict.deny("not granted")).status == 403


@pytest.mark.parametrize(
    "path", ["", "live/../x", "live/a&name=b", "/live", "live/", "caf\u0065\u0301", "a\x00b"]
)
def test_invalid_paths_are_denied(path: str) -> None:
    parsed = adapter.parse(post(body(path=path)))
    assert isinstance(parsed, Verdict) and parsed.kind.value == "deny"
    assert adapter.respond(post(b""), None, parsed).status == 403


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "body is not JSON"),
        (b"{", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[]", "body is not a JSON object"),
        (b"null", "body is not a JSON object"),
        (b"[" * 100000, "body too large"),
        (b"[" * 5000 + b"]" * 5000, "body is not JSON"),
        (body(action="delete"), "unknown action"),
        (body(action=None), "unknown action"),
        (body(action=1), "action is not a string"),
        (body(ip=...), "missing or invalid ip"),
        (body(ip="1.2.3.4 "), "missing or invalid ip"),
        (body(user=7), "user is not a string"),
        (body(path=["live"]), "path is not a string"),
        (body(id=True), "id is not an id"),
        (body(id="a b"), "id is not an id"),
    ],
)
def test_malformed_requests_are_400(data: bytes, reason: str) -> None:
    verdict = adapter.parse(post(data))
    assert verdict == Verdict.malformed(reason)
    assert adapter.respond(post(data), None, verdict).status == 400


def test_wrong_method_and_path() -> None:
    assert adapter.parse(HookRequest("GET", "auth")) == Verdict.malformed("method not allowed")
    verdict = adapter.parse(post(body(), path="other"))
    assert isinstance(verdict, Verdict)
    assert adapter.respond(post(b"", path="other"), None, verdict).status == 404
