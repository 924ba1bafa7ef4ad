"""The modules' stop hook (`OnStop`, run by `ServerContext.stop_modules` from
`Server.stop`), which the MUC uses to hand its rooms over: reverse load order,
each bounded by its timeout, a failure not stopping the others, run once; and
the MUC without a cluster registers one that does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from chatgate.config import Config
from chatgate.context import ServerContext
from chatgate.modules.base import OnStop, Registration, Spec

from .support import ROOM, Client, running


class Stopping:
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def __init__(self, name: str, work: Any, timeout: float = 10.0) -> None:
        self.name = name  # type: ignore[misc]
        self.work = work
        self.timeout = timeout

    def setup(self, ctx: Any) -> Iterable[Registration]:
        yield OnStop(self.work, timeout=self.timeout)


async def test_stop_work_runs_once_in_reverse_order_bounded_and_isolated(tmp_path: Path) -> None:
    config = Config.model_validate({"server": {"data_dir": str(tmp_path / "var")}})
    ctx = ServerContext(config, object(), object())  # type: ignore[arg-type]
    ran: list[str] = []
    cancelled = asyncio.Event()

    def recording(name: str) -> Any:
        async def run() -> None:
            ran.append(name)

        return run

    async def stuck() -> None:
        ran.append("stuck")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        ran.append("failing")
        raise RuntimeError("boom")

    ctx.load(Stopping("first", recording("first")))  # type: ignore[arg-type]
    ctx.load(Stopping("stuck", stuck, timeout=0.2))  # type: ignore[arg-type]
    ctx.load(Stopping("failing", failing))  # type: ignore[arg-type]
    ctx.load(Stopping("last", recording("last")))  # type: ignore[arg-type]
    ctx.unload("last")  # an unloaded module's stop work goes with it
    began = asyncio.get_running_loop().time()
    await ctx.stop_modules()
    assert asyncio.get_running_loop().time() - began < 2
    assert ran == ["failing", "stuck", "first"]
    assert cancelled.is_set()
    await ctx.stop_modules()  # once only
    assert ran == ["failing", "stuck", "first"]


async def test_the_muc_without_a_cluster_stops_at_once_and_keeps_its_rooms(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        record = srv.ctx.modules.get("muc")
        assert record is not None
        assert any(isinstance(r, OnStop) for r in record.registrations)
        registry = record.module.registry  # type: ignore[attr-defined]
        room = registry.get(ROOM)
        assert room is not None
        await asyncio.wait_for(srv.ctx.stop_modules(), 1)
        # nobody to hand it to: the room and its occupant stay, nobody is told anything
        assert registry.get(ROOM) is room and room.occupant_of(alice.full) is not None
        assert alice.received() == []
