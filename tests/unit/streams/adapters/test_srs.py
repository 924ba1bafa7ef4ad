"""SRS's http_hooks callbacks replayed (streaming-contract.md)."""

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
from chatgate.streams.adapters.srs import SrsAdapter

adapter = SrsAdapter(node="srs1")


def body(action: str = "on_publish", **changes: object) -> bytes:
    fields: dict[str, object] = {
        "server_id": "vid-0xk989d",
        "service_id": "5a1c7l2j",
        "action": action,
        "client_id": "341w361a",
        "ip": "198.51.100.4",
        "vhost": "__defaultVhost__",
        "app": "live",
        "tcUrl": "rtmp://127.0.0.1:1935/live?vhost=__defaultVhost__",
        "stream": "alice",
        "param": "?token=1AbC-_x",
        "stream_url": "/live/alice",
        "stream_id": "vid-124q9y3",
    }
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def post(path: str, data: bytes) -> HookRequest:
    return HookRequest("POST", path, b"", {"content-type": "application/json"}, data, "127.0.0.1")


def ask(path: str, data: bytes) -> Question:
    parsed = adapter.parse(post(path, data))
    assert isinstance(parsed, Question), parsed
    return parsed


def test_registered() -> None:
    assert builtin_adapters(load_entry_points=False).get("srs") is SrsAdapter


def test_publish_with_a_token() -> None:
    q = ask("on_publish", body())
    assert q.action is HookAction.PUBLISH
    assert q.stream == "live/alice" and (q.app, q.name) == ("live", "alice")
    assert q.credentials == Credentials.token("1AbC-_x")
    assert (q.client_address, q.client_id, q.node, q.instance) == (
        "198.51.100.4",
        "341w361a",
        "srs1",
        "vid-0xk989d",
    )
    assert "__defaultVhost__" in q.detail


def test_older_srs_sends_integer_client_ids() -> None:
    assert ask("on_play", body("on_play", client_id=107)).client_id == "107"


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("on_publish", HookAction.PUBLISH),
        ("on_unpublish", HookAction.PUBLISH_DONE),
        ("on_play", HookAction.PLAY),
        ("on_stop", HookAction.PLAY_DONE),
    ],
)
def test_each_endpoint(path: str, action: HookAction) -> None:
    q = ask(path, body(path, param="?username=alice&password=pw"))
    assert q.action is action and q.stream == "live/alice"
    assert q.credentials == Credentials.password("alice", "pw")


def test_connect_has_no_stream_and_no_param_is_anonymous() -> None:
    q = ask("on_connect", body("on_connect", stream=..., param=..., pageUrl=""))
    assert q.action is HookAction.CONNECT and q.stream is None and q.app == "live"
    assert q.credentials.kind is CredentialKind.NONE


def test_param_injection_cannot_change_the_stream() -> None:
    q = ask("on_publish", body(param="?token=1x&stream=bob&app=other&name=bob"))
    assert q.stream == "live/alice"
    q = ask("on_publish", body(param="?key=a&key=b"))
    assert q.credentials == Credentials.invalid("stream key given more than once")


def test_allow_is_200_and_body_zero() -> None:
    q = ask("on_publish", body())
    response = adapter.respond(post("on_publish", b""), q, Verdict.allow())
    assert (response.status, response.body) == (200, b"0")
    assert json.loads(response.body) == 0


@pytest.mark.parametrize("verdict", [Verdict.deny("not granted"), Verdict.unauthenticated()])
def test_deny_is_403_with_a_nonzero_code(verdict: Verdict) -> None:
    q = ask("on_play", body("on_play"))
    response = adapter.respond(post("on_play", b""), q, verdict)
    assert response.status == 403
    assert json.loads(response.body)["code"] != 0


@pytest.mark.parametrize("path", ["on_unpublish", "on_stop"])
def test_dones_are_always_accepted(path: str) -> None:
    q = ask(path, body(path))
    for verdict in (Verdict.deny("x"), Verdict.unauthenticated(), Verdict.allow()):
        assert adapter.respond(post(path, b""), q, verdict).body == b"0"
    denied = adapter.parse(post(path, body(path, stream="a/../b")))
    assert isinstance(denied, Verdict)
    assert adapter.respond(post(path, b""), None, denied).status == 200


@pytest.mark.parametrize("stream", ["", "..", "a&name=b", "a%2F", "a b", "\u0430lice\u200d"])
def test_invalid_streams_are_denied(stream: str) -> None:
    verdict = adapter.parse(post("on_publish", body(stream=stream)))
    assert isinstance(verdict, Verdict) and not verdict.allowed
    assert adapter.respond(post("on_publish", b""), None, verdict).status == 403


@pytest.mark.parametrize(
    ("path", "data", "reason"),
    [
        ("on_publish", b"", "body is not JSON"),
        ("on_publish", b"0", "body is not a JSON object"),
        ("on_publish", body("on_play"), "action is not on_publish"),
        ("on_publish", body(action=...), "action is not on_publish"),
        ("on_publish", body(ip=""), "missing or invalid ip"),
        ("on_publish", body(client_id=...), "missing client_id"),
        ("on_publish", body(client_id=1.5), "client_id is not an id"),
        ("on_publish", body(stream=5), "stream is not a string"),
        ("on_publish", body(param={"token": "x"}), "param is not a string"),
        ("on_unpublish", b"garbage", "body is not JSON"),
    ],
)
def test_malformed_requests_are_400(path: str, data: bytes, reason: str) -> None:
    verdict = adapter.parse(post(path, data))
    assert verdict == Verdict.malformed(reason)
    response = adapter.respond(post(path, data), None, verdict)
    assert response.status == 400 and json.loads(response.body)["code"] == 400


def test_unknown_endpoint_and_impossible_verdicts() -> None:
    verdict = adapter.parse(post("on_dvr", body("on_dvr")))
    assert isinstance(verdict, Verdict)
    assert adapter.respond(post("on_dvr", b""), None, verdict).status == 404
    q = ask("on_publish", body())
    assert adapter.respond(post("on_publish", b""), q, Verdict.rename("live/x")).status == 500
