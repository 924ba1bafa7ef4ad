"""The curl examples of docs/api.md, run as documented (`tests.docblocks`) against
a real server with the API on, in the page's order: every command must succeed
(`curl -f`: no 4xx or 5xx) and do what the page says."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.docblocks import commands, shell_block
from tests.e2e.conftest import RunningServer, connect
from tests.e2e.test_admin_api_support import ApiClient, start_api_server

pytestmark = pytest.mark.e2e

PAGE = "docs/api.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_api_server(tmp_path_factory.mktemp("api-docs"))
    try:
        srv.add_user("alice", "alice-password")
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()


def run_block(server: RunningServer, name: str) -> list[object]:
    """Each command's JSON answer (None for an empty one)."""
    answers: list[object] = []
    for command in commands(shell_block(PAGE, name)):
        command = command.replace("127.0.0.1:5280", f"127.0.0.1:{server.http_port}")
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        answers.append(json.loads(done.stdout) if done.stdout.strip() else None)
    return answers


async def test_the_account_examples(server: RunningServer) -> None:
    made, found, one, _password, locked, unlocked, roster, deleted = run_block(server, "accounts")
    assert made["jid"] == "juliet@localhost"  # type: ignore[index]
    assert [a["jid"] for a in found["items"]] == ["juliet@localhost"]  # type: ignore[index]
    assert one["username"] == "juliet"  # type: ignore[index]
    assert locked["locked"] is True and unlocked["locked"] is False  # type: ignore[index]
    assert roster["items"] == [] and deleted is None  # type: ignore[index]
    gone = await ApiClient(server).call("GET", "/accounts/juliet@localhost")
    assert gone.status == 404


async def test_the_session_examples_kick_a_real_client(server: RunningServer) -> None:
    client = await connect(server, "alice@localhost/laptop", "alice-password")
    try:
        listed, kicked = run_block(server, "sessions")
        assert [s["jid"] for s in listed["items"]] == ["alice@localhost/laptop"]  # type: ignore[index]
        assert kicked["jid"] == "alice@localhost/laptop"  # type: ignore[index]
        error = await client.stream_errors.get()
        assert error["condition"] == "policy-violation"  # type: ignore[index]
    finally:
        await client.disconnect()


def test_the_remaining_examples(server: RunningServer) -> None:
    [sent] = run_block(server, "messages")
    assert sent["type"] == "headline"  # type: ignore[index]
    settings, pending, invitation, invitations = run_block(server, "registration")
    assert settings["approval"] is True and pending["items"] == []  # type: ignore[index]
    assert invitation["token"] and invitation["uses_left"] == 5  # type: ignore[index]
    assert invitation["id"] in [i["id"] for i in invitations["items"]]  # type: ignore[index]
    added, rules, key, token, live = run_block(server, "streams")
    assert added["rule"] == "play public/* anonymous"  # type: ignore[index]
    assert len(rules["items"]) == 2 and key["account"] == "alice@localhost"  # type: ignore[index]
    assert token["token"] and live["items"] == []  # type: ignore[index]
    stats, config, bearer, audit = run_block(server, "server")
    assert "connections" in stats and config["admin"]["enabled"] is True  # type: ignore[index,operator]
    assert bearer["token"].startswith("cg_")  # type: ignore[index]
    assert audit["items"][0]["action"] == "token.create"  # type: ignore[index]
