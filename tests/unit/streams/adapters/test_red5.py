"""Red5 Pro's round-trip validator requests replayed (streaming-contract.md, seed 001)."""

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
from chatgate.streams.adapters.red5 import Red5Adapter

adapter = Red5Adapter(node="red5a")
strict = Red5Adapter(client_token_required=True)
VALIDATE = "validateCredentials"
INVALIDATE = "invalidateCredentials"


def body(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "username": "testuser",
        "password": "testpass",
        "token": "",
        "type": "publisher",
        "streamID": "stream1",
    }
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def post(path: str, data: bytes) -> HookRequest:
    return HookRequest("POST", path, b"", {"content-type": "application/json"}, data, "127.0.0.1")


def ask(data: bytes, path: str = VALIDATE, on: Red5Adapter = adapter) -> Question:
    parsed = on.parse(post(path, data))
    assert isinstance(parsed, Question), parsed
    return parsed


def answer(verdict: Verdict, path: str = VALIDATE) -> tuple[int, object]:
    response = adapter.respond(post(path, b""), None, verdict)
    assert ("Content-Type", "application/json") in response.headers
    return response.status, json.loads(response.body)


def test_registered() -> None:
    assert builtin_adapters(load_entry_points=False).get("red5") is Red5Adapter


def test_the_seed_example_validates_a_publisher() -> None:
    q = ask(body())
    assert q.action is HookAction.PUBLISH
    assert q.stream == "live/stream1" and q.name == "stream1"
    assert q.credentials == Credentials.password("testuser", "testpass")
    assert q.client_address is None and q.client_id is None and q.node == "red5a"


def test_subscriber_and_invalidate() -> None:
    assert ask(body(type="subscriber")).action is HookAction.PLAY
    assert ask(body(), INVALIDATE).action is HookAction.PUBLISH_DONE
    assert ask(body(type="subscriber"), INVALIDATE).action is HookAction.PLAY_DONE


def test_configured_application() -> None:
    q = ask(body(), on=Red5Adapter(application="webinar"))
    assert q.stream == "webinar/stream1"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"username": "", "password": ""}, Credentials.none()),
        ({"username": ..., "password": ..., "token": ...}, Credentials.none()),
        ({"username": "anonymous", "password": "anonymous"}, Credentials.none()),
        ({"username": "anonymous", "password": "x", "token": "1tok"}, Credentials.token("1tok")),
        ({"token": "1tok"}, Credentials.token("1tok", "testuser")),
        ({"password": ""}, Credentials.invalid("username without password", "testuser")),
    ],
)
def test_anonymous_dummy_and_token_credentials(
    changes: dict[str, object], expected: Credentials
) -> None:
    assert ask(body(**changes)).credentials == expected


def test_client_token_required_refuses_subscribers_without_token() -> None:
    verdict = strict.parse(post(VALIDATE, body(type="subscriber")))
    assert verdict == Verdict.deny("token required")
    assert strict.respond(post(VALIDATE, b""), None, verdict).body == b'{"result": false}'
    assert ask(body(type="subscriber", token="1t"), on=strict).credentials.kind is (
        CredentialKind.TOKEN
    )
    assert isinstance(strict.parse(post(VALIDATE, body())), Question)  # publishers unaffected


def test_answers_are_200_with_result() -> None:
    assert answer(Verdict.allow()) == (200, {"result": True})
    assert answer(Verdict.allow(url="https://cdn.example/s?sig=1")) == (
        200,
        {"result": True, "url": "https://cdn.example/s?sig=1"},
    )
    for verdict in (Verdict.deny("x"), Verdict.unauthenticated(), Verdict.rename("live/x")):
        assert answer(verdict) == (200, {"result": False})
    assert answer(Verdict.reveal("key")) == (200, {"result": False})
    assert answer(Verdict.deny("x"), INVALIDATE) == (200, {"result": True})


@pytest.mark.parametrize("stream_id", ["../x", "a&name=b", "a/", "x" * 300])
def test_invalid_stream_ids_are_refused(stream_id: str) -> None:
    verdict = adapter.parse(post(VALIDATE, body(streamID=stream_id)))
    assert isinstance(verdict, Verdict) and not verdict.allowed
    assert answer(verdict) == (200, {"result": False})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b'"text"', "body is not a JSON object"),
        (body(type="viewer"), "type is not publisher or subscriber"),
        (body(type=...), "type is not publisher or subscriber"),
        (body(streamID=""), "empty streamID"),
        (body(streamID=...), "empty streamID"),
        (body(username=1), "username is not a string"),
        (body(token=["t"]), "token is not a string"),
    ],
)
def test_malformed_requests_are_400_with_json(data: bytes, reason: str) -> None:
    verdict = adapter.parse(post(VALIDATE, data))
    assert verdict == Verdict.malformed(reason)
    assert answer(verdict) == (400, {"error": reason})
