"""What the provider tests share: building and running a provider from its `[auth.provider]`
table, one PLAIN login through the SASL driver, and the HTTP service process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chatgate.auth.options import ProviderConfig
from chatgate.auth.provider import CredentialProvider
from chatgate.auth.registry import ProviderContext, build_provider, close_provider, start_provider
from chatgate.sasl.base import ConnectionFacts
from chatgate.sasl.driver import advance
from chatgate.sasl.plain import PlainMechanism
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms

HERE = Path(__file__).parent
AUTH_SERVICE = HERE / "auth_service.py"
EXTAUTH_PROGRAM = HERE / "extauth_program.py"
DOMAIN = "localhost"
TLS = ConnectionFacts(domain=DOMAIN, tls_active=True)
CONFIGURED = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
ALICE = "correct horse"


@contextlib.asynccontextmanager
async def running(data: dict[str, Any], tmp: Path) -> AsyncIterator[Any]:
    """Build the provider `data` configures (the `[auth.provider]` table), start it, close it."""
    context = ProviderContext(base_dir=tmp, data_dir=tmp / "var")
    provider = build_provider(ProviderConfig.model_validate(data), context)
    await start_provider(provider)
    try:
        yield provider
    finally:
        await close_provider(provider)


async def plain_login(provider: CredentialProvider, user: str, password: str) -> Any:
    """One PLAIN exchange through the real mechanism and the SASL driver."""
    mech = PlainMechanism(TLS)
    return await advance(mech, mech.start(f"\0{user}\0{password}".encode()), provider, DOMAIN)


def offered(provider: CredentialProvider) -> list[str]:
    return offered_mechanisms(
        CONFIGURED,
        builtin_mechanisms(load_entry_points=False),
        provider.offers,
        TLS,
        allow_plaintext_without_tls=False,
    )


def start_service(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, str(AUTH_SERVICE), *args], stdout=subprocess.PIPE, stderr=None
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("PORT "):
        process.kill()
        stop_process(process)
        raise RuntimeError(f"auth service did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def service_get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def http(url: str, **options: Any) -> dict[str, Any]:
    return {"name": "http", "http": {"url": url, **options}}
