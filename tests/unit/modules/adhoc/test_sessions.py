"""The command session table: bounded per account and in all, expiring."""

from __future__ import annotations

import pytest

from chatgate.modules.adhoc.sessions import LocalCommandSessions, Lookup, SessionsFull


def table(**kw: float) -> LocalCommandSessions:
    options = {"lifetime": 60.0, "per_account": 2, "total": 3, **kw}
    return LocalCommandSessions(
        lifetime=options["lifetime"],
        per_account=int(options["per_account"]),
        total=int(options["total"]),
    )


def test_session_found_by_its_owner_only() -> None:
    sessions = table()
    opened = sessions.open("a@h/r", "node", "h", now=0)
    assert sessions.get("a@h/r", opened.id, now=1) is opened
    assert sessions.get("a@h/other", opened.id, now=1) is Lookup.UNKNOWN
    assert sessions.get("a@h/r", "nope", now=1) is Lookup.UNKNOWN


def test_session_expires_after_its_lifetime_then_is_unknown() -> None:
    sessions = table()
    opened = sessions.open("a@h/r", "node", "h", now=0)
    assert sessions.get("a@h/r", opened.id, now=59) is opened  # renews to 119
    assert sessions.get("a@h/r", opened.id, now=119) is Lookup.EXPIRED
    assert sessions.get("a@h/r", opened.id, now=120) is Lookup.UNKNOWN
    assert len(sessions) == 0


def test_per_account_bound_counts_every_resource() -> None:
    sessions = table()
    sessions.open("a@h/1", "n", "h", now=0)
    sessions.open("a@h/2", "n", "h", now=0)
    with pytest.raises(SessionsFull):
        sessions.open("a@h/3", "n", "h", now=0)
    sessions.open("b@h/1", "n", "h", now=0)  # another account still may


def test_total_bound_then_expired_sessions_make_room() -> None:
    sessions = table()
    for who in ("a", "b", "c"):
        sessions.open(f"{who}@h/r", "n", "h", now=0)
    with pytest.raises(SessionsFull):
        sessions.open("d@h/r", "n", "h", now=10)
    sessions.open("d@h/r", "n", "h", now=61)  # the three expired at 60
    assert len(sessions) == 1


def test_closed_session_frees_its_share() -> None:
    sessions = table()
    first = sessions.open("a@h/1", "n", "h", now=0)
    sessions.open("a@h/2", "n", "h", now=0)
    sessions.close("a@h/1", first.id)
    sessions.close("a@h/1", first.id)  # twice: ignored
    sessions.open("a@h/3", "n", "h", now=0)
    assert len(sessions) == 2
