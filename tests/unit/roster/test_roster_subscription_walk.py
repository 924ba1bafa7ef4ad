"""Two servers, each holding its own side of a pair, exchanging subscription stanzas.

The walks follow the flows narrated in RFC 6121 §3: each user's server runs
`outbound()` on what its user sends and `inbound()` on what arrives, and routes
a stanza only when the outcome says so.
"""

from __future__ import annotations

from chatgate.modules.roster.subscription import (
    Outcome,
    PairState,
    SubscriptionStanza,
    SubscriptionState,
    inbound,
    outbound,
    state_name,
)
from chatgate.storage.records import RosterItem, Subscription


class TwoServers:
    """Each user's server holds its own PairState; stanzas travel between them."""

    def __init__(self, *users: str) -> None:
        self.pairs = {(u, c): PairState(c) for u in users for c in users if u != c}
        self.delivered: list[tuple[str, SubscriptionStanza]] = []

    def send(self, sender: str, to: str, stanza: SubscriptionStanza) -> Outcome:
        sent = outbound(self.pairs[sender, to], stanza)
        self.pairs[sender, to] = sent.new_state
        if sent.deliver:
            received = inbound(self.pairs[to, sender], stanza)
            self.pairs[to, sender] = received.new_state
            if received.deliver:
                self.delivered.append((to, stanza))
            if received.auto_reply is not None:
                # Sent on the recipient's behalf, already reflected in its state.
                reply = inbound(self.pairs[sender, to], received.auto_reply)
                self.pairs[sender, to] = reply.new_state
                if reply.deliver:
                    self.delivered.append((sender, received.auto_reply))
        return sent

    def state(self, user: str, contact: str) -> SubscriptionState:
        return state_name(self.pairs[user, contact])


ALICE = "alice@a.example"
BOB = "bob@b.example"


def test_full_mutual_subscription_walk() -> None:
    net = TwoServers(ALICE, BOB)
    sub, subd = SubscriptionStanza.SUBSCRIBE, SubscriptionStanza.SUBSCRIBED

    net.send(ALICE, BOB, sub)  # §3.1.1
    assert net.state(ALICE, BOB) is SubscriptionState.NONE_PENDING_OUT
    assert net.state(BOB, ALICE) is SubscriptionState.NONE_PENDING_IN
    assert net.pairs[BOB, ALICE].item is None  # not in Bob's roster until he approves

    approval = net.send(BOB, ALICE, subd)  # §3.1.4
    assert approval.send_presence_to_contact
    assert net.state(BOB, ALICE) is SubscriptionState.FROM
    assert net.state(ALICE, BOB) is SubscriptionState.TO

    net.send(BOB, ALICE, sub)  # §3.1.5: "the contact would then need to send a ... request"
    assert net.state(BOB, ALICE) is SubscriptionState.FROM_PENDING_OUT
    assert net.state(ALICE, BOB) is SubscriptionState.TO_PENDING_IN

    net.send(ALICE, BOB, subd)
    assert net.state(ALICE, BOB) is SubscriptionState.BOTH
    assert net.state(BOB, ALICE) is SubscriptionState.BOTH
    assert net.delivered == [(BOB, sub), (ALICE, subd), (ALICE, sub), (BOB, subd)]
    for user, contact in ((ALICE, BOB), (BOB, ALICE)):
        pair = net.pairs[user, contact]
        assert pair.item == RosterItem(jid=contact, subscription=Subscription.BOTH)
        assert not pair.pending_in


def test_preapproved_subscription_walk() -> None:
    net = TwoServers(ALICE, BOB)

    net.send(BOB, ALICE, SubscriptionStanza.SUBSCRIBED)  # §3.4.1 pre-approval, not routed
    assert net.pairs[ALICE, BOB] == PairState(BOB)
    net.send(ALICE, BOB, SubscriptionStanza.SUBSCRIBE)

    assert net.state(ALICE, BOB) is SubscriptionState.TO
    assert net.state(BOB, ALICE) is SubscriptionState.FROM
    assert net.delivered == [(ALICE, SubscriptionStanza.SUBSCRIBED)]  # Bob was never asked


def test_mutual_unsubscribe_walk_returns_to_none() -> None:
    net = TwoServers(ALICE, BOB)
    for sender, to in ((ALICE, BOB), (BOB, ALICE)):
        net.send(sender, to, SubscriptionStanza.SUBSCRIBE)
        net.send(to, sender, SubscriptionStanza.SUBSCRIBED)
    assert net.state(ALICE, BOB) is net.state(BOB, ALICE) is SubscriptionState.BOTH

    net.send(ALICE, BOB, SubscriptionStanza.UNSUBSCRIBE)  # §3.3
    assert net.state(ALICE, BOB) is SubscriptionState.FROM
    assert net.state(BOB, ALICE) is SubscriptionState.TO

    net.send(ALICE, BOB, SubscriptionStanza.UNSUBSCRIBED)  # §3.2
    assert net.state(ALICE, BOB) is SubscriptionState.NONE
    assert net.state(BOB, ALICE) is SubscriptionState.NONE
    assert net.pairs[ALICE, BOB].item is not None  # items stay until a roster remove
