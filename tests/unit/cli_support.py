"""What the CLI tests share: the database of a test configuration, opened the way
the commands open it (each test's configuration keeps it in `var/` beside itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from chatgate.storage.database import Database

T = TypeVar("T")


def db_path(config: Path) -> Path:
    return config.parent / "var" / "chatgate.db"


def with_db(config: Path, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on the configuration's database and close it again."""

    async def run() -> T:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path(config)}")
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(run())
