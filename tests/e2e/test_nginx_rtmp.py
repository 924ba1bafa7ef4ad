"""A real media server decides through chatgate (issue 12): Debian's nginx with
libnginx-mod-rtmp calls chatgate's `/hooks/nginx-rtmp/...` on every publish,
play and renewal (`on_update` every `UPDATE` seconds), ffmpeg publishes a test
pattern and ffmpeg plays it back (decoding frames).  The accounts are
chatgate's own, added with `chatgate user add`; stream keys and tokens come
from `chatgate streams` and from slixmpp over XMPP; the rules are `[streams]
rules`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import nginx
from tests.e2e.conftest import RunningServer, free_port, logged_in
from tests.e2e.web import start_web_server

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
PASSWORD = "pencil-case"
#: seconds between nginx-rtmp's renewals (`notify_update_timeout`)
UPDATE = 2
STREAMS = f"""
[streams]
enabled = true
update_interval = {UPDATE}
rules = [
  "publish live/alice user:alice@localhost",
  "publish live/bob user:bob@localhost",
  "play live/* authenticated",
  "play live/* token",
  "publish public/* authenticated",
  "play public/* anonymous",
]
"""


@dataclass
class Rig:
    server: RunningServer
    rtmp: int

    def url(self, path: str, query: str = "") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp}/{path}" + (f"?{query}" if query else "")


def _nginx_conf(tmp: Path, rtmp: int, http: int) -> Path:
    hooks = f"http://127.0.0.1:{http}/hooks/nginx-rtmp"
    application = f"""
            live on;
            on_publish {hooks}/publish;
            on_play {hooks}/play;
            on_publish_done {hooks}/publish_done;
            on_play_done {hooks}/play_done;
            on_update {hooks}/update;
            notify_update_timeout {UPDATE}s;
            notify_method post;
    """
    return nginx.write_conf(
        tmp,
        f"""
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp};
        application live {{ {application} }}
        application public {{ {application} }}
    }}
}}
""",
        modules=(RTMP_MODULE,),
    )


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    for needed in (RTMP_MODULE, Path(FFMPEG)):
        if not needed.exists():
            pytest.fail(f"{needed} is missing (tests/install-system-deps.sh installs it)")
    tmp = tmp_path_factory.mktemp("rtmp")
    server = start_web_server(tmp, STREAMS)
    for user in ("alice", "bob"):
        server.add_user(user, PASSWORD)
    rtmp = free_port()
    try:
        with nginx.running(_nginx_conf(tmp, rtmp, server.http_port), tmp, lambda: _accepts(rtmp)):
            yield Rig(server, rtmp)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log_text(), server.log_text()


def publisher(url: str, seconds: int = 30) -> subprocess.Popen[bytes]:
    """ffmpeg sending a test pattern, in real time, for `seconds`."""
    return subprocess.Popen(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size=160x120:rate=15:duration={seconds}",
            "-c:v",
            "flv",
            "-f",
            "flv",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def refused_publish(url: str) -> bool:
    """A publish nginx refuses makes ffmpeg give up at once, with an error."""
    proc = publisher(url, seconds=5)
    try:
        code = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return code != 0


def plays(url: str, frames: int = 5) -> bool:
    """ffmpeg decodes `frames` frames of the stream."""
    result = subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "5000000",
            "-i",
            url,
            "-frames:v",
            str(frames),
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        timeout=20,
    )
    return result.returncode == 0


def wait_until_playable(url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if plays(url, frames=1):
            return
        time.sleep(0.3)
    pytest.fail(f"{url} never became playable")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_the_owner_publishes_and_an_account_plays(rig: Rig) -> None:
    live = publisher(rig.url("live/alice", f"username=alice&password={PASSWORD}"))
    try:
        wait_until_playable(rig.url("live/alice", f"username=bob&password={PASSWORD}"))
        assert not plays(rig.url("live/alice"))  # no credentials: live/* is for accounts
        assert not plays(rig.url("live/alice", "username=bob&password=wrong"))
        # one publisher per stream: alice again, from a second ffmpeg, is refused
        assert refused_publish(rig.url("live/alice", f"username=alice&password={PASSWORD}"))
    finally:
        stop(live)
    log = rig.server.log_text()
    assert "live/alice publish by alice@localhost from 127.0.0.1: allowed" in log
    assert PASSWORD not in log


@pytest.mark.parametrize(
    "path_and_query",
    [
        ("live/alice", "username=alice&password=wrong"),
        ("live/alice", f"username=nobody&password={PASSWORD}"),
        ("live/bob", f"username=alice&password={PASSWORD}"),  # another user's stream
        ("live/alice", ""),
        # field injection: nginx puts name=bob first, the appended name is never read
        ("live/bob", f"username=alice&password={PASSWORD}&name=alice"),
    ],
)
def test_refused_publishers(rig: Rig, path_and_query: tuple[str, str]) -> None:
    assert refused_publish(rig.url(*path_and_query))


def test_publish_done_frees_the_stream(rig: Rig) -> None:
    first = publisher(rig.url("live/bob", f"username=bob&password={PASSWORD}"), seconds=4)
    try:
        wait_until_playable(rig.url("live/bob", f"username=alice&password={PASSWORD}"))
        assert first.wait(15) == 0, first.stderr.read() if first.stderr else ""
    finally:
        stop(first)
    # nginx reported publish_done: the registry is free for the next publisher
    second = publisher(rig.url("live/bob", f"username=bob&password={PASSWORD}"))
    try:
        wait_until_playable(rig.url("live/bob", f"username=alice&password={PASSWORD}"))
    finally:
        stop(second)


def test_a_public_stream_plays_without_credentials(rig: Rig) -> None:
    live = publisher(rig.url("public/news", f"username=bob&password={PASSWORD}"))
    try:
        wait_until_playable(rig.url("public/news"))
    finally:
        stop(live)
    assert refused_publish(rig.url("public/other"))  # publishing there needs an account


def cli_output(rig: Rig, *args: str) -> str:
    result = rig.server.cli("streams", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_tokens_play_their_stream_only_until_they_expire(rig: Rig) -> None:
    token = cli_output(rig, "tokens", "issue", "live/alice", "--action", "play", "--ttl", "1h")
    other = cli_output(rig, "tokens", "issue", "live/bob", "--action", "play", "--ttl", "1h")
    live = publisher(rig.url("live/alice", f"username=alice&password={PASSWORD}"))
    try:
        wait_until_playable(rig.url("live/alice", f"token={token}"))
        short = cli_output(rig, "tokens", "issue", "live/alice", "--action", "play", "--ttl", "5s")
        issued = time.monotonic()
        assert plays(rig.url("live/alice", f"token={short}"))
        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert not plays(rig.url("live/alice", f"token={tampered}"))
        assert not plays(rig.url("live/alice", f"token={other}"))  # another stream's
        # a token opens nothing to publish: the rules honour tokens for play only
        assert refused_publish(rig.url("live/alice", f"token={token}"))
        time.sleep(max(0.0, issued + 6 - time.monotonic()))
        assert not plays(rig.url("live/alice", f"token={short}"))  # expired
    finally:
        stop(live)
    log = rig.server.log_text()
    assert "token bad signature" in log and "token wrong stream" in log
    assert "token expired" in log
    assert token not in log


def seconds_until_refused(
    rig: Rig, text: str, revoke: tuple[str, ...], timeout: float = 20
) -> float:
    """Run `chatgate streams *revoke`, then the seconds from its end until the
    server logged one more refusal containing `text` (counted from before the
    command: the refusal may come while the command is still exiting, then it
    took no time at all), or the test fails."""
    seen = rig.server.log_text().count(text)
    cli_output(rig, *revoke)
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if rig.server.log_text().count(text) > seen:
            return time.monotonic() - began
        time.sleep(0.05)
    pytest.fail(f"no {text!r} in the server log within {timeout} s")


def player(url: str) -> subprocess.Popen[bytes]:
    """ffmpeg decoding a stream for as long as it plays."""
    return subprocess.Popen(
        [
            *(FFMPEG, "-hide_banner", "-loglevel", "error", "-rw_timeout", "5000000"),
            *("-i", url, "-f", "null", "-"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_revoking_a_token_ends_the_live_play_within_one_update(rig: Rig) -> None:
    token = cli_output(rig, "tokens", "issue", "live/alice", "--action", "play", "--ttl", "1h")
    live = publisher(rig.url("live/alice", f"username=alice&password={PASSWORD}"), seconds=60)
    viewer = None
    try:
        wait_until_playable(rig.url("live/alice", f"token={token}"))
        viewer = player(rig.url("live/alice", f"token={token}"))
        time.sleep(UPDATE + 1)  # playing through a renewal
        assert viewer.poll() is None
        # the next renewal (within UPDATE seconds) is refused; nginx then drops the player
        refused = seconds_until_refused(
            rig, "live/alice update_play by token from", ("tokens", "revoke", token)
        )
        assert refused <= UPDATE + 2
        viewer.wait(20)
        assert not plays(rig.url("live/alice", f"token={token}"))
        assert live.poll() is None  # the publisher is not touched
    finally:
        if viewer is not None:
            stop(viewer)
        stop(live)
    assert "token revoked" in rig.server.log_text()


def test_revoking_a_stream_key_ends_the_live_publish_within_one_update(rig: Rig) -> None:
    key = cli_output(rig, "keys", "issue", "bob")
    live = publisher(rig.url("live/bob", f"key={key}"), seconds=60)
    try:
        wait_until_playable(rig.url("live/bob", f"username=alice&password={PASSWORD}"))
        assert live.poll() is None
        # nginx asks again within UPDATE seconds; the key is gone: 403, the publisher dropped
        refused = seconds_until_refused(
            rig, "live/bob update_publish by - from", ("keys", "revoke", "bob")
        )
        assert refused <= UPDATE + 2
        assert live.wait(20) != 0
        assert refused_publish(rig.url("live/bob", f"key={key}"))
    finally:
        stop(live)
    assert key not in rig.server.log_text()


async def test_a_chat_client_fetches_a_play_token_over_xmpp_and_ffmpeg_plays_with_it(
    rig: Rig,
) -> None:
    from slixmpp.xmlstream import ET

    namespace = "urn:chatgate:stream-token:0"

    async def fetch(stream: str, action: str) -> tuple[str, str]:
        async with logged_in(rig.server, "bob@localhost", PASSWORD) as client:
            info = await client.plugin["xep_0030"].get_info(jid="localhost", timeout=10)
            assert namespace in info["disco_info"]["features"]
            iq = client.make_iq_get(ito="localhost")
            request = ET.Element(f"{{{namespace}}}token", stream=stream, action=action)
            iq.append(request)
            try:
                reply = await iq.send(timeout=10)
            except Exception as exc:  # an IqError: its condition is what the test checks
                return "error", str(getattr(exc, "condition", exc))
            answer = reply.xml.find(f"{{{namespace}}}token")
            assert answer is not None and answer.get("stream") == stream
            return "token", answer.text or ""

    kind, token = await fetch("live/alice", "play")
    assert kind == "token"
    # bob may not publish live/alice, so he gets no publish token for it
    assert await fetch("live/alice", "publish") == ("error", "forbidden")
    live = publisher(rig.url("live/alice", f"username=alice&password={PASSWORD}"))
    try:
        wait_until_playable(rig.url("live/alice", f"token={token}"))
    finally:
        stop(live)
