"""The extauth provider against real programs: ours (good, bad, dying, slow, garbled) and the
example program ejabberd ships; restarts, back-off, instances, and the SASL driver's answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chatgate.auth.extauth import ExtauthProtocolError, ExtauthProvider
from chatgate.auth.options import ProviderConfig
from chatgate.auth.registry import (
    ProviderContext,
    ProviderUnavailable,
    build_provider,
    close_provider,
    start_provider,
)
from chatgate.sasl.base import Failure, Success
from chatgate.vocabulary.errors import ConfigError, SaslFailureCondition

from .support import ALICE, DOMAIN, EXTAUTH_PROGRAM, offered, plain_login, running

pytestmark = pytest.mark.e2e


def extauth(tmp: Path, **options: Any) -> dict[str, Any]:
    command = [sys.executable, str(EXTAUTH_PROGRAM), "--log", str(tmp / "extauth.log")]
    return {"name": "extauth", "extauth": {"command": command, **options}}


def program_log(tmp: Path) -> list[list[str]]:
    path = tmp / "extauth.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


@pytest.mark.parametrize(
    ("user", "password"), [("alice", ALICE), ("colon", "pa:ss:word"), ("ünï", "pässwörd")]
)
async def test_extauth_accepts_right_password(tmp_path: Path, user: str, password: str) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert await provider.verify_password(user, DOMAIN, password) is True
    assert program_log(tmp_path)[0][1:] == ["auth", user, DOMAIN]


async def test_extauth_rejects_wrong_password_and_unknown_user(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, "wrong") is False
        assert await provider.verify_password("colon", DOMAIN, "pa:ss") is False
        assert await provider.verify_password("nobody", DOMAIN, ALICE) is False


async def test_extauth_isuser(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert await provider.user_exists("alice", DOMAIN) is True
        assert await provider.user_exists("nobody", DOMAIN) is False
    assert [entry[1] for entry in program_log(tmp_path)] == ["isuser", "isuser"]


async def test_extauth_setpass_changes_the_password(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert isinstance(provider, ExtauthProvider)
        assert await provider.set_password("alice", DOMAIN, "new:pass") is True
        assert await provider.verify_password("alice", DOMAIN, "new:pass") is True
        assert await provider.verify_password("alice", DOMAIN, ALICE) is False
        assert await provider.set_password("nobody", DOMAIN, "x") is False


async def test_extauth_program_dying_mid_request_is_unavailable_then_restarted(
    tmp_path: Path,
) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        first_pid = provider.pids[0]
        with pytest.raises(ProviderUnavailable, match="exited during a request"):
            await provider.verify_password("crash", DOMAIN, "x")
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert provider.pids[0] not in (None, first_pid)
    assert not is_running(first_pid)


async def test_extauth_program_dying_while_idle_is_restarted(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        first_pid = provider.pids[0]
        os.kill(first_pid, 9)
        while provider.pids[0] is not None:  # until the event loop has seen it go
            await asyncio.sleep(0.01)
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert provider.pids[0] not in (None, first_pid)


async def test_extauth_slow_program_is_killed_after_timeout_and_replaced(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, timeout=0.5, restart_delay=0.05), tmp_path) as provider:
        slow_pid = provider.pids[0]
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"did not answer within 0\.5s"):
            await provider.verify_password("slow", DOMAIN, "x")
        assert time.monotonic() - started < 5
        # The late answer must never be read as the answer to the next request.
        assert await provider.verify_password("alice", DOMAIN, "wrong") is False
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True
        assert provider.pids[0] != slow_pid
    assert not is_running(slow_pid)


async def test_extauth_garbage_answer_is_unavailable_then_restarted(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        with pytest.raises(ExtauthProtocolError, match="length 5"):
            await provider.verify_password("garbage", DOMAIN, "x")
        assert await provider.verify_password("alice", DOMAIN, ALICE) is True


async def test_extauth_crashing_program_is_not_respawned_for_every_request(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    command = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(1)"]
    config = {
        "name": "extauth",
        "extauth": {"command": command, "timeout": 0.5, "restart_delay": 5},
    }
    async with running(config, tmp_path) as provider:
        for _ in range(5):
            with pytest.raises(ProviderUnavailable):
                await provider.verify_password("alice", DOMAIN, ALICE)
    assert starts.read_text() == "x"  # started once; the restart waits 5 s


async def test_extauth_missing_program_stops_the_start(tmp_path: Path) -> None:
    config = {"name": "extauth", "extauth": {"command": [str(tmp_path / "no-such-program")]}}
    provider = build_provider(
        ProviderConfig.model_validate(config), ProviderContext(tmp_path, tmp_path)
    )
    with pytest.raises(ConfigError, match="cannot run"):
        await start_provider(provider)
    await close_provider(provider)


async def test_extauth_instances_answer_concurrently(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, instances=3), tmp_path) as provider:
        pids = set(provider.pids)
        assert len(pids) == 3
        results = await asyncio.gather(
            *(provider.verify_password("alice", DOMAIN, ALICE) for _ in range(30)),
            *(provider.verify_password("alice", DOMAIN, "wrong") for _ in range(30)),
        )
    assert results == [True] * 30 + [False] * 30
    assert {int(entry[0]) for entry in program_log(tmp_path)} <= pids


async def test_extauth_close_stops_the_programs(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, instances=2), tmp_path) as provider:
        pids = list(provider.pids)
    assert not any(is_running(pid) for pid in pids)


EJABBERD_EXAMPLE = Path("/usr/share/doc/ejabberd/examples/extauth/check_pass_null.pl")


def _ejabberd_example_missing() -> str | None:
    if not EJABBERD_EXAMPLE.exists():
        return f"{EJABBERD_EXAMPLE} not found (Debian package ejabberd)"
    probe = subprocess.run(["perl", "-MUnix::Syslog", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        return "perl with Unix::Syslog needed (Debian package libunix-syslog-perl)"
    return None


@pytest.mark.skipif(
    _ejabberd_example_missing() is not None, reason=_ejabberd_example_missing() or ""
)
async def test_extauth_speaks_to_ejabberds_own_example_program(tmp_path: Path) -> None:
    """An independent peer: the example program ejabberd ships (it says yes to everything)."""
    config = {"name": "extauth", "extauth": {"command": ["perl", str(EJABBERD_EXAMPLE)]}}
    async with running(config, tmp_path) as provider:
        assert await provider.verify_password("alice", DOMAIN, "pa:ss:word") is True
        assert await provider.user_exists("alice", DOMAIN) is True
        assert await provider.set_password("alice", DOMAIN, "new") is True
        assert await plain_login(provider, "alice", "anything") == Success("alice")


async def test_extauth_provider_is_offered_plain_only(tmp_path: Path) -> None:
    async with running(extauth(tmp_path), tmp_path) as provider:
        assert offered(provider) == ["PLAIN"]


async def test_extauth_plain_login_and_outage_through_the_sasl_driver(tmp_path: Path) -> None:
    async with running(extauth(tmp_path, restart_delay=0.05), tmp_path) as provider:
        assert await plain_login(provider, "alice", ALICE) == Success("alice")
        wrong = await plain_login(provider, "alice", "nope")
        assert isinstance(wrong, Failure)
        assert wrong.condition is SaslFailureCondition.NOT_AUTHORIZED
        crashed = await plain_login(provider, "crash", "x")
        assert isinstance(crashed, Failure)
        assert crashed.condition is SaslFailureCondition.TEMPORARY_AUTH_FAILURE
