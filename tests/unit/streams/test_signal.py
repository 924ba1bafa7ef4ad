"""Change signals: the stamp file across "processes" (watchers made separately,
as each process makes its own), rate-limited stats, and the in-process form."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from chatgate.streams.signal import (
    STAMP_CHECK_INTERVAL,
    STREAMS_STAMP,
    AnySignal,
    LocalSignal,
    StampSignal,
)
from chatgate.streams.stores import ChangeSignal


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += STAMP_CHECK_INTERVAL + 0.001


def test_every_signal_implements_the_interface(tmp_path: Path) -> None:
    signals: list[ChangeSignal] = [
        StampSignal(tmp_path),
        LocalSignal(),
        AnySignal(LocalSignal(), StampSignal(tmp_path)),
    ]
    assert not any(s.changed() for s in signals)


def test_a_change_is_seen_once_by_every_other_watcher(tmp_path: Path) -> None:
    clock = Clock()
    changer = StampSignal(tmp_path, clock=clock)
    server, other = StampSignal(tmp_path, clock=clock), StampSignal(tmp_path, clock=clock)
    assert not server.changed()
    changer.raise_()
    clock.tick()
    assert server.changed()
    assert other.changed()
    clock.tick()
    assert not server.changed()
    assert not other.changed()


def test_the_raiser_sees_its_own_change_at_once_and_once(tmp_path: Path) -> None:
    clock = Clock()
    signal = StampSignal(tmp_path, clock=clock)
    signal.raise_()
    assert signal.changed()
    clock.tick()
    assert not signal.changed()


def test_two_changes_within_one_mtime_tick_are_both_seen(tmp_path: Path) -> None:
    clock = Clock()
    changer, server = StampSignal(tmp_path, clock=clock), StampSignal(tmp_path, clock=clock)
    changer.raise_()
    clock.tick()
    assert server.changed()
    changer.raise_()  # same mtime, maybe: the inode changed (atomic replace)
    clock.tick()
    assert server.changed()


def test_the_stamp_is_checked_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    server = StampSignal(tmp_path, clock=clock)
    stats: list[object] = []
    real_stat = os.stat

    def counting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    for _ in range(1000):
        server.changed()
    assert len(stats) == 1
    StampSignal(tmp_path).raise_()
    assert not server.changed()  # within the interval: not looked at yet
    clock.tick()
    assert server.changed()


def test_changes_before_a_watcher_was_made_are_not_reported(tmp_path: Path) -> None:
    StampSignal(tmp_path).raise_()
    assert not StampSignal(tmp_path).changed()


def test_the_stamp_is_private_and_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    StampSignal(data_dir).raise_()
    path = data_dir / STREAMS_STAMP
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    StampSignal(tmp_path, "other.stamp").raise_()
    assert (tmp_path / "other.stamp").exists()


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_a_stamp_is_a_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        StampSignal(tmp_path, name)


def test_a_deleted_stamp_is_a_change(tmp_path: Path) -> None:
    clock = Clock()
    StampSignal(tmp_path).raise_()
    server = StampSignal(tmp_path, clock=clock)
    (tmp_path / STREAMS_STAMP).unlink()
    assert server.changed()


def test_watcher_shares_the_file(tmp_path: Path) -> None:
    clock = Clock()
    first = StampSignal(tmp_path, clock=clock)
    second = first.watcher()
    first.raise_()
    assert first.changed()
    assert second.changed()  # its first look: no interval to wait
    assert not second.changed()


def test_local_watchers_each_see_each_change_once() -> None:
    first = LocalSignal()
    second = first.watcher()
    assert not first.changed() and not second.changed()
    first.raise_()
    second.raise_()
    assert first.changed() and not first.changed()
    assert second.changed() and not second.changed()
    assert not LocalSignal().changed()  # separate signals share nothing


def test_any_signal_asks_every_signal_and_raises_the_first() -> None:
    a, b = LocalSignal(), LocalSignal()
    watch_a, watch_b = a.watcher(), b.watcher()
    both = AnySignal(watch_a, watch_b)
    a.raise_()
    b.raise_()
    assert both.changed()
    assert not both.changed()  # b's change was taken with a's, not left for later
    assert a.changed() and b.changed()  # the raisers' own watchers, seen once
    both.raise_()
    assert a.changed() and not b.changed()
