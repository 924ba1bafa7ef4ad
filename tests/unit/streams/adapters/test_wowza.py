"""Wowza's third-party TEA token provider (seed 000), checked against the
independent ``xxtea`` package (padding=False) as the Wowza side."""

from __future__ import annotations

import json

import pytest
import xxtea as oracle

from chatgate.streams.adapters import HookAction, HookRequest, Question, Verdict, builtin_adapters
from chatgate.streams.adapters.wowza import WowzaTokenAdapter

SECRET = "abcdefghijklmnop"  # the seed's example shared secret
adapter = WowzaTokenAdapter(shared_secret=SECRET)


def wowza_tea(text: str) -> str:
    data = text.encode("latin-1")
    data = data.ljust(max(8, -(-len(data) // 4) * 4), b"\0")
    return oracle.encrypt(data, SECRET.encode("latin-1"), padding=False).hex()


def wowza_untea(hex_text: str) -> str:
    raw = oracle.decrypt(bytes.fromhex(hex_text), SECRET.encode("latin-1"), padding=False)
    return raw.rstrip(b"\0").decode("latin-1")


def post(body: bytes, path: str = "tea-token") -> HookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    return HookRequest("POST", path, b"", headers, body)


def test_registered_and_secret_checked() -> None:
    assert builtin_adapters(load_entry_points=False).get("wowza") is WowzaTokenAdapter
    with pytest.raises(ValueError):
        WowzaTokenAdapter(shared_secret="short")
    assert SECRET not in repr(adapter)


def test_round_trip_as_wowza_does_it() -> None:
    request = post(b"clientid=" + wowza_tea("testuser").encode())
    q = adapter.parse(request)
    assert isinstance(q, Question)
    assert q.action is HookAction.STREAM_KEY and q.name == "testuser" and q.stream is None
    response = adapter.respond(request, q, Verdict.reveal("123456"))
    assert response.status == 200
    token = json.loads(response.body)["publisherToken"]
    assert wowza_untea(token) == "123456"
    assert response.body == b'{"publisherToken":"' + token.encode() + b'"}'


@pytest.mark.parametrize(
    "verdict", [Verdict.deny("unknown user"), Verdict.allow(), Verdict.reveal("")]
)
def test_no_key_is_invalid_client(verdict: Verdict) -> None:
    request = post(b"clientid=" + wowza_tea("nobody").encode())
    q = adapter.parse(request)
    response = adapter.respond(request, q if isinstance(q, Question) else None, verdict)
    assert (response.status, response.body) == (200, b'{"error":"Invalid Client"}')


@pytest.mark.parametrize(
    "clientid", [b"zz", b"abcd", b"0x" + b"0" * 15, b"%ff" * 8, b"ab043705808c5d57 "]
)
def test_undecodable_clientid_is_invalid_client(clientid: bytes) -> None:
    verdict = adapter.parse(post(b"clientid=" + clientid))
    assert isinstance(verdict, Verdict) and not verdict.allowed
    response = adapter.respond(post(b""), None, verdict)
    assert (response.status, response.body) == (200, b'{"error":"Invalid Client"}')


def test_other_secret_decodes_to_garbage_refused_or_unknown() -> None:
    data = oracle.encrypt(b"testuser", b"ponmlkjihgfedcba", padding=False).hex().encode()
    parsed = adapter.parse(post(b"clientid=" + data))
    assert not (isinstance(parsed, Question) and parsed.name == "testuser")


@pytest.mark.parametrize(
    "body", [b"", b"clientid=", b"other=1", b"clientid=a&clientid=b", b"x" * 20000]
)
def test_missing_or_empty_clientid_is_400(body: bytes) -> None:
    verdict = adapter.parse(post(body))
    assert isinstance(verdict, Verdict)
    response = adapter.respond(post(body), None, verdict)
    assert (response.status, response.body) == (400, b'{"error":"Invalid Client"}')


def test_unknown_endpoint() -> None:
    verdict = adapter.parse(post(b"clientid=00", path="x"))
    assert isinstance(verdict, Verdict)
    assert adapter.respond(post(b"", path="x"), None, verdict).status == 404
