"""The resumption table: tokens tied to their account, ended sessions' 'h', bounds."""

from __future__ import annotations

from chatgate.xmpp import sm_resumption
from chatgate.xmpp.sm_queue import QueueLimits
from chatgate.xmpp.sm_resumption import Ended, LocalResumptionTable, SmPolicy, new_token


class Holder:
    def hand_over(self) -> None:  # pragma: no cover - not called here
        pass


def test_a_token_is_found_only_for_its_account() -> None:
    table = LocalResumptionTable()
    holder = Holder()
    table.add("tok", "alice@example.org", holder)
    assert table.find("tok", "alice@example.org") is holder
    assert table.find("tok", "mallory@example.org") == Ended()
    assert table.find("other", "alice@example.org") == Ended()


def test_an_ended_session_tells_its_owner_its_h_and_nobody_else() -> None:
    table = LocalResumptionTable()
    table.add("tok", "alice@example.org", Holder())
    table.remove("tok", "alice@example.org", 17)
    assert len(table) == 0
    assert table.find("tok", "alice@example.org") == Ended(17)
    assert table.find("tok", "mallory@example.org") == Ended()


def test_removing_an_unknown_token_remembers_nothing() -> None:
    table = LocalResumptionTable()
    table.remove("never", "alice@example.org", 3)
    assert table.find("never", "alice@example.org") == Ended()


def test_ended_sessions_are_remembered_within_a_bound(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sm_resumption, "REMEMBERED_ENDED", 3)
    table = LocalResumptionTable()
    for n in range(5):
        table.add(f"t{n}", "a@x", Holder())
        table.remove(f"t{n}", "a@x", n)
    assert table.find("t0", "a@x") == Ended()
    assert table.find("t1", "a@x") == Ended()
    assert table.find("t4", "a@x") == Ended(4)


def test_tokens_are_long_and_unique() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 32 for t in tokens)


def test_resume_seconds_follow_the_client_within_the_maximum() -> None:
    policy = SmPolicy(300, 600, QueueLimits(10, 1000), 5, 2.0, LocalResumptionTable())
    assert policy.resume_seconds(None) == 300
    assert policy.resume_seconds("60") == 60
    assert policy.resume_seconds("100000") == 600
    assert policy.resume_seconds("0") == 300
    assert policy.resume_seconds("-5") == 300
    assert policy.resume_seconds("soon") == 300
