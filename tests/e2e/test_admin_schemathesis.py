"""schemathesis (an independent OpenAPI fuzzer) against `/api/v1/openapi.json` of a
real server: bounded generated requests for every operation, as an administrator;
no answer may be a server error (5xx), have a status the document does not list,
or a body that breaks the document's schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.test_admin_api_support import ADMINS, start_api_server

pytestmark = pytest.mark.e2e

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
#: generated cases per operation and phase (about 35 operations)
MAX_EXAMPLES = 20
#: the whole run, in seconds (it stops generating when the budget is spent)
MAX_TIME = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_api_server(tmp_path_factory.mktemp("schemathesis"))
    try:
        srv.add_user("alice", "alice-password")
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()


def _schemathesis() -> list[str]:
    found = Path(sys.executable).with_name("schemathesis")
    if found.exists():
        return [str(found)]
    on_path = shutil.which("schemathesis")
    assert on_path is not None, "schemathesis is a test dependency"
    return [on_path]


def test_no_server_error_and_no_schema_violation(server: RunningServer, tmp_path: Path) -> None:
    name, password, _group = ADMINS[0]
    command = [
        *_schemathesis(),
        "run",
        f"http://127.0.0.1:{server.http_port}/api/v1/openapi.json",
        "--auth",
        f"{name}:{password}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "2",
        "--seed",
        "13",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        "--output-truncate",
        "true",
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=MAX_TIME + 40, cwd=tmp_path
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:]
    assert "Traceback" not in server.log_text(), server.log_text()
