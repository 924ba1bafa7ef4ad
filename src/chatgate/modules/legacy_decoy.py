"""What XEP-0078's IQ-get offers a username that has no account: what accounts get.

An account is offered <digest/> when it holds a digest secret and a
<sequence/> and <token/> when it holds a zero-knowledge chain with logins
left.  Which of these an account holds depends on the settings when its
password was last set: after `digest` is switched on, older accounts hold no
digest secret until their next password set or plaintext login (and are not
offered the method, or their clients would pick it and fail).  So one fixed
answer for unknown names would single out the accounts that answer otherwise.

Instead each unknown name is given one of the kinds of answer accounts get, in
the proportions the domain's accounts have them (`LegacyCensus`, counted again
every `CENSUS_TTL` seconds), chosen by an HMAC of the name under an
installation secret: the same name gets the same answer on every query, in
every process and after a restart, as an account does.  A domain without
accounts answers as an account made now would be: every configured method.
A fake chain is announced with a token and a sequence a fresh chain could
have.

The choice (`LegacyDecoy`) is pure; `CensusCache` is the module's memory of
the counts, refreshed in the request that finds them old (whether the name
exists or not, so the refresh's cost tells nothing about the name).  The
censuses of two processes (cluster nodes) counted at different moments differ
by the accounts made in between; the choice moves a name to another kind only
when it sits near a border that moved, so answers from two nodes agree for all
but that fraction of names.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatgate.storage.repositories.legacy import ZeroKnowledgeChain
from chatgate.storage.repositories.legacy_census import LegacyCensus

__all__ = ["CENSUS_TTL", "SECRET_NAME", "CensusCache", "DecoyAnswer", "LegacyDecoy"]

#: The installation secret (`SecretStore`) that keys every decoy answer.
SECRET_NAME = "legacy-auth-decoy"
#: Seconds a domain's census is used before it is counted again.
CENSUS_TTL = 300.0
#: The order in which kinds of accounts share out the HMAC's range: fixed, so
#: that every process maps a name to the same kind.
_KINDS = ((True, True), (True, False), (False, True), (False, False))


@dataclass(frozen=True, slots=True)
class DecoyAnswer:
    """What to offer an unknown name: <digest/>, and a zero-knowledge chain or not."""

    digest: bool
    chain: ZeroKnowledgeChain | None


class LegacyDecoy:
    """Chooses an unknown name's answer; never awaits, never reads the clock."""

    def __init__(self, secret: bytes, *, digest: bool, zero_knowledge: bool, sequence: int) -> None:
        if not secret:
            raise ValueError("the decoy secret cannot be empty")
        self._secret = secret
        self._digest = digest
        self._zero_knowledge = zero_knowledge
        self._sequence = sequence

    def answer(self, username: str, domain: str, census: LegacyCensus) -> DecoyAnswer:
        """The answer for `username@domain`, which has no account, given `census`."""
        has_digest, has_chain = self.kind(username, domain, census)
        digest = self._digest and has_digest
        chain = self.chain(username, domain) if self._zero_knowledge and has_chain else None
        return DecoyAnswer(digest, chain)

    def kind(self, username: str, domain: str, census: LegacyCensus) -> tuple[bool, bool]:
        """Which kind of account `username` passes for: (digest secret, chain), drawn
        with the census's proportions."""
        total = census.total
        if total == 0:
            return (True, True)  # an account made now holds whatever is configured
        # The name's fixed place in [0, 1), scaled to the census: a census that moved
        # by a few accounts moves the kinds' borders by as little, so few names change
        # kind (a remainder modulo the total would re-deal almost every name).  Nodes
        # of a cluster count their censuses at different moments: an unknown name must
        # not answer one way on one node and another way on the next.
        point = (int.from_bytes(self._mac(b"kind", username, domain)[:8], "big") * total) >> 64
        for kind in _KINDS:
            point -= census.counts.get(kind, 0)
            if point < 0:
                return kind
        raise AssertionError("unreachable: the census counts add up to its total")

    def chain(self, username: str, domain: str) -> ZeroKnowledgeChain:
        """A chain a fresh one could be: 8 hex digits of token, a sequence a few
        logins below the configured start (hash empty: no login can match it)."""
        mac = self._mac(b"chain", username, domain)
        sequence = max(self._sequence - mac[0] % 16, 1)
        return ZeroKnowledgeChain(mac[1:5].hex().upper(), sequence, "")

    def _mac(self, label: bytes, username: str, domain: str) -> bytes:
        message = b"\0".join((label, domain.encode("utf-8"), username.encode("utf-8")))
        return hmac.digest(self._secret, message, "sha256")


class CensusCache:
    """Each domain's `LegacyCensus`, counted again once it is `ttl` seconds old."""

    def __init__(
        self, count: Callable[[str], Awaitable[LegacyCensus]], ttl: float = CENSUS_TTL
    ) -> None:
        self._count = count
        self._ttl = ttl
        self._entries: dict[str, tuple[LegacyCensus, float]] = {}

    async def get(self, domain: str, now: float) -> LegacyCensus:
        entry = self._entries.get(domain)
        if entry is not None and now < entry[1]:
            return entry[0]
        census = await self._count(domain)
        self._entries[domain] = (census, now + self._ttl)
        return census
