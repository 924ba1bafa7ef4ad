"""RFC 6121 Appendix A subscription tables, checked row by row against the core.

The expected tables below are transcribed from RFC 6121 Appendix A (Tables 2-9)
in the RFC's own layout, and the state model from the A.1 state list; neither
is taken from the implementation.  Side effects are checked against the §3
clauses quoted by each named test.
"""

from __future__ import annotations

import pytest

from chatgate.modules.roster.subscription import (
    INBOUND_TABLE,
    OUTBOUND_TABLE,
    STATE_FIELDS,
    Outcome,
    PairState,
    Step,
    SubscriptionStanza,
    SubscriptionState,
    inbound,
    outbound,
    pre_approve,
    state_name,
    with_state,
)
from chatgate.storage.records import RosterItem, Subscription

CONTACT = "juliet@example.com"

# --- RFC 6121 A.1: the nine states and how each is reflected in the user's roster ---
# state -> (subscription attribute, 'ask' flag, inbound request pending)
RFC_STATES: dict[str, tuple[str, bool, bool]] = {
    "None": ("none", False, False),
    "None + Pending Out": ("none", True, False),
    "None + Pending In": ("none", False, True),
    "None + Pending Out+In": ("none", True, True),
    "To": ("to", False, False),
    "To + Pending In": ("to", False, True),
    "From": ("from", False, False),
    "From + Pending Out": ("from", True, False),
    "Both": ("both", False, False),
}
# "a subscription state of "None" includes the case of the contact not being in the
# user's roster at all"; "None + Pending In" "might or might not be reflected in the
# user's roster".  Both are tested with and without a roster item.
MAY_BE_OUTSIDE_ROSTER = ("None", "None + Pending In")


def make(state: str, *, in_roster: bool = True, approved: bool = False) -> PairState:
    subscription, ask, pending_in = RFC_STATES[state]
    if not in_roster:
        assert state in MAY_BE_OUTSIDE_ROSTER
        return PairState(CONTACT, None, pending_in)
    item = RosterItem(
        jid=CONTACT,
        name="Juliet",
        groups=("Friends",),
        subscription=Subscription(subscription),
        ask=ask,
        approved=approved,
    )
    return PairState(CONTACT, item, pending_in)


def describe(pair: PairState) -> str:
    if pair.item is None:
        fields = ("none", False, pair.pending_in)
    else:
        fields = (pair.item.subscription.value, pair.item.ask, pair.pending_in)
    (name,) = [name for name, f in RFC_STATES.items() if f == fields]
    return name


def visible(pair: PairState) -> RosterItem | None:
    """What a roster push shows (§2.1.6): the item, or nothing if not in the roster."""
    return pair.item


# --- RFC 6121 Appendix A.2 and A.3, transcribed ---
# "S.N." stands for SHOULD NOT and "M.N." stands for MUST NOT.

TABLE_2_OUTBOUND_SUBSCRIBE = """
   |  "None"                  |  MUST [1] |  "None + Pending Out"     |
   |  "None + Pending Out"    |  MUST     |  no state change          |
   |  "None + Pending In"     |  MUST [1] |  "None + Pending Out+In"  |
   |  "None + Pending Out+In" |  MUST     |  no state change          |
   |  "To"                    |  MUST     |  no state change          |
   |  "To + Pending In"       |  MUST     |  no state change          |
   |  "From"                  |  MUST [1] |  "From + Pending Out"     |
   |  "From + Pending Out"    |  MUST     |  no state change          |
   |  "Both"                  |  MUST     |  no state change          |
"""
TABLE_3_OUTBOUND_UNSUBSCRIBE = """
   |  "None"                  |  MUST    |  no state change          |
   |  "None + Pending Out"    |  MUST    |  "None"                   |
   |  "None + Pending In"     |  MUST    |  no state change          |
   |  "None + Pending Out+In" |  MUST    |  "None + Pending In"      |
   |  "To"                    |  MUST    |  "None"                   |
   |  "To + Pending In"       |  MUST    |  "None + Pending In"      |
   |  "From"                  |  MUST    |  no state change          |
   |  "From + Pending Out"    |  MUST    |  "From"                   |
   |  "Both"                  |  MUST    |  "From"                   |
"""
TABLE_4_OUTBOUND_SUBSCRIBED = """
   |  "None"                  |  M.N.    |  pre-approval [1]         |
   |  "None + Pending Out"    |  M.N.    |  pre-approval [1]         |
   |  "None + Pending In"     |  MUST    |  "From"                   |
   |  "None + Pending Out+In" |  MUST    |  "From + Pending Out"     |
   |  "To"                    |  M.N.    |  pre-approval [1]         |
   |  "To + Pending In"       |  MUST    |  "Both"                   |
   |  "From"                  |  M.N.    |  no state change          |
   |  "From + Pending Out"    |  M.N.    |  no state change          |
   |  "Both"                  |  M.N.    |  no state change          |
"""
TABLE_5_OUTBOUND_UNSUBSCRIBED = """
   |  "None"                  |  S.N.    |  no state change [1]      |
   |  "None + Pending Out"    |  S.N.    |  no state change [1]      |
   |  "None + Pending In"     |  MUST    |  "None"                   |
   |  "None + Pending Out+In" |  MUST    |  "None + Pending Out"     |
   |  "To"                    |  S.N.    |  no state change [1]      |
   |  "To + Pending In"       |  MUST    |  "To"                     |
   |  "From"                  |  MUST    |  "None"                   |
   |  "From + Pending Out"    |  MUST    |  "None + Pending Out"     |
   |  "Both"                  |  MUST    |  "To"                     |
"""
TABLE_6_INBOUND_SUBSCRIBE = """
   |  "None"                  |  MUST [1]  |  "None + Pending In"     |
   |  "None + Pending Out"    |  MUST      |  "None + Pending Out+In" |
   |  "None + Pending In"     |  S.N.      |  no state change         |
   |  "None + Pending Out+In" |  S.N.      |  no state change         |
   |  "To"                    |  MUST      |  "To + Pending In"       |
   |  "To + Pending In"       |  S.N.      |  no state change         |
   |  "From"                  |  S.N. [2]  |  no state change         |
   |  "From + Pending Out"    |  S.N. [2]  |  no state change         |
   |  "Both"                  |  S.N. [2]  |  no state change         |
"""
TABLE_7_INBOUND_UNSUBSCRIBE = """
   |  "None"                  |  S.N.      |  no state change         |
   |  "None + Pending Out"    |  S.N.      |  no state change         |
   |  "None + Pending In"     |  MUST [1]  |  "None"                  |
   |  "None + Pending Out+In" |  MUST [1]  |  "None + Pending Out"    |
   |  "To"                    |  S.N.      |  no state change         |
   |  "To + Pending In"       |  MUST [1]  |  "To"                    |
   |  "From"                  |  MUST [1]  |  "None"                  |
   |  "From + Pending Out"    |  MUST [1]  |  "None + Pending Out"    |
   |  "Both"                  |  MUST [1]  |  "To"                    |
"""
TABLE_8_INBOUND_SUBSCRIBED = """
   |  "None"                  |  S.N.      |  no state change         |
   |  "None + Pending Out"    |  MUST      |  "To"                    |
   |  "None + Pending In"     |  S.N.      |  no state change         |
   |  "None + Pending Out+In" |  MUST      |  "To + Pending In"       |
   |  "To"                    |  S.N.      |  no state change         |
   |  "To + Pending In"       |  S.N.      |  no state change         |
   |  "From"                  |  S.N.      |  no state change         |
   |  "From + Pending Out"    |  MUST      |  "Both"                  |
   |  "Both"                  |  S.N.      |  no state change         |
"""
TABLE_9_INBOUND_UNSUBSCRIBED = """
   |  "None"                  |  S.N.      |  no state change         |
   |  "None + Pending Out"    |  MUST      |  "None"                  |
   |  "None + Pending In"     |  S.N.      |  no state change         |
   |  "None + Pending Out+In" |  MUST      |  "None + Pending In"     |
   |  "To"                    |  MUST      |  "None"                  |
   |  "To + Pending In"       |  MUST      |  "None + Pending In"     |
   |  "From"                  |  S.N.      |  no state change         |
   |  "From + Pending Out"    |  MUST      |  "From"                  |
   |  "Both"                  |  MUST      |  "From"                  |
"""

TABLES = [
    ("A.2.1", "outbound", SubscriptionStanza.SUBSCRIBE, TABLE_2_OUTBOUND_SUBSCRIBE),
    ("A.2.2", "outbound", SubscriptionStanza.UNSUBSCRIBE, TABLE_3_OUTBOUND_UNSUBSCRIBE),
    ("A.2.3", "outbound", SubscriptionStanza.SUBSCRIBED, TABLE_4_OUTBOUND_SUBSCRIBED),
    ("A.2.4", "outbound", SubscriptionStanza.UNSUBSCRIBED, TABLE_5_OUTBOUND_UNSUBSCRIBED),
    ("A.3.1", "inbound", SubscriptionStanza.SUBSCRIBE, TABLE_6_INBOUND_SUBSCRIBE),
    ("A.3.2", "inbound", SubscriptionStanza.UNSUBSCRIBE, TABLE_7_INBOUND_UNSUBSCRIBE),
    ("A.3.3", "inbound", SubscriptionStanza.SUBSCRIBED, TABLE_8_INBOUND_SUBSCRIBED),
    ("A.3.4", "inbound", SubscriptionStanza.UNSUBSCRIBED, TABLE_9_INBOUND_UNSUBSCRIBED),
]


def _parse_cell(cell: str) -> tuple[str, frozenset[str]]:
    notes = frozenset(part.strip("[]") for part in cell.split() if part.startswith("["))
    text = " ".join(part for part in cell.split() if not part.startswith("["))
    return text.strip('"'), notes


def _rows() -> list[pytest.param]:
    params = []
    for section, direction, stanza, table in TABLES:
        for line in table.strip().splitlines():
            _, state_cell, verdict_cell, new_cell, _ = line.split("|")
            state, _ = _parse_cell(state_cell)
            verdict, verdict_notes = _parse_cell(verdict_cell)
            new, new_notes = _parse_cell(new_cell)
            for in_roster in (True, False) if state in MAY_BE_OUTSIDE_ROSTER else (True,):
                where = "in-roster" if in_roster else "not-in-roster"
                params.append(
                    pytest.param(
                        direction,
                        stanza,
                        state,
                        in_roster,
                        verdict,
                        new,
                        verdict_notes | new_notes,
                        id=f"{section}-{stanza.value}-{state}-{where}",
                    )
                )
    return params


ROWS = _rows()


def test_transcription_has_every_appendix_a_row() -> None:
    assert len({(p.values[0], p.values[1], p.values[2]) for p in ROWS}) == 8 * 9


@pytest.mark.parametrize(
    ("direction", "stanza", "state", "in_roster", "verdict", "new", "notes"), ROWS
)
def test_appendix_a_row(
    direction: str,
    stanza: SubscriptionStanza,
    state: str,
    in_roster: bool,
    verdict: str,
    new: str,
    notes: frozenset[str],
) -> None:
    before = make(state, in_roster=in_roster)
    process = outbound if direction == "outbound" else inbound
    outcome = process(before, stanza)
    after = outcome.new_state

    # ROUTE?/DELIVER?: MUST -> yes; S.N. and M.N. -> no.
    assert outcome.deliver is (verdict == "MUST")

    if new == "no state change":
        assert after == before
    elif new == "pre-approval":
        # A.2.3 [1] -> §3.4.2 steps 3-4: 'approved' set, not routed, roster pushed.
        assert describe(after) == state
        assert after.item is not None and after.item.approved
    else:
        assert describe(after) == new
    assert state_name(after).value == describe(after)

    # A.1 state 3: the server "MUST NOT create a roster item for the contact" until the
    # user approves; no state in these tables removes an item either.
    if not in_roster and describe(after) in MAY_BE_OUTSIDE_ROSTER and new != "pre-approval":
        assert after.item is None
    if in_roster:
        assert after.item is not None
        assert (after.item.name, after.item.groups) == ("Juliet", ("Friends",))

    # §2.1.6: clients are told about every change to the item, and only then.
    assert outcome.roster_push is (visible(after) != visible(before))
    assert outcome.state_changed is (after != before)

    if direction == "outbound" and stanza is SubscriptionStanza.SUBSCRIBE and "1" in notes:
        # A.2.1 [1]: "includes setting the 'ask' flag to a value of "subscribe""
        assert after.item is not None and after.item.ask
    if direction == "inbound" and stanza is SubscriptionStanza.SUBSCRIBE:
        # A.3.1 [2]: "Server SHOULD auto-reply with "subscribed"."
        expected = SubscriptionStanza.SUBSCRIBED if "2" in notes else None
        assert outcome.auto_reply is expected
    elif direction == "inbound" and stanza is SubscriptionStanza.UNSUBSCRIBE:
        # A.3.2 [1]: "Server SHOULD auto-reply with "unsubscribed"."
        expected = SubscriptionStanza.UNSUBSCRIBED if "1" in notes else None
        assert outcome.auto_reply is expected
    else:
        assert outcome.auto_reply is None


# --- named behaviours ---


def test_outbound_subscribe_sets_pending_out_and_pushes() -> None:
    # §3.1.2: route, then "send a roster push ... containing the potential contact with a
    # subscription state of "none" and with notation that the subscription is pending".
    outcome = outbound(PairState(CONTACT), SubscriptionStanza.SUBSCRIBE)

    assert outcome.deliver
    assert outcome.roster_push
    assert outcome.new_state.item == RosterItem(
        jid=CONTACT, subscription=Subscription.NONE, ask=True
    )
    assert state_name(outcome.new_state) is SubscriptionState.NONE_PENDING_OUT
    assert outcome.steps == (Step.STORE, Step.DELIVER, Step.ROSTER_PUSH)


def test_inbound_subscribe_with_preapproval_auto_replies_subscribed() -> None:
    # §3.4.2: "the user's server MUST NOT deliver a presence stanza of type "subscribe"
    # from the contact to the user, but instead MUST automatically respond ... by
    # returning a presence stanza of type "subscribed"".
    before = make("None", approved=True)

    outcome = inbound(before, SubscriptionStanza.SUBSCRIBE)

    assert not outcome.deliver
    assert outcome.auto_reply is SubscriptionStanza.SUBSCRIBED
    assert describe(outcome.new_state) == "From"  # A.3.1 [1]
    assert outcome.new_state.item is not None
    assert not outcome.new_state.item.approved  # the pre-approval is used up
    assert not outcome.new_state.pending_in
    assert outcome.roster_push
    assert outcome.send_presence_to_contact  # §3.1.5: approval is followed by presence
    assert outcome.steps == (
        Step.STORE,
        Step.AUTO_REPLY,
        Step.ROSTER_PUSH,
        Step.SEND_PRESENCE_TO_CONTACT,
    )


@pytest.mark.parametrize(
    ("state", "after"),
    [("None + Pending Out", "From + Pending Out"), ("To", "Both")],
)
def test_inbound_subscribe_honours_preapproval_in_every_preapprovable_state(
    state: str, after: str
) -> None:
    # §3.4.2 step 3 lists "To", "None" and "None + Pending Out" as pre-approvable.
    outcome = inbound(make(state, approved=True), SubscriptionStanza.SUBSCRIBE)

    assert not outcome.deliver
    assert outcome.auto_reply is SubscriptionStanza.SUBSCRIBED
    assert describe(outcome.new_state) == after


def test_inbound_subscribed_without_pending_out_is_ignored() -> None:
    # §3.1.6: "the user's server MUST silently ignore the subscription approval
    # notification by not delivering it to the user, not modifying the user's roster,
    # and not generating a roster push".
    for state in ("None", "None + Pending In", "To", "To + Pending In", "From", "Both"):
        before = make(state)
        outcome = inbound(before, SubscriptionStanza.SUBSCRIBED)
        assert outcome == Outcome(
            new_state=before, deliver=False, roster_push=False, state_changed=False
        )
        assert outcome.steps == ()
    unknown = PairState(CONTACT)
    assert inbound(unknown, SubscriptionStanza.SUBSCRIBED).new_state == unknown


def test_inbound_subscribed_delivers_before_push_and_probes() -> None:
    # §3.1.6 step 1: deliver; "This MUST occur before sending the roster push".
    outcome = inbound(make("None + Pending Out"), SubscriptionStanza.SUBSCRIBED)

    assert outcome.new_state.item is not None
    assert outcome.new_state.item.subscription is Subscription.TO
    assert not outcome.new_state.item.ask
    assert outcome.probe_contact
    assert outcome.steps == (Step.STORE, Step.DELIVER, Step.ROSTER_PUSH, Step.PROBE_CONTACT)


def test_inbound_subscribe_from_stranger_is_not_added_to_roster() -> None:
    # §3.1.3 Security Warning: "the contact's server MUST NOT add an item for the user to
    # the contact's roster".
    outcome = inbound(PairState(CONTACT), SubscriptionStanza.SUBSCRIBE)

    assert outcome.deliver
    assert outcome.new_state == PairState(CONTACT, None, pending_in=True)
    assert not outcome.roster_push
    assert outcome.steps == (Step.STORE, Step.DELIVER)


def test_outbound_subscribed_approving_stranger_adds_item_and_sends_presence() -> None:
    # A.1 state 3: wait "until the user has approved the subscription request before
    # adding the contact to the user's roster"; §3.1.5: route, push "from", then presence.
    outcome = outbound(PairState(CONTACT, None, True), SubscriptionStanza.SUBSCRIBED)

    assert outcome.new_state == PairState(
        CONTACT, RosterItem(jid=CONTACT, subscription=Subscription.FROM), False
    )
    assert outcome.steps == (
        Step.STORE,
        Step.DELIVER,
        Step.ROSTER_PUSH,
        Step.SEND_PRESENCE_TO_CONTACT,
    )


@pytest.mark.parametrize("state", ["None", "None + Pending Out", "To"])
def test_outbound_subscribed_records_preapproval_without_routing(state: str) -> None:
    outcome = outbound(make(state), SubscriptionStanza.SUBSCRIBED)

    assert not outcome.deliver
    assert outcome.new_state.item is not None and outcome.new_state.item.approved
    assert describe(outcome.new_state) == state
    assert outcome.roster_push
    assert pre_approve(make(state)) == outcome


def test_preapproval_of_stranger_creates_item_with_state_none() -> None:
    # §3.4.2 step 4: "create a roster item for the contact with a state of "None" and set
    # the 'approved' flag to a value of "true", then push the roster item".
    outcome = outbound(PairState(CONTACT), SubscriptionStanza.SUBSCRIBED)

    assert outcome.new_state.item == RosterItem(jid=CONTACT, approved=True)
    assert not outcome.deliver
    assert outcome.roster_push


def test_outbound_subscribed_without_preapproval_support_is_ignored() -> None:
    # §3.4.1: "If the server does not advertise support for subscription pre-approvals,
    # the client MUST NOT attempt to pre-approve"; A.2.3 still says M.N. route.
    before = make("None")

    outcome = outbound(before, SubscriptionStanza.SUBSCRIBED, pre_approval=False)

    assert outcome == Outcome(
        new_state=before, deliver=False, roster_push=False, state_changed=False
    )


@pytest.mark.parametrize("state", ["None + Pending In", "To + Pending In", "From", "Both"])
def test_pre_approve_refuses_states_where_subscribed_is_not_a_preapproval(state: str) -> None:
    with pytest.raises(ValueError, match="cannot pre-approve"):
        pre_approve(make(state))


@pytest.mark.parametrize("state", ["None", "None + Pending Out", "To"])
def test_outbound_unsubscribed_cancels_preapproval_without_routing(state: str) -> None:
    # §3.2.2 step 2: "the contact's server MUST remove the pre-approval and MUST NOT route
    # or deliver the presence stanza of type "unsubscribed""; §3.4.2: "the user's server
    # would send a roster push ... with the 'approved' attribute removed".
    outcome = outbound(make(state, approved=True), SubscriptionStanza.UNSUBSCRIBED)

    assert not outcome.deliver
    assert not outcome.send_unavailable_to_contact  # §3.2.2 step 1: MUST NOT
    assert outcome.new_state == make(state, approved=False)
    assert outcome.roster_push


@pytest.mark.parametrize(("state", "after"), [("From", "None"), ("Both", "To")])
def test_outbound_unsubscribed_ending_subscription_sends_unavailable_first(
    state: str, after: str
) -> None:
    # §3.2.2: "While the user is still subscribed ... (i.e., before the contact's server
    # routes or delivers the presence stanza of type "unsubscribed" to the user), the
    # contact's server MUST send a presence stanza of type "unavailable"".
    outcome = outbound(make(state), SubscriptionStanza.UNSUBSCRIBED)

    assert describe(outcome.new_state) == after
    assert outcome.steps == (
        Step.STORE,
        Step.SEND_UNAVAILABLE_TO_CONTACT,
        Step.DELIVER,
        Step.ROSTER_PUSH,
    )


def test_denying_request_sends_no_unavailable() -> None:
    # The requester was never sent the user's presence, so there is nothing to retract.
    outcome = outbound(PairState(CONTACT, None, True), SubscriptionStanza.UNSUBSCRIBED)

    assert outcome.deliver
    assert outcome.new_state == PairState(CONTACT)
    assert not outcome.send_unavailable_to_contact
    assert not outcome.roster_push


@pytest.mark.parametrize(("state", "after"), [("From", "None"), ("Both", "To")])
def test_inbound_unsubscribe_ending_from_replies_and_sends_unavailable(
    state: str, after: str
) -> None:
    # A.3.2: "MUST deliver ... and SHOULD auto-reply ... "unsubscribed""; §3.3.3 step 3:
    # "Generate an outbound presence stanza of type "unavailable"".
    outcome = inbound(make(state), SubscriptionStanza.UNSUBSCRIBE)

    assert describe(outcome.new_state) == after
    assert outcome.auto_reply is SubscriptionStanza.UNSUBSCRIBED
    assert outcome.send_unavailable_to_contact
    assert outcome.steps.index(Step.DELIVER) < outcome.steps.index(Step.ROSTER_PUSH)
    assert outcome.steps.index(Step.SEND_UNAVAILABLE_TO_CONTACT) < outcome.steps.index(
        Step.AUTO_REPLY
    )


def test_inbound_unsubscribed_in_none_pending_out_keeps_item_with_ask_cleared() -> None:
    before = make("None + Pending Out")

    outcome = inbound(before, SubscriptionStanza.UNSUBSCRIBED)

    assert outcome.deliver
    assert outcome.new_state.item is not None
    assert outcome.new_state.item.subscription is Subscription.NONE
    assert not outcome.new_state.item.ask
    assert (outcome.new_state.item.name, outcome.new_state.item.groups) == ("Juliet", ("Friends",))
    assert outcome.roster_push


def test_inbound_unsubscribed_leaves_preapproval_alone() -> None:
    # 'approved' concerns the contact's subscription to the user, not the user's to it.
    outcome = inbound(make("To", approved=True), SubscriptionStanza.UNSUBSCRIBED)

    assert outcome.new_state == make("None", approved=True)


def test_state_name_and_with_state_are_inverse() -> None:
    for name in SubscriptionState:
        moved = with_state(PairState(CONTACT), name)
        assert state_name(moved) is name
        assert (moved.item.subscription if moved.item else Subscription.NONE) is STATE_FIELDS[
            name
        ].subscription
        assert describe(moved) == name.value


def test_state_name_ignores_flags_for_directions_already_granted() -> None:
    stale = PairState(
        CONTACT, RosterItem(jid=CONTACT, subscription=Subscription.BOTH, ask=True), True
    )

    assert state_name(stale) is SubscriptionState.BOTH
    assert inbound(stale, SubscriptionStanza.SUBSCRIBED).new_state == stale


def test_pair_state_rejects_item_for_another_contact() -> None:
    with pytest.raises(ValueError, match="is not for contact"):
        PairState(CONTACT, RosterItem(jid="romeo@example.net"))


def test_tables_cover_every_state_and_stanza() -> None:
    keys = {(state, stanza) for state in SubscriptionState for stanza in SubscriptionStanza}
    assert set(OUTBOUND_TABLE) == keys
    assert set(INBOUND_TABLE) == keys
