"""RFC 6121 presence-subscription state machine for one (user, contact) pair.

Owns the nine subscription states of RFC 6121 Appendix A.1, the outbound (A.2)
and inbound (A.3) transition tables, and subscription pre-approval (§3.4).

It must not route, deliver or store anything, push rosters, await, or read the
clock.  It takes the stored state of the pair and the type of a subscription
stanza and returns an `Outcome` that says what the server must do; the roster
and presence module carries that out in the order given by `Outcome.steps`.
"""

# Theory of operation
# -------------------
# Everything is seen from the *user's* server (RFC 6121 A.1: "these states are
# described from the perspective of the user, not the contact").  `outbound()`
# handles a stanza the user sent to the contact (A.2); `inbound()` handles one
# the contact sent to the user (A.3).  A server that hosts both parties runs
# `outbound()` on the sender's pair and, if `deliver` is set, `inbound()` on the
# recipient's pair (§3.1.2 step 2).
#
# A pair's state is three facts:
#   - the 'subscription' attribute of the roster item (none/to/from/both),
#   - the 'ask' flag (pending out: the user asked for the contact's presence),
#   - pending_in (the contact asked for the user's presence; unanswered).
# pending_in lives outside the roster item because "if the user has not created
# a roster item for the contact then the user's server MUST note the existence
# of the inbound presence subscription request but MUST NOT create a roster item
# for the contact" (A.1, state 3).  A missing item counts as "None": "a
# subscription state of "None" includes the case of the contact not being in
# the user's roster at all" (A.1, Implementation Note).
#
# Odd transitions, and why:
#   - Approving a request from a contact who is not in the roster ("None +
#     Pending In" -> "From") creates the item: A.1 says the server waits "until
#     the user has approved the subscription request before adding the contact
#     to the user's roster".
#   - No transition removes an item.  Leaving "None + Pending Out" (the contact
#     denied, or the user withdrew) keeps the item with 'ask' cleared; only a
#     roster remove (§2.5) deletes it.
#   - 'approved' (pre-approval, §3.4) is set by an outbound "subscribed" in
#     "None", "None + Pending Out" or "To" (§3.4.2 steps 3-4), consumed by the
#     next inbound "subscribe" (which is then answered for the user and never
#     delivered), and cleared by any outbound "unsubscribed" (§3.2.2 step 2,
#     and §3.4.2: "until and unless the user sends a presence stanza of type
#     "unsubscribed" to the contact").
#   - Two flags are meaningless once the direction they wait for is granted:
#     'ask' with subscription to/both and pending_in with from/both.  There is
#     no such state in A.1, so `state_name()` ignores them (stale data from an
#     older server must not make a pair unprocessable).

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from chatgate.storage.records import RosterItem, Subscription

__all__ = [
    "INBOUND_TABLE",
    "OUTBOUND_TABLE",
    "STATE_FIELDS",
    "Outcome",
    "PairState",
    "Row",
    "StateFields",
    "Step",
    "SubscriptionStanza",
    "SubscriptionState",
    "inbound",
    "outbound",
    "pre_approve",
    "state_name",
    "with_state",
]


class SubscriptionStanza(enum.Enum):
    """The subscription values of a presence stanza's 'type' attribute (RFC 6121 §4.7.1)."""

    SUBSCRIBE = "subscribe"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBED = "unsubscribed"


class SubscriptionState(enum.Enum):
    """The nine states of RFC 6121 Appendix A.1; each value is the RFC's own name."""

    NONE = "None"
    NONE_PENDING_OUT = "None + Pending Out"
    NONE_PENDING_IN = "None + Pending In"
    NONE_PENDING_OUT_IN = "None + Pending Out+In"
    TO = "To"
    TO_PENDING_IN = "To + Pending In"
    FROM = "From"
    FROM_PENDING_OUT = "From + Pending Out"
    BOTH = "Both"


@dataclass(frozen=True, slots=True)
class StateFields:
    """How one named state is stored: item subscription, 'ask' flag, pending inbound request."""

    subscription: Subscription
    ask: bool
    pending_in: bool


_S = SubscriptionState
_T = SubscriptionStanza

#: The inverse of `state_name()`: A.1's "this is reflected in the user's roster by ..." clauses.
STATE_FIELDS: Mapping[SubscriptionState, StateFields] = MappingProxyType(
    {
        _S.NONE: StateFields(Subscription.NONE, ask=False, pending_in=False),
        _S.NONE_PENDING_OUT: StateFields(Subscription.NONE, ask=True, pending_in=False),
        _S.NONE_PENDING_IN: StateFields(Subscription.NONE, ask=False, pending_in=True),
        _S.NONE_PENDING_OUT_IN: StateFields(Subscription.NONE, ask=True, pending_in=True),
        _S.TO: StateFields(Subscription.TO, ask=False, pending_in=False),
        _S.TO_PENDING_IN: StateFields(Subscription.TO, ask=False, pending_in=True),
        _S.FROM: StateFields(Subscription.FROM, ask=False, pending_in=False),
        _S.FROM_PENDING_OUT: StateFields(Subscription.FROM, ask=True, pending_in=False),
        _S.BOTH: StateFields(Subscription.BOTH, ask=False, pending_in=False),
    }
)
_STATE_BY_FIELDS = {fields: name for name, fields in STATE_FIELDS.items()}

_USER_SUBSCRIBED = frozenset({Subscription.TO, Subscription.BOTH})
_CONTACT_SUBSCRIBED = frozenset({Subscription.FROM, Subscription.BOTH})


@dataclass(frozen=True, slots=True)
class PairState:
    """The stored state of one (user, contact) pair on the user's server.

    `contact` is the contact's bare JID; it is needed to create the roster item
    when a transition adds the contact to the roster.  `item` is None when the
    contact is not in the user's roster.  `pending_in` records an unanswered
    inbound subscription request (the request stanza itself is the caller's to
    keep, §3.1.3 step 4).

    Raises ValueError if `item.jid` is not `contact`.
    """

    contact: str
    item: RosterItem | None = None
    pending_in: bool = False

    def __post_init__(self) -> None:
        if self.item is not None and self.item.jid != self.contact:
            raise ValueError(f"roster item {self.item.jid!r} is not for contact {self.contact!r}")


def state_name(state: PairState) -> SubscriptionState:
    """Name the pair's state as RFC 6121 Appendix A.1 does.

    'ask' is ignored when the user is already subscribed (to/both) and
    `pending_in` when the contact already is (from/both): A.1 defines no state
    for those combinations, and the tables treat such pairs as "To"/"From"/"Both".
    """
    item = state.item
    subscription = item.subscription if item is not None else Subscription.NONE
    ask = item is not None and item.ask and subscription not in _USER_SUBSCRIBED
    pending_in = state.pending_in and subscription not in _CONTACT_SUBSCRIBED
    return _STATE_BY_FIELDS[StateFields(subscription, ask, pending_in)]


def with_state(
    state: PairState, name: SubscriptionState, *, approved: bool | None = None
) -> PairState:
    """Return `state` moved to the named state, keeping the item's name and groups.

    The roster item is created when the new state needs one (any subscription
    or 'ask', or setting `approved`); it is never removed, so a contact who was
    not in the roster stays out of it in "None" and "None + Pending In".
    `approved` None leaves the pre-approval flag as it is.
    """
    fields = STATE_FIELDS[name]
    item = state.item
    if item is None and (fields.subscription is not Subscription.NONE or fields.ask or approved):
        item = RosterItem(jid=state.contact)
    if item is not None:
        item = replace(
            item,
            subscription=fields.subscription,
            ask=fields.ask,
            approved=item.approved if approved is None else approved,
        )
    return PairState(state.contact, item, fields.pending_in)


class Step(enum.Enum):
    """One thing the caller does after a transition; `Outcome.steps` lists them in order.

    The order satisfies every ordering rule in RFC 6121 §3: store before anything
    leaves the server; "unavailable" to the contact before the "unsubscribed"
    that ends its subscription (§3.2.2: "While the user is still subscribed ...
    (i.e., before the contact's server routes or delivers the presence stanza of
    type "unsubscribed" to the user)"); the stanza before the roster push
    (§3.1.6, §3.2.3, §3.3.3: "This MUST occur before sending the roster push");
    an approval before the push and the presence that follows it (§3.1.5).
    """

    STORE = "store"
    SEND_UNAVAILABLE_TO_CONTACT = "send-unavailable-to-contact"
    DELIVER = "deliver"
    AUTO_REPLY = "auto-reply"
    ROSTER_PUSH = "roster-push"
    SEND_PRESENCE_TO_CONTACT = "send-presence-to-contact"
    PROBE_CONTACT = "probe-contact"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the user's server must do with one subscription stanza.

    - `new_state`: store it if `state_changed`.
    - `deliver`: outbound, stamp the stanza with the user's bare JID and route
      it to the contact; inbound, deliver it to the user's available resources
      (a "subscribe" is also kept, via `pending_in`, for later delivery).
      False means the RFC says MUST NOT or SHOULD NOT: drop it silently.
    - `roster_push`: push `new_state.item` to the user's interested resources
      (§2.1.6); set exactly when the item was created or changed.
    - `auto_reply`: send this type from the user's bare JID to the contact's,
      on the user's behalf.  It is already reflected in `new_state`: route it
      as it is, do not feed it to `outbound()`.
    - `send_presence_to_contact`: send the user's current presence from each
      available resource to the contact (the contact has just been granted a
      subscription, §3.1.5).
    - `send_unavailable_to_contact`: send presence of type "unavailable" from
      each available resource of the user to the contact (its subscription to
      the user has just ended, §3.2.2 step 3, §3.3.3 step 3).
    - `probe_contact`: the user has just become subscribed to the contact; if
      the user has an available resource, probe the contact (§4.3).
    """

    new_state: PairState
    deliver: bool
    roster_push: bool
    state_changed: bool
    auto_reply: SubscriptionStanza | None = None
    send_presence_to_contact: bool = False
    send_unavailable_to_contact: bool = False
    probe_contact: bool = False

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps to take, in the order RFC 6121 §3 requires."""
        wanted = {
            Step.STORE: self.state_changed,
            Step.SEND_UNAVAILABLE_TO_CONTACT: self.send_unavailable_to_contact,
            Step.DELIVER: self.deliver,
            Step.AUTO_REPLY: self.auto_reply is not None,
            Step.ROSTER_PUSH: self.roster_push,
            Step.SEND_PRESENCE_TO_CONTACT: self.send_presence_to_contact,
            Step.PROBE_CONTACT: self.probe_contact,
        }
        return tuple(step for step in Step if wanted[step])


@dataclass(frozen=True, slots=True)
class Row:
    """One row of an Appendix A table, plus the side effects §3 attaches to it.

    `new` None is the RFC's "no state change".  `approved` sets (True) or clears
    (False) the pre-approval flag; None leaves it.  `if_pre_approved` replaces
    this row when the item carries a pre-approval (§3.4.2).
    """

    deliver: bool
    new: SubscriptionState | None = None
    approved: bool | None = None
    auto_reply: SubscriptionStanza | None = None
    send_presence_to_contact: bool = False
    send_unavailable_to_contact: bool = False
    probe_contact: bool = False
    if_pre_approved: Row | None = None


_IGNORE = Row(deliver=False)


# A.2: Server Processing of Outbound Presence Subscription Stanzas.  ("S.N." stands
# for SHOULD NOT and "M.N." for MUST NOT; both are deliver=False here.)

# A.2.1, Table 2: Processing of outbound "subscribe" stanzas.  Every row: ROUTE? MUST.
# "[1] A state change to "pending out" includes setting the 'ask' flag to a value of
# "subscribe" in the user's roster."  §3.1.2: "After locally delivering or remotely
# routing the presence subscription request, the user's server MUST then send a roster
# push to all of the user's interested resources ..."
_OUT_SUBSCRIBE = {
    _S.NONE: Row(True, _S.NONE_PENDING_OUT),  # MUST [1]
    _S.NONE_PENDING_OUT: Row(True),  # MUST, no state change
    _S.NONE_PENDING_IN: Row(True, _S.NONE_PENDING_OUT_IN),  # MUST [1]
    _S.NONE_PENDING_OUT_IN: Row(True),  # MUST, no state change
    _S.TO: Row(True),  # MUST, no state change
    _S.TO_PENDING_IN: Row(True),  # MUST, no state change
    _S.FROM: Row(True, _S.FROM_PENDING_OUT),  # MUST [1]
    _S.FROM_PENDING_OUT: Row(True),  # MUST, no state change
    _S.BOTH: Row(True),  # MUST, no state change
}

# A.2.2, Table 3: Processing of outbound "unsubscribe" stanzas.  Every row: ROUTE? MUST.
# §3.3.2: "The user's server then MUST send a roster push with the updated roster item
# ... where the subscription state is now either "none" or "from"."
_OUT_UNSUBSCRIBE = {
    _S.NONE: Row(True),  # MUST, no state change
    _S.NONE_PENDING_OUT: Row(True, _S.NONE),  # MUST
    _S.NONE_PENDING_IN: Row(True),  # MUST, no state change
    _S.NONE_PENDING_OUT_IN: Row(True, _S.NONE_PENDING_IN),  # MUST
    _S.TO: Row(True, _S.NONE),  # MUST
    _S.TO_PENDING_IN: Row(True, _S.NONE_PENDING_IN),  # MUST
    _S.FROM: Row(True),  # MUST, no state change
    _S.FROM_PENDING_OUT: Row(True, _S.FROM),  # MUST
    _S.BOTH: Row(True, _S.FROM),  # MUST
}

# A.2.3, Table 4: Processing of outbound "subscribed" stanzas.
# "[1] Detailed information regarding subscription pre-approval is provided under
# Section 3.4."  §3.4.2 step 3: "If the contact is in the user's roster with a state of
# "To", "None", or "None + Pending Out", the user's server MUST note the subscription
# pre-approval by setting the 'approved' flag to a value of "true", then push the
# modified roster item ... However, the user's server MUST NOT route the presence stanza
# of type "subscribed" to the contact."  Step 4 does the same for a contact not yet in
# the roster, creating the item with a state of "None".
_PRE_APPROVE = Row(False, approved=True)
# §3.1.5: "The contact's server MUST then also send current presence to the user from
# each of the contact's available resources."  (Our user is that section's contact.)
_APPROVE_TO = {
    _S.NONE_PENDING_IN: _S.FROM,
    _S.NONE_PENDING_OUT_IN: _S.FROM_PENDING_OUT,
    _S.TO_PENDING_IN: _S.BOTH,
}
_OUT_SUBSCRIBED = {
    _S.NONE: _PRE_APPROVE,  # M.N., pre-approval [1]
    _S.NONE_PENDING_OUT: _PRE_APPROVE,  # M.N., pre-approval [1]
    _S.NONE_PENDING_IN: Row(True, _S.FROM, send_presence_to_contact=True),  # MUST
    _S.NONE_PENDING_OUT_IN: Row(True, _S.FROM_PENDING_OUT, send_presence_to_contact=True),
    _S.TO: _PRE_APPROVE,  # M.N., pre-approval [1]
    _S.TO_PENDING_IN: Row(True, _S.BOTH, send_presence_to_contact=True),  # MUST
    # §3.4.2 step 1: "If the contact is in the user's roster with a state of "Both",
    # "From", or "From + Pending Out", the user's server MUST silently ignore the stanza."
    _S.FROM: _IGNORE,  # M.N., no state change
    _S.FROM_PENDING_OUT: _IGNORE,  # M.N., no state change
    _S.BOTH: _IGNORE,  # M.N., no state change
}

# A.2.4, Table 5: Processing of outbound "unsubscribed" stanzas.
# "[1] This event can result in cancellation of a subscription pre-approval, as
# described under Section 3.4."  §3.2.2 step 2: "... and the 'approved' flag is set to
# "true" ..., the contact's server MUST remove the pre-approval and MUST NOT route or
# deliver the presence stanza of type "unsubscribed" to the user."  Every row clears
# 'approved': §3.4.2 keeps it "until and unless the user sends a presence stanza of
# type "unsubscribed" to the contact".
_CANCEL_PRE_APPROVAL = Row(False, approved=False)
# §3.2.2 step 3: "the contact's server MUST route or deliver both presence notifications
# of type "unavailable" and presence stanzas of type "unsubscribed" to the user".  Only
# where a 'from' subscription ends: a requester whose request is denied never had the
# user's presence, and sending it "unavailable" would reveal the user's resources.
_OUT_UNSUBSCRIBED = {
    _S.NONE: _CANCEL_PRE_APPROVAL,  # S.N., no state change [1]
    _S.NONE_PENDING_OUT: _CANCEL_PRE_APPROVAL,  # S.N., no state change [1]
    _S.NONE_PENDING_IN: Row(True, _S.NONE, approved=False),  # MUST
    _S.NONE_PENDING_OUT_IN: Row(True, _S.NONE_PENDING_OUT, approved=False),  # MUST
    _S.TO: _CANCEL_PRE_APPROVAL,  # S.N., no state change [1]
    _S.TO_PENDING_IN: Row(True, _S.TO, approved=False),  # MUST
    _S.FROM: Row(True, _S.NONE, approved=False, send_unavailable_to_contact=True),  # MUST
    _S.FROM_PENDING_OUT: Row(
        True, _S.NONE_PENDING_OUT, approved=False, send_unavailable_to_contact=True
    ),  # MUST
    _S.BOTH: Row(True, _S.TO, approved=False, send_unavailable_to_contact=True),  # MUST
}


# A.3: Server Processing of Inbound Presence Subscription Stanzas.


# A.3.1, Table 6: Processing of inbound "subscribe" stanzas.
# "[1] If the user previously sent presence of type "subscribed" as described under
# Appendix A.2.3 and Section 3.4, then the server MAY auto-reply with "subscribed" and
# change the state to "From" rather than "None + Pending In"."  §3.4.2 makes that a MUST
# for every pre-approved state ("None", "None + Pending Out", "To"): "When the 'approved'
# flag is set to "true", the user's server MUST NOT deliver a presence stanza of type
# "subscribe" from the contact to the user, but instead MUST automatically respond to
# such a stanza on behalf of the user by returning a presence stanza of type
# "subscribed"".  The answer is an approval, so §3.1.5's presence follows it; the
# pre-approval is used up (§3.4.2 leaves keeping it to local policy).
def _honour_pre_approval(new: SubscriptionState) -> Row:
    return Row(
        False,
        new,
        approved=False,
        auto_reply=_T.SUBSCRIBED,
        send_presence_to_contact=True,
    )


# "[2] Server SHOULD auto-reply with "subscribed"."  §3.1.3 step 2: "If the contact exists
# and the user already has a subscription to the contact's presence, then the contact's
# server MUST auto-reply on behalf of the contact by sending a presence stanza of type
# "subscribed"".  The peer has lost its side of the subscription; resend presence too.
_ALREADY_APPROVED = Row(False, auto_reply=_T.SUBSCRIBED, send_presence_to_contact=True)
_IN_SUBSCRIBE = {
    _S.NONE: Row(
        True, _S.NONE_PENDING_IN, if_pre_approved=_honour_pre_approval(_S.FROM)
    ),  # MUST [1]
    _S.NONE_PENDING_OUT: Row(
        True, _S.NONE_PENDING_OUT_IN, if_pre_approved=_honour_pre_approval(_S.FROM_PENDING_OUT)
    ),  # MUST
    _S.NONE_PENDING_IN: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_OUT_IN: _IGNORE,  # S.N., no state change
    _S.TO: Row(True, _S.TO_PENDING_IN, if_pre_approved=_honour_pre_approval(_S.BOTH)),  # MUST
    _S.TO_PENDING_IN: _IGNORE,  # S.N., no state change
    _S.FROM: _ALREADY_APPROVED,  # S.N. [2], no state change
    _S.FROM_PENDING_OUT: _ALREADY_APPROVED,  # S.N. [2], no state change
    _S.BOTH: _ALREADY_APPROVED,  # S.N. [2], no state change
}


# A.3.2, Table 7: Processing of inbound "unsubscribe" stanzas.
# "if the stanza results in a subscription state change from the user's perspective
# then the user's server MUST change the state, MUST deliver the presence stanza from
# the contact to the user, and SHOULD auto-reply by sending a presence stanza of type
# "unsubscribed" to the contact on behalf of the user.  Otherwise the user's server MUST
# NOT change the state and (because there is no state change) SHOULD NOT deliver the
# stanza."  "[1] Server SHOULD auto-reply with "unsubscribed"."
# §3.3.3 step 3, where a 'from' subscription ends: "Generate an outbound presence stanza
# of type "unavailable" from each of the contact's available resources to the user."
def _withdrawn(new: SubscriptionState) -> Row:
    return Row(True, new, auto_reply=_T.UNSUBSCRIBED)


def _ended(new: SubscriptionState) -> Row:
    return Row(True, new, auto_reply=_T.UNSUBSCRIBED, send_unavailable_to_contact=True)


_IN_UNSUBSCRIBE = {
    _S.NONE: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_OUT: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_IN: _withdrawn(_S.NONE),  # MUST [1]
    _S.NONE_PENDING_OUT_IN: _withdrawn(_S.NONE_PENDING_OUT),  # MUST [1]
    _S.TO: _IGNORE,  # S.N., no state change
    _S.TO_PENDING_IN: _withdrawn(_S.TO),  # MUST [1]
    _S.FROM: _ended(_S.NONE),  # MUST [1]
    _S.FROM_PENDING_OUT: _ended(_S.NONE_PENDING_OUT),  # MUST [1]
    _S.BOTH: _ended(_S.TO),  # MUST [1]
}

# A.3.3, Table 8: Processing of inbound "subscribed" stanzas.
# "if there is no pending outbound request for access to the contact's presence
# information, then it MUST NOT change the subscription state and (because there is no
# state change) SHOULD NOT deliver the stanza to the user."  §3.1.6 adds that the user's
# server must then not push the roster either.  Where the user becomes subscribed we
# ask for a probe: §3.1.5 has the contact's server send presence after a manual
# approval, but an automatic one (§3.1.3 step 2, §3.4.2) comes with no such promise.
_IN_SUBSCRIBED = {
    _S.NONE: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_OUT: Row(True, _S.TO, probe_contact=True),  # MUST
    _S.NONE_PENDING_IN: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_OUT_IN: Row(True, _S.TO_PENDING_IN, probe_contact=True),  # MUST
    _S.TO: _IGNORE,  # S.N., no state change
    _S.TO_PENDING_IN: _IGNORE,  # S.N., no state change
    _S.FROM: _IGNORE,  # S.N., no state change
    _S.FROM_PENDING_OUT: Row(True, _S.BOTH, probe_contact=True),  # MUST
    _S.BOTH: _IGNORE,  # S.N., no state change
}

# A.3.4, Table 9: Processing of inbound "unsubscribed" stanzas.
# "if there is a pending outbound request for access to the contact's presence
# information or if the user currently is subscribed to the contact's presence
# information, then the user's server MUST change the subscription state and MUST
# deliver the stanza to the user.  Otherwise, the user's server MUST NOT change the
# subscription state and (because there is no state change) SHOULD NOT deliver the
# stanza."  A denied request leaves the item in the roster with 'ask' cleared.
_IN_UNSUBSCRIBED = {
    _S.NONE: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_OUT: Row(True, _S.NONE),  # MUST
    _S.NONE_PENDING_IN: _IGNORE,  # S.N., no state change
    _S.NONE_PENDING_OUT_IN: Row(True, _S.NONE_PENDING_IN),  # MUST
    _S.TO: Row(True, _S.NONE),  # MUST
    _S.TO_PENDING_IN: Row(True, _S.NONE_PENDING_IN),  # MUST
    _S.FROM: _IGNORE,  # S.N., no state change
    _S.FROM_PENDING_OUT: Row(True, _S.FROM),  # MUST
    _S.BOTH: Row(True, _S.FROM),  # MUST
}


def _table(
    by_stanza: Mapping[SubscriptionStanza, Mapping[SubscriptionState, Row]],
) -> Mapping[tuple[SubscriptionState, SubscriptionStanza], Row]:
    return MappingProxyType(
        {(state, stanza): row for stanza, rows in by_stanza.items() for state, row in rows.items()}
    )


#: Appendix A.2, keyed by (state, stanza type); every one of the 36 pairs is present.
OUTBOUND_TABLE = _table(
    {
        _T.SUBSCRIBE: _OUT_SUBSCRIBE,
        _T.UNSUBSCRIBE: _OUT_UNSUBSCRIBE,
        _T.SUBSCRIBED: _OUT_SUBSCRIBED,
        _T.UNSUBSCRIBED: _OUT_UNSUBSCRIBED,
    }
)
#: Appendix A.3, keyed by (state, stanza type); every one of the 36 pairs is present.
INBOUND_TABLE = _table(
    {
        _T.SUBSCRIBE: _IN_SUBSCRIBE,
        _T.UNSUBSCRIBE: _IN_UNSUBSCRIBE,
        _T.SUBSCRIBED: _IN_SUBSCRIBED,
        _T.UNSUBSCRIBED: _IN_UNSUBSCRIBED,
    }
)


def _apply(state: PairState, row: Row) -> Outcome:
    if row.new is None and row.approved is None:
        new_state = state
    else:
        new_state = with_state(state, row.new or state_name(state), approved=row.approved)
    return Outcome(
        new_state=new_state,
        deliver=row.deliver,
        roster_push=new_state.item != state.item,
        state_changed=new_state != state,
        auto_reply=row.auto_reply,
        send_presence_to_contact=row.send_presence_to_contact,
        send_unavailable_to_contact=row.send_unavailable_to_contact,
        probe_contact=row.probe_contact,
    )


def outbound(state: PairState, stanza: SubscriptionStanza, *, pre_approval: bool = True) -> Outcome:
    """Process a subscription stanza the user sent to the contact (RFC 6121 A.2).

    `pre_approval` says whether this server supports and advertises §3.4
    pre-approvals.  Without it an outbound "subscribed" that approves no
    pending request is dropped with no state change ("the client MUST NOT
    attempt to pre-approve", §3.4.1).
    """
    row = OUTBOUND_TABLE[state_name(state), stanza]
    if row.approved and not pre_approval:
        row = _IGNORE
    return _apply(state, row)


def inbound(state: PairState, stanza: SubscriptionStanza) -> Outcome:
    """Process a subscription stanza the contact sent to the user (RFC 6121 A.3)."""
    row = INBOUND_TABLE[state_name(state), stanza]
    if row.if_pre_approved is not None and state.item is not None and state.item.approved:
        row = row.if_pre_approved
    return _apply(state, row)


_PRE_APPROVABLE = frozenset(state for state, row in _OUT_SUBSCRIBED.items() if row is _PRE_APPROVE)


def pre_approve(state: PairState) -> Outcome:
    """Record a pre-approval of the contact's future subscription request (§3.4.2 steps 3-4).

    This is what `outbound()` does with "subscribed" in "None", "None + Pending
    Out" and "To", for callers that pre-approve without a stanza (e.g. an
    admin adding a contact).  Raises ValueError in any other state: there a
    "subscribed" is either a real approval (a request is pending) or ignored
    (the contact is already subscribed).
    """
    name = state_name(state)
    if name not in _PRE_APPROVABLE:
        raise ValueError(f"cannot pre-approve {state.contact!r} in state {name.value!r}")
    return _apply(state, _PRE_APPROVE)
