"""Hostile clients against the administration routes of a real `chatgate serve`:
`/api/v1`, the console `/admin/` with its setup wizard, and `/metrics`.

Held to the project's standard: every bad request gets a precise 4xx in the
API's one error shape (or the console's refusal page), nothing reaches a
handler without authentication, nothing stored is lost or corrupted, the server
keeps serving everyone else at their usual speed, and its memory stays bounded.

Failed logins are sent from their own loopback addresses (127.0.0.3 and up:
Linux routes all of 127/8 to lo), so the brute-force protection they provoke
never holds the honest requests of other tests, which come from 127.0.0.1; an
honest client measured under attack uses 127.0.0.2.  The listener trusts
127.0.0.1 as a reverse proxy, so `X-Forwarded-For` from there stands for a
client elsewhere; from any other loopback address the header is ignored.

What these attacks found (each test names it): a JSON body nested a few
thousand levels deep, a forged cursor holding a lone surrogate or a 70-bit
integer, a console POST whose multipart text was not UTF-8, a token lifetime of
"inf" days and a CR LF in the kick form's `back` field were all answered 500;
the API took changes from any browser page that could make the browser send
cached Basic credentials (a `text/plain` form, or a bodyless POST); the setup
wizard served another site's page that resolved its own name to 127.0.0.1
(DNS rebinding), and two browsers finishing it at once both became the first
administrator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import statistics
import time
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.e2e.conftest import RunningServer, connect, logged_in
from tests.e2e.flood import rss_kib
from tests.e2e.test_admin_api_support import AS, ApiClient, basic, start_api_server
from tests.e2e.test_lane_attacks import read_until_closed, responses, tracebacks
from tests.e2e.test_web_attacks import RSS_BOUND_KIB
from tests.e2e.web import start_web_server

pytestmark = pytest.mark.e2e

PROXY = 'trusted_proxies = ["127.0.0.1"]\n'
AFAR = "203.0.113.9"
#: where an honest client measured under attack connects from
HONEST_SOURCE = "127.0.0.2"
SCRIPT = '<script>alert("xss")</script>'
IMAGE = '"><img src=x onerror=alert(1)>'
#: a second client's median latency under attack may grow by this much
LATENCY_BOUND_MS = 150


# ---------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Administrators `admin`, `operator` (advUser) and `watcher` (readOnly),
    accounts alice and bob; `[streams]` and approval registration on."""
    srv = start_api_server(tmp_path_factory.mktemp("admin-attacks"), PROXY)
    try:
        for name in ("alice", "bob"):
            srv.add_user(name, f"{name}-password")
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()
    assert not tracebacks(srv.log_text()), tracebacks(srv.log_text())


FRESH = (
    PROXY
    + """
[admin]
enabled = true
auth = ["basic", "digest", "bearer"]
metrics_open_on_loopback = true
"""
)


def start_fresh(tmp: Path) -> RunningServer:
    """A server nobody has set up yet: the wizard is served (to loopback)."""
    return start_web_server(tmp, FRESH)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_fresh(tmp_path_factory.mktemp("admin-fresh"))
    try:
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()
    assert not tracebacks(srv.log_text()), tracebacks(srv.log_text())


# ---------------------------------------------------------------- clients


def base_url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def ask(server: RunningServer, raw: bytes, source: str = "127.0.0.1") -> tuple[int, bytes, bytes]:
    """One raw request (it asks the server to close): (status, head, body)."""
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", server.http_port))
        sock.sendall(raw)
        data, closed = read_until_closed(sock, 10)
    answers = responses(data)
    assert len(answers) == 1 and closed, data[:300]
    return answers[0]


def get(target: str, *headers: str) -> bytes:
    lines = "".join(h + "\r\n" for h in headers)
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Connection: close\r\n\r\n".encode()


def http(source: str | None = None) -> aiohttp.ClientSession:
    """A client session from `source` that keeps cookies of IP-address hosts."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None, limit=100)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True))


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


class ConsoleBrowser:
    """The console as a browser uses it: a cookie, forms with their token, Origin."""

    def __init__(self, server: RunningServer, session: aiohttp.ClientSession) -> None:
        self.base = base_url(server)
        self.http = session
        self.csrf = ""

    async def login(self, authorization: str = AS["admin"]) -> None:
        async with self.http.get(
            self.base + "/admin/login",
            headers={"Authorization": authorization},
            allow_redirects=False,
        ) as r:
            assert r.status == 303, await r.text()
        self.csrf = form_token(await self.page("/admin/users"))

    async def page(self, path: str) -> str:
        async with self.http.get(self.base + path, allow_redirects=False) as r:
            assert r.status == 200, (path, r.status)
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            return await r.text()

    async def post(
        self, path: str, data: Any, *, origin: str | None = "self", **headers: str
    ) -> tuple[int, str, str]:
        """(status, Location, body) of a form POST (`origin` None: no Origin)."""
        if origin is not None:
            headers["Origin"] = self.base if origin == "self" else origin
        if isinstance(data, dict) and "csrf" not in data:
            data = {**data, "csrf": self.csrf}
        async with self.http.post(
            self.base + path, data=data, headers=headers, allow_redirects=False
        ) as r:
            return r.status, r.headers.get("Location", ""), await r.text()


BOUNDARY = "attack-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart(fields: dict[str, bytes]) -> bytes:
    """A multipart/form-data body with these bytes as they are (no charset check:
    a hostile client's)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
        for name, value in fields.items()
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@contextlib.asynccontextmanager
async def console_as(
    server: RunningServer, authorization: str = AS["admin"]
) -> AsyncIterator[ConsoleBrowser]:
    async with http() as session:
        browser = ConsoleBrowser(server, session)
        await browser.login(authorization)
        yield browser


async def account_exists(server: RunningServer, jid: str) -> bool:
    status = (await ApiClient(server).call("GET", f"/accounts/{jid}")).status
    assert status in (200, 404)
    return status == 200


# ---------------------------------------------------------------- authentication


async def test_every_operation_refuses_a_client_without_credentials(
    server: RunningServer,
) -> None:
    anonymous = ApiClient(server, None)
    document = (await anonymous.call("GET", "/openapi.json")).body
    tried = 0
    for path, operations in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "alice@localhost", path)
        for method in operations:
            body = {} if method in ("post", "put") else None
            reply = await anonymous.call(method.upper(), concrete, json=body)
            assert reply.status == 401, (method, path, reply.status, reply.body)
            assert reply.body["error"]["code"] == "unauthenticated"
            assert reply.headers.getall("WWW-Authenticate")
            tried += 1
    assert tried >= 30
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url(server) + "/metrics") as r:
            assert r.status == 401
        for page in ("/admin/", "/admin/users", "/admin/tokens", "/admin/log", "/admin/config"):
            async with session.get(base_url(server) + page, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/admin/login", page


#: request targets that must not reach a handler without credentials
TRICKS = (
    "/api/v1/accounts/",
    "//api/v1/accounts",
    "/api/v1//accounts",
    "/api/v1/./accounts",
    "/api/v1/../v1/accounts",
    "/api/v1/%2e%2e/v1/accounts",
    "/api/v1/%2E%2E/%2E%2E/api/v1/accounts",
    "/%61pi/v1/accounts",
    "/api%2fv1/accounts",
    "/API/V1/ACCOUNTS",
    "/api/v1/accounts%00",
    "/api/v1/accounts;x=1",
    "/api/v1/accounts?limit=1",
    "/admin/../api/v1/accounts",
    "/metrics/../api/v1/accounts",
    "/api/v1/openapi.json/../accounts",
    "/api/v1/openapi.json%2f..%2faccounts",
    "/api/v1/accounts/alice@localhost/..%2f..%2f..%2fconfig",
    "/api/v1/accounts/alice@localhost%2f..%2f..%2fconfig",
    "/api/v1/config%23",
    "/api/v1/config#x",
    "/api/v1/tokens/%2e",
    "/metrics/",
    "//metrics",
    "/metrics%2f",
    "/METRICS",
)


@pytest.mark.parametrize("target", TRICKS)
def test_path_tricks_do_not_bypass_authentication(server: RunningServer, target: str) -> None:
    status, _head, body = ask(server, get(target))
    assert status in (400, 401, 404, 405), (status, body[:200])
    assert b"alice@localhost" not in body and b"chatgate_" not in body
    if status == 401:
        assert json.loads(body)["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "name",
    [
        "..%2f..%2fconsole%2fsite.py",
        "%2e%2e%2fsite.py",
        "%2e%2e",
        ".%2e",
        "..%5csite.py",
        "console.css%00.py",
        "..%252fsite.py",
        "%2fetc%2fpasswd",
    ],
)
def test_console_static_files_do_not_escape(server: RunningServer, name: str) -> None:
    status, _, body = ask(server, get(f"/admin/static/{name}"))
    assert status in (400, 404), (status, body[:100])
    assert b"import" not in body and b"root:" not in body


def test_console_static_files_are_served(server: RunningServer) -> None:
    status, head, body = ask(server, get("/admin/static/console.css"))
    assert status == 200 and b"Content-Security-Policy" in head and body


def test_absolute_form_targets_are_authenticated_too(server: RunningServer) -> None:
    target = f"http://127.0.0.1:{server.http_port}/api/v1/accounts"
    status, _, body = ask(server, get(target))
    assert status == 401, body[:200]
    status, _, body = ask(server, get(target, f"Authorization: {AS['admin']}"))
    assert status == 200 and b"alice@localhost" in body  # the control: it is that route


def test_odd_methods_get_the_error_shape_and_reveal_nothing(server: RunningServer) -> None:
    for method in ("HEAD", "OPTIONS", "TRACE", "PATCH", "PUT"):
        raw = (
            f"{method} /api/v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "X-Probe: trace-me\r\nConnection: close\r\n\r\n"
        ).encode()
        status, head, body = ask(server, raw)
        assert status == 405, (method, status, body[:200])
        assert b"Allow: GET,POST" in head
        assert b"trace-me" not in body
        if method != "HEAD":
            assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_a_head_too_long_to_read_gets_the_400_the_document_lists(server: RunningServer) -> None:
    """A request line past the HTTP layer's 8,190 bytes (schemathesis generated one:
    a long search and cursor of 4-byte characters) is answered before the API
    sees it, in plain text: the OpenAPI document says so for every operation."""
    doc = json.loads(ask(server, get("/api/v1/openapi.json"))[2])
    query = "search=" + "%F2%92%BA%A7" * 256 + "&cursor=" + "%F3%A3%8B%8F" * 512
    status, head, _body = ask(
        server, get("/api/v1/accounts?" + query, "Authorization: " + AS["admin"])
    )
    assert status == 400
    content_type = re.search(rb"(?im)^content-type: *([^;\r]+)", head)
    assert content_type is not None and content_type[1] == b"text/plain", head
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "text/plain" in op["responses"]["400"]["content"], (method, path)
    accounts = doc["paths"]["/accounts"]
    assert "application/json" in accounts["post"]["responses"]["400"]["content"]


def test_cors_preflight_from_another_site_allows_nothing(server: RunningServer) -> None:
    raw = (
        b"OPTIONS /api/v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n"
        b"Access-Control-Request-Headers: authorization, content-type\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, head, _ = ask(server, raw)
    assert status in (204, 405)
    assert b"access-control-allow" not in head.lower()
    status, head, _ = ask(
        server,
        get("/api/v1/accounts", "Origin: https://evil.example", f"Authorization: {AS['admin']}"),
    )
    assert status == 200 and b"access-control-allow" not in head.lower()


def test_hostile_authorization_headers_are_refused_precisely(server: RunningServer) -> None:
    source = "127.0.0.5"
    cases = [
        ("Basic !!!not-base64", 401),
        ("Basic " + base64.b64encode(b"\xff\xfe:password").decode(), 401),
        ("Basic " + base64.b64encode(b"no-colon-here").decode(), 401),
        ("Basic " + base64.b64encode(b"admin:" + b"p" * 2000).decode(), 401),
        ('Digest username="admin\\", realm=, nonce', 401),
        ('Digest username="admin", realm="chatgate", nonce="forged", uri="/x", response="0"', 401),
        ("Bearer cg_zzzzzzzzzzzz_" + "x" * 200, 401),
        ("Negotiate YIIB", 401),
        ("Basic " + "A" * 20000, 400),  # a header line over the parser's limit
    ]
    for value, expected in cases:
        status, _, body = ask(server, get("/api/v1/stats", f"Authorization: {value}"), source)
        assert status == expected, (value[:40], status, body[:200])
        if status == 401:
            assert json.loads(body)["error"]["code"] == "unauthenticated"
    for raw in (
        b"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic\x00x\r\n\r\n",
        b"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n folded\r\n\r\n",
        b"POST /api/v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /api/v1/stats HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    ):
        status, _, _ = ask(server, raw, source)
        assert status in (400, 505), raw[:40]
    assert (
        ask(server, get("/api/v1/stats", f"Authorization: {AS['readOnly']}"))[0] == 200
    )  # everyone else is still served


def test_a_header_cannot_be_injected_through_a_path(server: RunningServer) -> None:
    target = "/api/v1/accounts/x%0d%0aSet-Cookie:%20pwned=1@localhost"
    status, head, body = ask(server, get(target, f"Authorization: {AS['admin']}"))
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    assert b"pwned" not in head


# ---------------------------------------------------------------- authorization


async def test_groups_decide_on_every_change(server: RunningServer) -> None:
    document = (await ApiClient(server, None).call("GET", "/openapi.json")).body
    reader = ApiClient(server, AS["readOnly"])
    changes = 0
    for path, operations in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "alice@localhost", path)
        for method in operations:
            if method == "get":
                continue
            reply = await reader.call(method.upper(), concrete, json={"x": 1})
            assert reply.status == 403, (method, path, reply.status)
            assert reply.body["error"]["code"] == "forbidden"
            changes += 1
    assert changes >= 15
    operator = ApiClient(server, AS["advUser"])
    for method, path in (
        ("GET", "/config"),
        ("GET", "/tokens"),
        ("POST", "/tokens"),
        ("DELETE", "/tokens/0123456789ab"),
    ):
        body = {"label": "mine", "groups": ["admin"]} if method == "POST" else None
        assert (await operator.call(method, path, json=body)).status == 403, path
    assert await account_exists(server, "alice@localhost")


async def test_bearer_tokens_keep_their_scope_and_die_when_revoked(
    server: RunningServer,
) -> None:
    admin = ApiClient(server)
    made = await admin.call("POST", "/tokens", json={"label": "ro", "groups": ["readOnly"]})
    assert made.status == 201, made.body
    reader = ApiClient(server, "Bearer " + made.body["token"])
    assert (await reader.call("GET", "/stats")).status == 200
    new = {"username": "tokenmade", "password": "a-long-password"}
    assert (await reader.call("POST", "/accounts", json=new)).status == 403
    assert (
        await reader.call("POST", "/tokens", json={"label": "x", "groups": ["admin"]})
    ).status == 403
    assert not await account_exists(server, "tokenmade@localhost")

    # a token that revokes itself is refused from its next request on
    own = await admin.call("POST", "/tokens", json={"label": "self", "groups": ["admin"]})
    holder = ApiClient(server, "Bearer " + own.body["token"])
    assert (await holder.call("DELETE", f"/tokens/{own.body['id']}")).status == 204
    assert (await holder.call("GET", "/stats")).status == 401
    # a token with its secret changed by one character is nobody
    forged = own.body["token"][:-1] + ("A" if own.body["token"][-1] != "A" else "B")
    assert (await ApiClient(server, "Bearer " + forged).call("GET", "/stats")).status == 401


async def test_console_cookie_and_api_credentials_do_not_cross(server: RunningServer) -> None:
    async with console_as(server) as console:
        cookie = console.http.cookie_jar.filter_cookies(URL(console.base + "/admin/"))
        assert "chatgate_console" in cookie
        async with aiohttp.ClientSession() as bare:
            headers = {"Cookie": f"chatgate_console={cookie['chatgate_console'].value}"}
            async with bare.get(console.base + "/api/v1/accounts", headers=headers) as r:
                assert r.status == 401  # the console's cookie does not open the API
    # the API's credentials do not make a console POST (no session, no token)
    async with http() as session:
        bare_console = ConsoleBrowser(server, session)
        status, _, _ = await bare_console.post(
            "/admin/users",
            {"username": "crossed", "password": "a-long-password", "csrf": "x"},
            Authorization=AS["admin"],
        )
    assert status == 403
    assert not await account_exists(server, "crossed@localhost")


# ---------------------------------------------------------------- API input


async def test_cross_site_changes_are_refused(server: RunningServer) -> None:
    """A browser with an administrator's Basic credentials cached (the console's
    login uses the same realm) sends them with any site's form: `text/plain`
    carries JSON without a preflight, and a bodyless POST needs no body."""
    api = ApiClient(server)
    forged = json.dumps({"username": "csrfvictim", "password": "a-long-password"})
    reply = await api.call("POST", "/accounts", data=forged, headers={"Content-Type": "text/plain"})
    assert reply.status == 415 and reply.body["error"]["code"] == "unsupported_media_type"
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        reply = await api.call("POST", "/accounts/bob@localhost/lock", headers=headers)
        assert reply.status == 403 and reply.body["error"]["code"] == "cross_site", headers
        reply = await api.call(
            "POST",
            "/accounts",
            json={"username": "csrfvictim", "password": "a-long-password"},
            headers=headers,
        )
        assert reply.status == 403, headers
    assert not await account_exists(server, "csrfvictim@localhost")
    bob = await api.call("GET", "/accounts/bob@localhost")
    assert bob.body["locked"] is False
    # its own origin, and tools that send no Origin, still work
    same = {"Origin": base_url(server), "Sec-Fetch-Site": "same-origin"}
    assert (await api.call("POST", "/accounts/bob@localhost/lock", headers=same)).status == 200
    assert (await api.call("POST", "/accounts/bob@localhost/unlock")).status == 200


async def test_hostile_bodies_get_precise_answers(server: RunningServer) -> None:
    api = ApiClient(server)
    as_json = {"Content-Type": "application/json"}

    async def post(data: Any, headers: dict[str, str] = as_json) -> tuple[int, dict[str, Any]]:
        reply = await api.call("POST", "/accounts", data=data, headers=headers)
        assert reply.headers["Content-Type"].startswith("application/json"), reply.status
        return reply.status, reply.body["error"]

    for bomb in ("[" * 50_000, "[" * 5_000 + "]" * 5_000, '{"a":' * 15_000 + "1" + "}" * 15_000):
        status, error = await post(bomb)
        assert (status, error["code"]) in ((400, "malformed_json"), (413, "too_large")), error
    assert (await post("x" * (10 * 1024 * 1024)))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"[1," * 400

    status, error = await post(chunks())
    assert status == 413 and error["code"] == "too_large"
    assert (await post("{not json"))[1]["code"] == "malformed_json"
    assert (await post(b'{"username": "\xe9t\xe9"}'))[1]["code"] == "malformed_json"
    assert (await post('{"username":"n","password":' + "9" * 5000 + "}"))[0] == 400
    status, error = await post(
        "username=x&password=y", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 415
    # PRECIS and policy failures name their field
    for body, field in (
        ({"username": "a\u0000b", "password": "a-long-password"}, "username"),
        ({"username": "a\u202eb", "password": "a-long-password"}, "username"),
        ({"username": "x" * 2000, "password": "a-long-password"}, "username"),
        ({"username": "ok", "password": "a\u0007-long-password"}, "password"),
        ({"username": "ok", "password": "a-long-password", "domain": "evil.example"}, "domain"),
        ({"username": "ok", "password": "a-long-password", "admin": True}, "admin"),
    ):
        status, error = await post(json.dumps(body))
        assert status == 422 and [f["field"] for f in error["fields"]] == [field], error
    status, error = await post(b'{"username": "\\ud800", "password": "a-long-password"}')
    assert status == 422 and error["fields"][0]["field"] == "username"


async def test_hostile_queries_and_cursors_name_their_parameter(server: RunningServer) -> None:
    api = ApiClient(server)
    surrogate = "c1" + base64.urlsafe_b64encode(b'{"k":"\\ud800"}').decode().rstrip("=")
    huge = "c1" + base64.urlsafe_b64encode(b'{"k":' + str(2**70).encode() + b"}").decode()
    negative = "c1" + base64.urlsafe_b64encode(b'{"k":-1}').decode().rstrip("=")
    for path, field in (
        ("/accounts?limit=-1", "limit"),
        ("/accounts?limit=99999999999999999999999", "limit"),
        ("/accounts?limit=1e3", "limit"),
        ("/accounts?cursor=garbage", "cursor"),
        ("/accounts?cursor=" + "c1" + "A" * 600, "cursor"),
        ("/accounts?cursor=" + surrogate, "cursor"),
        ("/sessions?cursor=" + surrogate, "cursor"),
        ("/audit?cursor=" + huge, "cursor"),
        ("/audit?cursor=" + negative, "cursor"),
        ("/audit?cursor=" + surrogate, "cursor"),
        ("/accounts?domain=%ff", "domain"),
    ):
        reply = await api.call("GET", path)
        assert reply.status == 422, (path, reply.status, reply.body)
        assert [f["field"] for f in reply.body["error"]["fields"]] == [field], path
    for path in ("/accounts?search=%00", "/accounts?search=%ED%A0%80", "/accounts?search=%25_"):
        assert (await api.call("GET", path)).status == 200, path
    etag = (await api.call("GET", "/accounts")).headers["ETag"]
    for garbage in ('W/"' + "x" * 3000 + '", *garbage, ,,, "', '"nope", W/', "W/W/W/", ","):
        reply = await api.call("GET", "/accounts", headers={"If-None-Match": garbage})
        assert reply.status == 200 and reply.headers["ETag"] == etag, garbage
    matching = {"If-None-Match": f"x, {etag}"}
    assert (await api.call("GET", "/accounts", headers=matching)).status == 304


async def test_messages_from_the_server_never_break_a_clients_stream(
    server: RunningServer,
) -> None:
    api = ApiClient(server)
    async with logged_in(server, "alice@localhost", "alice-password") as alice:
        for body, field in (
            ({"to": "alice@localhost", "body": "bell \u0007"}, "body"),
            ({"to": "alice@localhost", "body": "nul \u0000"}, "body"),
            ({"to": "alice@localhost", "body": "\ufffe"}, "body"),
            ({"to": "alice@localhost", "body": "x", "subject": "\u001b[31m"}, "subject"),
            ({"to": "alice@elsewhere.example", "body": "spoof"}, "to"),
            ({"to": "elsewhere.example", "body": "spoof"}, "to"),
            ({"to": "alice@localhost/\u0000", "body": "x"}, "to"),
        ):
            reply = await api.call("POST", "/messages", json=body)
            assert reply.status == 422, (body, reply.body)
            assert [f["field"] for f in reply.body["error"]["fields"]] == [field]
        reply = await api.call(
            "POST", "/messages", json={"to": "alice@localhost", "body": "x" * 2**20}
        )
        assert reply.status == 413
        tricky = (
            "</body></message><message to='bob@localhost'><body>injected</body></message>"
            " ]]> &amp; <![CDATA[ \U0001f600 \u202e"
        )
        for body in (tricky, "y" * 60_000):
            sent = await api.call("POST", "/messages", json={"to": "alice@localhost", "body": body})
            assert sent.status == 200 and sent.body["delivered_now"] is True, sent.body
            got = await alice.next_message()
            assert got["body"] == body and got["from"] == "localhost"
        assert alice.stream_errors.empty() and alice.is_connected()


async def test_concurrent_deletes_of_one_account(server: RunningServer) -> None:
    # A script's parallel requests use a bearer token: with Basic each request is a
    # login (an Argon2id check), and the login gate lets an account have only a few
    # in flight at once (429 for the others).
    made = await ApiClient(server).call(
        "POST", "/tokens", json={"label": "deleter", "groups": ["advUser"]}
    )
    api = ApiClient(server, "Bearer " + made.body["token"])
    new = {"username": "doomed", "password": "doomed-password"}
    assert (await api.call("POST", "/accounts", json=new)).status == 201
    client = await connect(server, "doomed@localhost", "doomed-password")
    disconnected = asyncio.Event()
    client.add_event_handler("disconnected", lambda _e: disconnected.set())
    replies = await asyncio.gather(
        *(api.call("DELETE", "/accounts/doomed@localhost") for _ in range(6))
    )
    assert sorted(r.status for r in replies) == [204, 404, 404, 404, 404, 404]
    await asyncio.wait_for(disconnected.wait(), 10)
    assert not await account_exists(server, "doomed@localhost")
    again = await api.call("POST", "/accounts", json={**new, "password": "another-password"})
    assert again.status == 201  # the name is free, and nothing of the old one is left
    assert await account_exists(server, "alice@localhost")


# ---------------------------------------------------------------- the console


async def test_console_posts_need_the_token_and_the_origin(server: RunningServer) -> None:
    async with console_as(server) as console:
        victim = {"username": "forged", "password": "forged-password"}
        for data, origin, extra in (
            ({**victim, "csrf": ""}, "self", {}),
            ({**victim, "csrf": "x" * 43}, "self", {}),
            (victim, "https://evil.example", {}),
            (victim, "null", {}),
            (victim, "null", {"Referer": console.base + "/admin/users"}),
            (victim, None, {}),
            (victim, None, {"Referer": "https://evil.example/admin/users"}),
        ):
            status, _, text = await console.post("/admin/users", data, origin=origin, **extra)
            assert status == 403 and "Refused" in text, (origin, extra)
        assert not await account_exists(server, "forged@localhost")
        # the multipart body of a hostile client that is not UTF-8
        broken = multipart({"csrf": console.csrf.encode(), "username": b"\xed\xa0\x80"})
        status, _, _ = await console.post("/admin/users", broken, **MULTIPART)
        assert status == 400
        ok = await console.post("/admin/users", {"username": "proper", "password": "p-password"})
        assert ok[0] == 303  # the control: the same form from its page is taken
    assert await account_exists(server, "proper@localhost")


async def test_console_session_cannot_be_fixed_or_outlive_its_logout(
    server: RunningServer,
) -> None:
    chosen = {"Cookie": "chatgate_console=chosen-by-the-attacker"}
    async with aiohttp.ClientSession() as bare:
        async with bare.get(
            base_url(server) + "/admin/users", headers=chosen, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin/login"
        async with bare.get(
            base_url(server) + "/admin/login",
            headers={**chosen, "Authorization": AS["admin"]},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
            value = r.cookies["chatgate_console"].value
            assert value != "chosen-by-the-attacker" and len(value) >= 40
            attrs = r.headers["Set-Cookie"]
            assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/admin/" in attrs
    async with console_as(server) as console:
        jar = console.http.cookie_jar.filter_cookies(URL(console.base + "/admin/"))
        old = {"Cookie": f"chatgate_console={jar['chatgate_console'].value}"}
        status, _, _ = await console.post("/admin/logout", {})
        assert status == 200
    async with aiohttp.ClientSession() as bare:
        async with bare.get(
            base_url(server) + "/admin/users", headers=old, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin/login"
        async with bare.post(
            base_url(server) + "/admin/users",
            data={"username": "late", "password": "late-password"},
            headers={**old, "Origin": base_url(server)},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
    assert not await account_exists(server, "late@localhost")


async def test_console_forms_with_hostile_values_get_answers(server: RunningServer) -> None:
    async with console_as(server) as console:
        for days in ("inf", "1e300", "nan", "-1", "0", "lots"):
            status, location, _ = await console.post(
                "/admin/tokens", {"label": "t", "group_readOnly": "on", "days": days}
            )
            assert (status, location) == (303, "/admin/tokens"), days
            assert "Not created" in await console.page("/admin/tokens")
        for back in ("/admin/x\r\nSet-Cookie: pwned=1", "https://evil.example/", "//evil.example"):
            status, location, _ = await console.post(
                "/admin/sessions/kick", {"jid": "nobody@localhost/x", "back": back}
            )
            assert (status, location) == (303, "/admin/sessions"), back
        status, location, _ = await console.post(
            "/admin/streams/issue-token", {"action": "play", "stream": "live/x", "ttl": "9" * 5000}
        )
        assert status == 303 and "Refused" in await console.page("/admin/streams")
        # a script that posts and never reads a page: its one-shot lines stay bounded
        for _ in range(30):
            status, _, _ = await console.post("/admin/users/alice@localhost/unlock", {})
            assert status == 303
        shown = await console.page("/admin/users")
        assert shown.count("Unlocked alice@localhost.") == 20


async def test_every_console_page_escapes_attacker_text(server: RunningServer) -> None:
    api = ApiClient(server)
    made = await api.call("POST", "/tokens", json={"label": SCRIPT, "groups": ["readOnly"]})
    assert made.status == 201
    # a failed admin login logs the name it tried (the log page shows it)
    status, _, _ = ask(
        server, get("/api/v1/stats", f"Authorization: {basic(SCRIPT, 'guess')}"), "127.0.0.4"
    )
    assert status == 401
    async with logged_in(server, f"bob@localhost/{IMAGE}", "bob-password") as bob:
        assert IMAGE in str(bob.boundjid)
        async with console_as(server) as console:
            pages = {
                path: await console.page(path)
                for path in (
                    "/admin/",
                    "/admin/users",
                    "/admin/users/bob@localhost",
                    "/admin/sessions",
                    "/admin/registration",
                    "/admin/streams",
                    "/admin/tokens",
                    "/admin/log?level=DEBUG",
                    "/admin/config",
                )
            }
    for path, text in pages.items():
        assert SCRIPT not in text and "<img src=x" not in text, path
    assert "&lt;script&gt;alert(" in pages["/admin/tokens"]
    assert "&lt;script&gt;alert(" in pages["/admin/log?level=DEBUG"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages["/admin/sessions"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages["/admin/users/bob@localhost"]


# ---------------------------------------------------------------- resource use


async def test_a_flood_of_strangers_and_guessers_slows_nobody(server: RunningServer) -> None:
    """500 unauthenticated requests and 200 wrong passwords from one address (100
    connections at once), while an honest script polls with its bearer token
    from another address and Prometheus scrapes: the script's median latency
    barely moves, the server's memory comes back, the guessers are held then
    refused with 429."""
    api = ApiClient(server)
    made = await api.call("POST", "/tokens", json={"label": "poller", "groups": ["readOnly"]})
    honest = {"Authorization": "Bearer " + made.body["token"]}
    base = base_url(server)
    pid = server.process.pid

    async with http(HONEST_SOURCE) as poller, http("127.0.0.3") as attacker:

        async def poll(count: int) -> list[float]:
            times = []
            for _ in range(count):
                started = time.perf_counter()
                async with poller.get(base + "/api/v1/stats", headers=honest) as r:
                    await r.read()
                    assert r.status == 200
                times.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            return times

        async def stranger(n: int) -> int:
            async with attacker.get(base + f"/api/v1/accounts?n={n}") as r:
                await r.read()
                return r.status

        async def guesser(n: int) -> int:
            wrong = {"Authorization": basic("admin", f"guess-{n}")}
            async with attacker.get(base + "/api/v1/stats", headers=wrong) as r:
                await r.read()
                return r.status

        before_ms = statistics.median(await poll(25)) * 1000
        rss_before = rss_kib(pid)
        flood = asyncio.gather(
            *(stranger(n) for n in range(500)), *(guesser(n) for n in range(200))
        )
        during = asyncio.create_task(poll(40))
        peak = rss_before
        while not during.done():
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.05)
        during_ms = statistics.median(await during) * 1000
        async with poller.get(base + "/metrics", headers=honest) as r:
            assert r.status == 200
            scraped = await r.text()
        answers = Counter(await flood)
    await asyncio.sleep(1.0)
    rss_after = rss_kib(pid)
    assert set(answers) <= {401, 429} and answers[429] > 100, answers
    assert during_ms < before_ms + LATENCY_BOUND_MS, (before_ms, during_ms)
    assert rss_after - rss_before < RSS_BOUND_KIB, (rss_before, peak, rss_after)
    assert 'outcome="throttled"' in scraped or "chatgate_login_refusals" in scraped
    assert "admin: basic login of admin from 127.0.0.3 throttled" in server.log_text()


async def test_wrong_passwords_from_many_addresses_do_not_pin_memory(
    server: RunningServer,
) -> None:
    """16 wrong Basic passwords at once from 8 addresses (2 each, under every per-
    address limit): each costs an Argon2id check of 64 MiB, and they run in as many
    threads as the default executor has.  Their peak must stay within two checks'
    memory plus slack."""
    base, pid = base_url(server), server.process.pid
    sessions = [http(f"127.0.1.{n}") for n in range(1, 9)]
    try:

        async def guess(session: aiohttp.ClientSession, n: int) -> int:
            wrong = {"Authorization": basic(f"nobody-{n}", "wrong-password")}
            async with session.get(base + "/api/v1/stats", headers=wrong) as r:
                await r.read()
                return r.status

        rss_before = peak = rss_kib(pid)
        guesses = asyncio.gather(*(guess(s, n) for s in sessions for n in range(2)))
        while not guesses.done():
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.02)
        assert set(await guesses) == {401}
    finally:
        for session in sessions:
            await session.close()
    assert peak - rss_before < 160 * 1024, (rss_before, peak)


# ---------------------------------------------------------------- a fresh server


def test_metrics_open_on_loopback_only_to_loopback_clients(fresh: RunningServer) -> None:
    assert ask(fresh, get("/metrics"))[0] == 200
    for chain in (AFAR, f"127.0.0.1, {AFAR}", f"{AFAR}, 127.0.0.1", f"::1, {AFAR}"):
        status, _, body = ask(fresh, get("/metrics", f"X-Forwarded-For: {chain}"))
        assert status == 401, (chain, body[:100])
    # from a peer that is not a trusted proxy the header is ignored: it is on loopback
    status, _, body = ask(fresh, get("/metrics", f"X-Forwarded-For: {AFAR}"), "127.0.0.6")
    assert status == 200 and b"chatgate_uptime_seconds" in body


def test_open_metrics_refuse_another_sites_name(fresh: RunningServer) -> None:
    """DNS rebinding: another site's page in a browser on the server's machine points
    its own name at 127.0.0.1 and reads the open /metrics as its own origin."""
    raw = b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    assert ask(fresh, raw)[0] == 401


def test_method_none_refuses_another_sites_name(tmp_path: Path) -> None:
    """DNS rebinding against `auth = ["none"]` (loopback listener only): another site's
    page in a browser on this machine would be the administrator, and as its own
    origin it passes the cross-site check of changes too."""
    server = start_web_server(
        tmp_path, '[admin]\nenabled = true\nauth = ["none"]\nallow_none = true\n'
    )
    try:
        local = get("/api/v1/config")
        assert ask(server, local)[0] == 200  # the control: none lets loopback in
        raw = b"GET /api/v1/config HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        assert ask(server, raw)[0] in (401, 403)
    finally:
        assert server.stop() == 0


def test_the_wizard_is_refused_from_afar_and_to_other_sites_names(fresh: RunningServer) -> None:
    status, head, body = ask(fresh, get("/admin/setup", f"X-Forwarded-For: {AFAR}"))
    assert status == 403 and b"loopback" in body and b"chatgate_setup" not in head
    # DNS rebinding: another site's name resolved to 127.0.0.1 in the operator's browser
    for host in (f"evil.example:{fresh.http_port}", "127.0.0.1.nip.io", "evil.example"):
        raw = f"GET /admin/setup HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        status, head, body = ask(fresh, raw)
        assert status == 403 and b"chatgate_setup" not in head, host
        assert b'name="csrf"' not in body
    for host in (f"localhost:{fresh.http_port}", f"127.0.0.1:{fresh.http_port}", "[::1]"):
        raw = f"GET /admin/setup HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        status, head, _ = ask(fresh, raw)
        assert status == 200 and b"chatgate_setup" in head, host


async def test_wizard_values_cannot_break_the_configuration(fresh: RunningServer) -> None:
    before = fresh.config.read_text()
    async with http() as session:
        browser = ConsoleBrowser(fresh, session)
        browser.csrf = form_token(await browser.page("/admin/setup/domain"))
        for domain in ('evil"\n[admin]\nenabled = false', "a b", "x" * 5000, ""):
            status, _, _ = await browser.post("/admin/setup/domain", {"domain": domain})
            assert status == 422, domain[:20]
        rebound = await browser.post(
            "/admin/setup/domain",
            {"domain": "localhost"},
            origin=f"http://evil.example:{fresh.http_port}",
            Host=f"evil.example:{fresh.http_port}",
        )
        assert rebound[0] == 403
        status, _, _ = await browser.post(
            "/admin/setup/database", {"kind": "sqlite", "sqlite_path": "v" * 5000}
        )
        assert status == 422
        broken = multipart({"csrf": browser.csrf.encode(), "domain": b"\xff\xfe"})
        assert (await browser.post("/admin/setup/domain", broken, **MULTIPART))[0] == 400
    assert fresh.config.read_text() == before  # nothing is written before the end


async def _walk_wizard(server: RunningServer, session: aiohttp.ClientSession, db: str) -> str:
    browser = ConsoleBrowser(server, session)
    browser.csrf = form_token(await browser.page("/admin/setup/domain"))
    for step, data in (
        ("domain", {"domain": "localhost"}),
        ("certificate", {"mode": "generate"}),
        ("database", {"kind": "sqlite", "sqlite_path": db}),
    ):
        status, _location, text = await browser.post(f"/admin/setup/{step}", data)
        assert status == 303, (step, text[:300])
    return browser.csrf


async def test_two_browsers_finishing_the_wizard_make_one_administrator(
    tmp_path: Path,
) -> None:
    """Both would have made a first administrator (each passed the "nobody yet"
    check before the other wrote); with a hostile database path each, whose
    quotes and newlines would add an `[admin]` table if written unescaped."""
    server = start_fresh(tmp_path)
    try:
        before = tomllib.loads(server.config.read_text())
        hostile = {
            "first": 'var/one.db"\n[admin]\nenabled = false\n#',
            "second": "var/two.db'''\n[storage]\nurl = \"sqlite:///stolen.db\"",
        }
        long_host = "GET /admin/setup HTTP/1.1\r\nHost: " + "h" * 6000 + "\r\nConnection: close"
        assert ask(server, (long_host + "\r\n\r\n").encode())[0] == 403
        async with http() as one, http() as two:
            tokens = [
                await _walk_wizard(server, one, hostile["first"]),
                await _walk_wizard(server, two, hostile["second"]),
            ]

            async def finish(session: aiohttp.ClientSession, csrf: str, name: str) -> int:
                password = f"{name}-admin-password"
                data = {"name": name, "password": password, "password2": password, "csrf": csrf}
                async with session.post(
                    base_url(server) + "/admin/setup/administrator",
                    data=data,
                    headers={"Origin": base_url(server)},
                    allow_redirects=False,
                ) as r:
                    return r.status

            statuses = await asyncio.gather(
                finish(one, tokens[0], "first"), finish(two, tokens[1], "second")
            )
        assert sorted(statuses) == [200, 303], statuses
        winner = "first" if statuses[0] == 200 else "second"
        listed = server.cli("admin", "user", "list")
        assert listed.returncode == 0 and "1 administrator" in listed.stdout, listed.stdout
        after = tomllib.loads(server.config.read_text())
        assert after["admin"] == before["admin"]  # nothing injected
        assert set(after) == set(before) | {"storage"}
        assert after["storage"]["url"] == "sqlite+aiosqlite:///" + hostile[winner]
        assert Path(str(server.config) + ".bak").exists()
        loser = "second" if winner == "first" else "first"
        lost = get("/api/v1/stats", f"Authorization: {basic(loser, loser + '-admin-password')}")
        assert ask(server, lost, "127.0.0.7")[0] == 401
        # the refused name of the long Host was logged; the console's tail keeps a cut
        async with console_as(server, basic(winner, winner + "-admin-password")) as console:
            tail = await console.page("/admin/log")
        assert "setup wizard refused to a request for host" in tail
        assert "… (cut)" in tail and "h" * 2100 not in tail
    finally:
        code = server.stop()
    assert code == 0
    assert not tracebacks(server.log_text()), tracebacks(server.log_text())


def test_cors_origins_never_open_the_admin_routes(tmp_path: Path) -> None:
    """`[http] cors_origins` lets a chat page elsewhere use BOSH and the discovery
    routes; its pages must not read the API, the console or the metrics."""
    server = start_web_server(
        tmp_path,
        'cors_origins = ["https://chat.example.org"]\n\n[admin]\nenabled = true\n'
        "metrics_open_on_loopback = true\n",
    )
    try:
        origin = "Origin: https://chat.example.org"
        _, head, _ = ask(server, get("/.well-known/host-meta", origin))
        assert b"access-control-allow-origin: https://chat.example.org" in head.lower()
        for target in ("/api/v1/openapi.json", "/metrics", "/admin/login", "/api/v1/stats"):
            _, head, _ = ask(server, get(target, origin))
            assert b"access-control-allow-origin" not in head.lower(), target
        preflight = get("/api/v1/accounts", origin, "Access-Control-Request-Method: POST").replace(
            b"GET ", b"OPTIONS ", 1
        )
        _, head, _ = ask(server, preflight)
        assert b"access-control-allow" not in head.lower()
    finally:
        assert server.stop() == 0
