"""Fixtures for the module tests: the three feeding modes."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param
