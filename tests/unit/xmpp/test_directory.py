"""The local session directory: claims under each resource-conflict policy (RFC 6120
§7.7.2.2), `max_resources` (§7.6.2.1), releases that leave a newer session alone,
availability, and the questions modules ask instead of reading the table."""

from __future__ import annotations

import pytest

from chatgate.config import ResourceConflict
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp import directory as directory_module
from chatgate.xmpp.directory import ClaimRefused, LocalSessionDirectory
from chatgate.xmpp.session import C2SSession

ALICE = "alice@localhost"


class Made:
    """Builds sessions for one account as a connection would, and records closes."""

    def __init__(self, username: str = "alice") -> None:
        self.username = username
        self.built: list[C2SSession] = []
        self.closed: list[tuple[str, StreamErrorCondition | None, str]] = []

    def __call__(self, resource: str) -> C2SSession:
        session = C2SSession(
            username=self.username,
            domain="localhost",
            resource=resource,
            stream_id="s",
            write=lambda _data: None,
            close=lambda condition, text: self.closed.append((resource, condition, text)),
            transport="test",
        )
        self.built.append(session)
        return session


def claim(directory: LocalSessionDirectory, resource: str | None, made: Made | None = None):  # type: ignore[no-untyped-def]
    return directory.claim(made or Made(), resource)


def test_claim_binds_the_requested_resource() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
    session, replaced = claim(directory, "phone")
    assert (session.full, replaced) == (f"{ALICE}/phone", None)
    assert directory.local == {ALICE: {"phone": session}}
    assert directory.is_bound(session) and directory.bound_here(ALICE)
    assert directory.bound_anywhere(ALICE) is True


def test_newest_wins_returns_the_replaced_session_for_the_caller_to_close() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
    old, _ = claim(directory, "phone")
    new, replaced = claim(directory, "phone")
    assert replaced is old and new is not old
    assert directory.local[ALICE] == {"phone": new}
    assert not directory.is_bound(old)
    # The old session's connection releases it when it closes: the new one stays.
    directory.release(old)
    assert directory.local[ALICE] == {"phone": new}


def test_reject_refuses_the_new_session_with_conflict() -> None:
    directory = LocalSessionDirectory(ResourceConflict.REJECT_NEW, 10)
    old, _ = claim(directory, "phone")
    with pytest.raises(ClaimRefused) as refused:
        claim(directory, "phone")
    assert refused.value.condition is StanzaErrorCondition.CONFLICT
    assert refused.value.error_type == "cancel"
    assert directory.local[ALICE] == {"phone": old}


def test_randomize_gives_the_new_session_a_server_chosen_resource() -> None:
    directory = LocalSessionDirectory(ResourceConflict.RANDOMIZE, 10)
    old, _ = claim(directory, "phone")
    new, replaced = claim(directory, "phone")
    assert replaced is None
    assert new.resource.startswith("phone-") and len(new.resource) == len("phone-") + 8
    assert directory.local[ALICE] == {"phone": old, new.resource: new}


def test_a_server_chosen_resource_that_collides_is_made_unique_under_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
    monkeypatch.setattr(directory_module, "_random_resource", lambda: "0123456789abcdef")
    first, _ = claim(directory, None)
    second, replaced = claim(directory, None)
    assert first.resource == "0123456789abcdef"
    assert replaced is None and second.resource == "0123456789abcdef-01234567"
    assert set(directory.local[ALICE]) == {first.resource, second.resource}


def test_max_resources_refuses_with_resource_constraint() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 2)
    claim(directory, "a")
    claim(directory, "b")
    with pytest.raises(ClaimRefused) as refused:
        claim(directory, "c")
    assert refused.value.condition is StanzaErrorCondition.RESOURCE_CONSTRAINT
    assert refused.value.text == "too many resources"
    assert set(directory.local[ALICE]) == {"a", "b"}
    # Replacing a resource at the limit is no new resource.
    new, replaced = claim(directory, "b")
    assert replaced is not None and directory.local[ALICE]["b"] is new


def test_the_limit_is_per_account() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 1)
    claim(directory, "a")
    bob, _ = claim(directory, "a", Made("bob"))
    assert directory.local["bob@localhost"] == {"a": bob}


def test_release_of_the_last_session_forgets_the_account() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
    a, _ = claim(directory, "a")
    b, _ = claim(directory, "b")
    assert directory.release(a) is None
    assert directory.local == {ALICE: {"b": b}}
    directory.release(b)
    assert directory.local == {}
    assert not directory.bound_here(ALICE) and directory.bound_anywhere(ALICE) is False
    directory.release(b)  # twice: nothing
    assert directory.local == {}


def test_availability_is_recorded_on_the_session() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
    session, _ = claim(directory, "a")
    presence = Element("presence", "jabber:client", {"from": session.full})
    directory.mark_available(session, -3, presence)
    assert (session.available, session.priority, session.presence) == (True, -3, presence)
    directory.mark_unavailable(session)
    assert (session.available, session.presence) == (False, None)


def test_close_sessions_closes_every_session_of_the_account() -> None:
    directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
    made = Made()
    claim(directory, "a", made)
    claim(directory, "b", made)
    claim(directory, "a", Made("bob"))
    text = "the account was removed"
    assert directory.close_sessions(ALICE, StreamErrorCondition.NOT_AUTHORIZED, text) == 2
    assert sorted(made.closed) == [
        ("a", StreamErrorCondition.NOT_AUTHORIZED, text),
        ("b", StreamErrorCondition.NOT_AUTHORIZED, text),
    ]
    assert directory.close_sessions("nobody@localhost", StreamErrorCondition.CONFLICT, "") == 0
