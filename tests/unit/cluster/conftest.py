"""A redis-server for the cluster tests: one per test session, flushed between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    if redis_server_session.process is None:
        redis_server_session.start()  # a test stopped it
    redis_server_session.flush()
    yield redis_server_session
    if redis_server_session.process is None:
        redis_server_session.start()
