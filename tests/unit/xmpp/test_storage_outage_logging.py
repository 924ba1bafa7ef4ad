"""PostgreSQL out of reach under a running server (a real `ServerContext` with every
module, real connections over fake transports, a throwaway PostgreSQL cluster of
this module's own that the tests stop): clients get what they got before
(internal-server-error for a message the server could not store or check,
temporary-auth-failure for a login), and the log says once, in one WARNING line
without a traceback, that the database is unreachable, not once per stanza."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chatgate.auth.internal import InternalProvider
from chatgate.config import Config
from chatgate.context import ServerContext
from chatgate.modules.registry import builtin_modules
from chatgate.storage.database import Database
from chatgate.storage.outage_log import OutageLog
from tests.postgres_server import PostgresServer, postgres_available, start_postgres
from tests.unit.modules.test_offline import chat, errors, login
from tests.unit.modules.wire import Server, plain

pytestmark = pytest.mark.postgresql

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresServer]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (tests/install-system-deps.sh installs it)")
    started = start_postgres()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(autouse=True)
def fresh_outage_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with places that have logged nothing (they log once per 10 s)."""
    import chatgate.hooks
    import chatgate.sasl.driver
    import chatgate.xmpp.c2s

    for module in (chatgate.hooks, chatgate.sasl.driver, chatgate.xmpp.c2s):
        place = module._OUTAGE
        monkeypatch.setattr(module, "_OUTAGE", OutageLog(place._logger, place._place))


@pytest.fixture
async def server(cluster: PostgresServer, tmp_path: Path) -> AsyncIterator[Server]:
    """`wire.Server` on a database of `cluster`, alice and bob in it."""
    if not cluster.running:
        cluster.start()
    name = f"outagelog{next(_numbers)}"
    db = await Database.open(cluster.create_database(name))
    # The archive's writer logs its own outage line (tests/unit/modules/mam): off
    # here, where the lines of stanza handling and logins are counted.
    cfg = Config.model_validate(
        {"server": {"data_dir": str(tmp_path / "var")}, "modules": {"mam": {"enabled": False}}}
    )
    ctx = ServerContext(cfg, db, InternalProvider(db.accounts, cache_size=100, data_dir=None))
    registry = builtin_modules()
    for module in registry.names():
        ctx.load(registry.get(module)())
    await ctx.start_modules()
    srv = Server(ctx, db)
    for user in ("alice", "bob", "carol"):
        await srv.add_user(user, f"{user}-pw")
    try:
        yield srv
    finally:
        if not cluster.running:
            cluster.start()
        await srv.stop()
        cluster.drop_database(name)


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "database is unreachable" in r.getMessage()]


async def test_messages_while_the_database_is_away_log_one_line(
    server: Server, cluster: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await login(server, "alice")
    cluster.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        answers = []
        for n in range(5):  # bob is offline: each message is stored, or not
            answers.append(await alice.send(chat("bob", f"hello {n}", f"m{n}")))
        answers.append(await alice.send(chat("nobody", "anyone?", "u1")))  # who is that?
    for n, answer in enumerate(answers[:5]):
        assert errors(answer) == {f"m{n}": "internal-server-error"}, answer
    assert errors(answers[5]) == {"u1": "internal-server-error"}, answers[5]
    lines = outage_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    (line,) = lines
    assert line.levelno == logging.WARNING and line.exc_info is None
    # The first database call is the offline store's, or (blocking on, as by default)
    # the read of the recipient's blocklist before it: either logs the one line.
    assert line.name in ("chatgate.xmpp.c2s", "chatgate.modules.blocking")
    message = line.getMessage()
    assert "alice@localhost" in message or "bob@localhost" in message
    assert not [r for r in caplog.records if r.exc_info is not None]  # no traceback at all


async def test_logins_while_the_database_is_away_log_one_line(
    server: Server, cluster: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for user in ("bob", "carol", "bob"):
            wire = server.connect()
            await wire.open()
            answer = await wire.send(plain(user, f"{user}-pw"))
            assert "<temporary-auth-failure/>" in answer, answer
    lines = outage_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert lines[0].name == "chatgate.sasl.driver"
    assert not [r for r in caplog.records if r.exc_info is not None]
