"""Fixtures of the provider tests: the HTTP password-check service, as its own process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import start_service, stop_process


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    process, base = start_service()
    yield base
    stop_process(process)


@pytest.fixture(scope="module")
def secret_service() -> Iterator[str]:
    process, base = start_service("--secret", "let-me-ask")
    yield base
    stop_process(process)
