"""The JSON bodies of MediaMTX's, SRS's and Red5's hooks (`adapters/jsonbody.py`):
hostile or broken bodies are a malformed request with the adapter's own 4xx,
never an exception, and a key given twice is one of them."""

from __future__ import annotations

import json

import pytest

from chatgate.streams.adapters import HookRequest, Verdict, VerdictKind
from chatgate.streams.adapters.jsonbody import MAX_JSON_BODY, Malformed, read_object
from chatgate.streams.adapters.mediamtx import MediaMtxAdapter
from chatgate.streams.adapters.red5 import Red5Adapter
from chatgate.streams.adapters.srs import SrsAdapter


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": 1, "a": 2}', "a key given twice"),
        (b'{"a": {"b": 1, "b": 1}}', "a key given twice"),
        (b'[{"a": 1, "a": 1}]', "a key given twice"),
        (b"[" * 10_000 + b"]" * 10_000, "body too large"),
        (b"[" * 5000 + b"]" * 5000, "body is not JSON"),  # deeper than the recursion limit
        (b'{"id": ' + b"9" * 5000 + b"}", "body is not JSON"),  # past int's digit limit
        (b'{"a": "\xff"}', "body is not JSON"),
        (b"", "body is not JSON"),
        (b"[]", "body is not a JSON object"),
        (b"1e999", "body is not a JSON object"),
    ],
)
def test_hostile_bodies_are_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        read_object(body)


def test_a_key_that_differs_in_case_or_escape_is_another_key() -> None:
    assert read_object(b'{"a": 1, "A": 2}') == {"a": 1, "A": 2}
    # an escape names the same key: JSON compares keys after decoding
    with pytest.raises(Malformed, match="twice"):
        read_object(b'{"a": 1, "\\u0061": 2}')


def test_a_body_at_the_limit_is_read() -> None:
    padding = MAX_JSON_BODY - len(b'{"x": ""}')
    assert read_object(b'{"x": "' + b"y" * padding + b'"}') == {"x": "y" * padding}


@pytest.mark.parametrize(
    ("adapter", "path", "fields"),
    [
        (
            MediaMtxAdapter(),
            "auth",
            b'"action": "read", "ip": "192.0.2.7", "path": "live/a", "path": "live/b"',
        ),
        (
            SrsAdapter(),
            "on_play",
            b'"action": "on_play", "client_id": "1", "ip": "192.0.2.7", "app": "live",'
            b' "stream": "a", "param": "", "param": "?token=x"',
        ),
        (
            Red5Adapter(),
            "validateCredentials",
            b'"type": "subscriber", "streamID": "a", "type": "publisher"',
        ),
    ],
    ids=["mediamtx", "srs", "red5"],
)
def test_each_json_adapter_answers_a_repeated_key_400(
    adapter: MediaMtxAdapter | SrsAdapter | Red5Adapter, path: str, fields: bytes
) -> None:
    request = HookRequest("POST", path, b"", {}, b"{" + fields + b"}", "127.0.0.1")
    verdict = adapter.parse(request)
    assert isinstance(verdict, Verdict) and verdict.kind is VerdictKind.MALFORMED
    response = adapter.respond(request, None, verdict)
    assert response.status == 400
    assert b"twice" in response.body
    if not isinstance(adapter, MediaMtxAdapter):
        json.loads(response.body)  # SRS's and Red5's error bodies stay JSON
