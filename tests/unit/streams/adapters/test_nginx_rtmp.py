"""nginx-rtmp's notifications replayed byte for byte (streaming-contract.md)."""

from __future__ import annotations

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
from chatgate.streams.adapters.nginx_rtmp import NginxRtmpAdapter

# The contract's example, verbatim: ffmpeg publishing
# rtmp://127.0.0.1:1935/live/stream1?username=alice&password=secret
PUBLISH_BODY = (
    b"app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:1935/live"
    b"&pageurl=&addr=127.0.0.1&clientid=6&call=publish&name=stream1&type=live"
    b"&username=alice&password=secret"
)
PREFIX = b"app=live&flashver=LNX%209%2C0%2C124%2C2&swfurl=&tcurl=rtmp://127.0.0.1:1935/live&pageurl=&addr=127.0.0.1&clientid=9"
PLAY_BODY = PREFIX + b"&call=play&name=stream1&start=4294965296&duration=0&reset=0"
NGINX_HEADERS = {
    "host": "127.0.0.1",
    "content-type": "application/x-www-form-urlencoded",
    "connection": "Close",
}

adapter = NginxRtmpAdapter(node="edge1")


def post(path: str, body: bytes) -> HookRequest:
    headers = dict(NGINX_HEADERS, **{"content-length": str(len(body))})
    return HookRequest("POST", path, b"", headers, body, "127.0.0.1")


def ask(path: str, body: bytes) -> Question:
    parsed = adapter.parse(post(path, body))
    assert isinstance(parsed, Question), parsed
    return parsed


def refused(path: str, body: bytes) -> Verdict:
    parsed = adapter.parse(post(path, body))
    assert isinstance(parsed, Verdict), parsed
    return parsed


def test_registry_lists_the_adapter_under_its_url_name() -> None:
    registry = builtin_adapters(load_entry_points=False)
    assert registry.get("nginx-rtmp") is NginxRtmpAdapter
    assert NginxRtmpAdapter.name == "nginx-rtmp"


def test_the_contract_example_publishes_with_a_password() -> None:
    q = ask("publish", PUBLISH_BODY)
    assert q.action is HookAction.PUBLISH
    assert q.stream == "live/stream1"
    assert (q.app, q.name) == ("live", "stream1")
    assert q.credentials == Credentials.password("alice", "secret")
    assert (q.client_address, q.client_id, q.node) == ("127.0.0.1", "6", "edge1")


def test_secrets_never_appear_in_repr() -> None:
    q = ask("publish", PUBLISH_BODY.replace(b"password=secret", b"password=hunter2"))
    assert q.credentials.secret == "hunter2"
    assert "hunter2" not in repr(q)
    assert "hunter2" not in str(q.credentials)
    assert "alice" in repr(q.credentials)
    assert "s3cret" not in repr(Verdict.reveal("s3cret"))


def test_play_as_ffmpeg_sends_it() -> None:
    q = ask("play", PLAY_BODY + b"&token=1AbC-_x")
    assert q.action is HookAction.PLAY
    assert q.stream == "live/stream1"
    assert q.credentials == Credentials.token("1AbC-_x")
    assert q.client_id == "9"


def test_play_without_arguments_is_anonymous() -> None:
    assert ask("play", PLAY_BODY).credentials.kind is CredentialKind.NONE


def test_stream_key_with_and_without_username() -> None:
    assert ask("publish", PUBLISH_BODY.split(b"&username")[0] + b"&key=8f3k").credentials == (
        Credentials.stream_key("8f3k")
    )
    body = PUBLISH_BODY.split(b"&username")[0] + b"&user=alice&key=8f3k"
    assert ask("publish", body).credentials == Credentials.stream_key("8f3k", "alice")


def test_get_with_notify_method_get_reads_the_query() -> None:
    request = HookRequest("GET", "publish", PUBLISH_BODY, {"host": "127.0.0.1"}, b"")
    q = adapter.parse(request)
    assert isinstance(q, Question)
    assert q.stream == "live/stream1"
    assert q.credentials == Credentials.password("alice", "secret")


def test_post_ignores_the_url_query() -> None:
    request = HookRequest("POST", "publish", b"name=other&call=play", {}, PUBLISH_BODY)
    q = adapter.parse(request)
    assert isinstance(q, Question) and q.stream == "live/stream1"


@pytest.mark.parametrize(
    "injection",
    [
        b"&name=other",
        b"&name=bob&app=live",
        b"&call=play",
        b"&app=other",
        b"&clientid=1",
        b"&addr=10.9.9.9",
        b"&na%6de=other",
        b"&name+=x",
    ],
)
def test_injected_fields_do_not_change_nginx_generated_values(injection: bytes) -> None:
    q = ask("publish", PUBLISH_BODY + injection)
    assert q.stream == "live/stream1"
    assert q.action is HookAction.PUBLISH
    assert (q.client_address, q.client_id) == ("127.0.0.1", "6")
    assert q.credentials == Credentials.password("alice", "secret")


def test_injected_name_on_connect_is_not_a_stream() -> None:
    body = (
        b"app=live&flashver=FMLE/3.0&swfurl=&tcurl=rtmp://127.0.0.1:1935/live&pageurl="
        b"&addr=127.0.0.1&epoch=12345&call=connect&name=other&clientid=3&token=1tok"
    )
    q = ask("connect", body)
    assert q.action is HookAction.CONNECT
    assert q.stream is None and q.name is None and q.client_id is None
    assert q.app == "live"
    assert q.credentials == Credentials.token("1tok")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (b"&username=alice&password=secret&password=other", "password given more than once"),
        (b"&username=alice&password=secret&pass=other", "password given more than once"),
        (b"&username=alice&user=bob&password=x", "username given more than once"),
        (b"&username=alice&password=secret&token=1x", "more than one kind of credential"),
        (b"&token=1x&key=k", "more than one kind of credential"),
        (b"&password=secret", "password without username"),
        (b"&username=alice", "username without password"),
        (b"&username=alice&password=%ff%fe", "password is not UTF-8"),
        (b"&token=1x&token=1y", "token given more than once"),
        (b"&username=alice&password=" + b"x" * 1025, "password longer than 1024 characters"),
    ],
)
def test_ambiguous_credentials_are_invalid(args: bytes, problem: str) -> None:
    base = PUBLISH_BODY.split(b"&username")[0]
    credentials = ask("publish", base + args).credentials
    assert credentials.kind is CredentialKind.INVALID
    assert credentials.problem == problem
    assert credentials.secret is None


def test_empty_credentials_are_absent() -> None:
    base = PUBLISH_BODY.split(b"&username")[0]
    assert ask("publish", base + b"&username=&password=&token=").credentials == (Credentials.none())


def test_plus_and_percent_decoding() -> None:
    base = PUBLISH_BODY.split(b"&username")[0]
    q = ask("publish", base + b"&username=alice&password=a+b%2Bc%26d%3D%25")
    assert q.credentials == Credentials.password("alice", "a b+c&d=%")
    # an incomplete escape (nginx cut the arguments) stays as it is
    q = ask("publish", base + b"&username=alice&password=abc%2")
    assert q.credentials == Credentials.password("alice", "abc%2")
    # keys are decoded too
    q = ask("publish", base + b"&user%6eame=alice&pass%77ord=x")
    assert q.credentials == Credentials.password("alice", "x")


def test_unicode_stream_names_are_decoded_and_validated() -> None:
    body = PREFIX + b"&call=publish&name=caf%C3%A9&type=live"
    assert ask("publish", body).stream == "live/café"
    body = PREFIX + b"&call=publish&name=cafe%CC%81&type=live"  # NFD
    assert refused("publish", body).reason.startswith("invalid stream name")


@pytest.mark.parametrize(
    "name",
    [
        b"",
        b"%ff",
        b"a%00b",
        b"..",
        b"alice%26name%3Dbob",
        b"a/../b",
        b"%2e%2e",
        b"a%20b",
        b"x" * 251,
        b"a%2F",
        b"%2Fa",
    ],
)
def test_invalid_stream_names_are_denied(name: bytes) -> None:
    verdict = refused("publish", PREFIX + b"&call=publish&name=" + name + b"&type=live")
    assert not verdict.allowed
    response = adapter.respond(post("publish", b""), None, verdict)
    assert response.status == 403


def test_name_limit_255_bytes_with_a_token() -> None:
    # nginx keeps 255 bytes of name + "?" + args: a 150-character token leaves room
    token = "1" + "A" * 149
    name = "n" * (255 - 1 - len("token=") - len(token) - len("live/") + len("live/"))
    assert len(name) + 1 + len("token=") + len(token) == 255
    body = PREFIX + b"&call=publish&name=" + name.encode() + b"&type=live&token=" + token.encode()
    q = ask("publish", body)
    assert q.credentials == Credentials.token(token)
    assert q.stream == "live/" + name
    # a cut token arrives as a shorter token: the token layer refuses it, not the adapter
    cut = ask("publish", body[:-10]).credentials
    assert cut.kind is CredentialKind.TOKEN and cut.secret == token[:-10]


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("publish", b"", "call is not one /publish receives"),
        (
            "publish",
            PUBLISH_BODY.replace(b"call=publish", b"call=play"),
            "call is not one /publish receives",
        ),
        ("play", PUBLISH_BODY, "call is not one /play receives"),
        ("publish", PUBLISH_BODY.replace(b"&addr=127.0.0.1", b""), "missing or invalid addr"),
        (
            "publish",
            PUBLISH_BODY.replace(b"addr=127.0.0.1", b"addr=%ff"),
            "missing or invalid addr",
        ),
        (
            "publish",
            PUBLISH_BODY.replace(b"addr=127.0.0.1", b"addr=1%0a2"),
            "missing or invalid addr",
        ),
        (
            "publish",
            PUBLISH_BODY.replace(b"clientid=6", b"clientid=x6"),
            "missing or invalid clientid",
        ),
        ("publish", PUBLISH_BODY.replace(b"&clientid=6", b""), "missing or invalid clientid"),
        ("publish", PUBLISH_BODY.replace(b"&name=stream1", b""), "missing name"),
        ("publish", PUBLISH_BODY.replace(b"app=live&", b""), "missing app"),
        ("publish", b"\x00\xff\xfe garbage \r\n\r\n", "call is not one /publish receives"),
        ("publish", PUBLISH_BODY + b"&x=" + b"y" * 8192, "notification too large"),
        ("nope", PUBLISH_BODY, "no such nginx-rtmp hook"),
    ],
)
def test_malformed_requests_are_400(path: str, body: bytes, reason: str) -> None:
    verdict = refused(path, body)
    assert verdict == Verdict.malformed(reason)
    response = adapter.respond(post(path, body), None, verdict)
    expected = 404 if path == "nope" else 400
    assert response.status == expected
    assert response.close


def test_other_methods_are_malformed() -> None:
    request = HookRequest("PUT", "publish", b"", {}, PUBLISH_BODY)
    assert adapter.parse(request) == Verdict.malformed("method not allowed")


def test_garbage_never_raises() -> None:
    import random

    rng = random.Random(5)
    alphabet = b"&=%+aname1call\xff\x00/"
    for _ in range(3000):
        size = rng.randint(0, 80)
        junk = bytes(rng.choice(alphabet) for _ in range(size))
        for path in ("publish", "connect", "update", "play_done"):
            for body in (junk, PUBLISH_BODY + junk, junk + PUBLISH_BODY):
                parsed = adapter.parse(post(path, body))
                verdict = parsed if isinstance(parsed, Verdict) else Verdict.allow()
                question = parsed if isinstance(parsed, Question) else None
                assert adapter.respond(post(path, body), question, verdict).status < 500


def done_body(call: bytes) -> bytes:
    return PREFIX + b"&call=" + call + b"&name=stream1&username=alice&password=secret"


@pytest.mark.parametrize(
    ("path", "call", "action"),
    [
        ("publish_done", b"publish_done", HookAction.PUBLISH_DONE),
        ("publish_done", b"done", HookAction.PUBLISH_DONE),
        ("play_done", b"play_done", HookAction.PLAY_DONE),
        ("play_done", b"done", HookAction.PLAY_DONE),
    ],
)
def test_dones_pair_by_client_id_and_are_always_200(
    path: str, call: bytes, action: HookAction
) -> None:
    q = ask(path, done_body(call))
    assert q.action is action
    assert (q.stream, q.client_id, q.node) == ("live/stream1", "9", "edge1")
    assert not q.action.decides
    for verdict in (Verdict.deny("no"), Verdict.allow(), Verdict.unauthenticated()):
        assert adapter.respond(post(path, b""), q, verdict).status == 200


@pytest.mark.parametrize(
    ("call", "action"),
    [(b"update_publish", HookAction.UPDATE_PUBLISH), (b"update_play", HookAction.UPDATE_PLAY)],
)
def test_update_renews_and_a_deny_ends_it(call: bytes, action: HookAction) -> None:
    body = PREFIX + b"&call=" + call + b"&time=30&timestamp=30016&name=stream1&key=k1"
    q = ask("update", body)
    assert q.action is action and q.stream == "live/stream1"
    assert q.credentials == Credentials.stream_key("k1")
    assert adapter.respond(post("update", body), q, Verdict.allow()).status == 200
    assert adapter.respond(post("update", body), q, Verdict.deny("revoked")).status == 403
    assert adapter.respond(post("update", body), q, Verdict.rename("live/x")).status == 200


def test_allow_deny_and_rename_responses() -> None:
    q = ask("publish", PUBLISH_BODY)
    request = post("publish", PUBLISH_BODY)
    ok = adapter.respond(request, q, Verdict.allow())
    assert (ok.status, ok.body, ok.close) == (200, b"", False)  # HTTP/1.0 closes anyway
    denied = adapter.respond(request, q, Verdict.deny("not granted"))
    assert (denied.status, denied.body) == (403, b"not granted\n")
    assert adapter.respond(request, q, Verdict.unauthenticated()).status == 403
    renamed = adapter.respond(request, q, Verdict.rename("live/alice"))
    assert renamed.status == 302
    assert ("Location", "alice") in renamed.headers
    assert not any(value.startswith("rtmp:") for _, value in renamed.headers)


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict.rename("other/alice"),
        Verdict.rename("live/caf\u00e9"),
        Verdict.rename("live/a\r\nX: y"),
        Verdict.rename("live/"),
        Verdict.reveal("k"),
    ],
)
def test_impossible_verdicts_fail_closed_with_500(verdict: Verdict) -> None:
    q = ask("publish", PUBLISH_BODY)
    response = adapter.respond(post("publish", PUBLISH_BODY), q, verdict)
    assert response.status == 500
    assert not any(name == "Location" for name, _ in response.headers)
