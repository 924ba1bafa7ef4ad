"""`chatgate serve` with `[auth.provider] name = "http"`, logged into with slixmpp.

The provider tests themselves (HTTP service, extauth programs, slapd) are in
`providers/`; here the real server asks a real HTTP service, and an independent
client sees the result: PLAIN works, SCRAM is not offered, and an outage is
temporary-auth-failure (RFC 6120 §6.5.11).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import AuthenticationFailed, connect, free_port, start_server
from .providers.support import ALICE, start_service, stop_process

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    process, base = start_service()
    yield base
    stop_process(process)


def http_provider_toml(url: str) -> str:
    # `start_server` appends this after the [auth] table's keys.
    return f"""
[auth.provider]
name = "http"

[auth.provider.http]
url = "{url}"
timeout = 2.0
"""


async def test_server_logs_in_with_the_http_provider(service: str, tmp_path: Path) -> None:
    """Needs `[auth.provider]` wired into config.py and server.py."""
    server = start_server(tmp_path, extra=http_provider_toml(f"{service}/auth"))
    try:
        client = await connect(server, "alice@localhost/e2e", ALICE, send_presence=False)
        try:
            assert str(client.boundjid) == "alice@localhost/e2e"
            await client.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        finally:
            await asyncio.wait_for(client.disconnect(), 5)
        with pytest.raises(AuthenticationFailed) as wrong:
            await connect(server, "alice@localhost/x", "wrong", send_presence=False)
        assert wrong.value.condition == "not-authorized"
        # SCRAM is not offered: the service cannot give SCRAM keys.
        with pytest.raises(AuthenticationFailed):
            await connect(
                server, "alice@localhost/x", ALICE, mechanism="SCRAM-SHA-256", send_presence=False
            )
    finally:
        code = server.stop()
    assert code == 0, server.log_text()
    assert "alice@localhost authenticated with PLAIN" in server.log_text()


async def test_server_answers_temporary_auth_failure_when_the_service_is_down(
    tmp_path: Path,
) -> None:
    """Needs `[auth.provider]` wired into config.py and server.py."""
    down = f"http://127.0.0.1:{free_port()}/auth"
    server = start_server(tmp_path, extra=http_provider_toml(down))
    try:
        with pytest.raises(AuthenticationFailed) as failure:
            await connect(server, "alice@localhost/x", ALICE, send_presence=False)
        assert failure.value.condition == "temporary-auth-failure"
    finally:
        server.stop()
