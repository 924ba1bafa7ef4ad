"""One login gate for every protocol: brute-force protection, the verdict's log line
and its count, whichever protocol carried the credentials.

SASL and XEP-0078 (`xmpp/c2s.py`, `modules/legacy_auth.py`) and the media-server
hooks all go through the same sequence: ask the throttle whether this attempt may
be evaluated (`enter`), evaluate it (the caller, or `check_password` for a
credential checked in one step), then settle it exactly once: `succeeded`,
`failed` (a wrong guess is held, see `auth/throttle/login.py`), `released` (no
verdict: the provider was down, a registration awaits approval) or, for an
attempt that waited for its client, `client_left`.

The gate knows no transport: the caller names its protocol (``"xmpp"``,
``"nginx-rtmp"``), the mechanism or method, the claimed identity and the client
address it vouches for (a TCP peer, or the ``addr`` a media server reports).
What it must not do: log or keep a secret, ask whether an account exists, or
let peer text grow a table (counted mechanism names are bounded by the names it
was told; anything else counts as ``"other"``).

State lives behind interfaces a shared store can implement: the throttle
(`LoginThrottle`) and the counters (`LoginCounters`).  Time is the running
loop's monotonic clock unless a clock is given (tests).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from chatgate.auth.internal import ACCOUNT_LOCKED, InternalProvider
from chatgate.auth.throttle import LoginThrottle, Refuse, throttle_account

if TYPE_CHECKING:
    from chatgate.auth.password_memo import PasswordMemo
    from chatgate.auth.provider import CredentialProvider

__all__ = [
    "OTHER",
    "Attempt",
    "Decision",
    "LocalLoginCounters",
    "LoginCounters",
    "LoginGate",
    "Outcome",
    "Proof",
    "Reason",
    "verify_password",
]

log = logging.getLogger(__name__)

#: What an unknown (or over-long) mechanism name is counted as.
OTHER: Final = "other"
#: Longest mechanism name counted under its own name (RFC 4422 §3.1 allows 20).
_MAX_MECHANISM = 64
#: The condition of a wrong credential, as SASL and XEP-0078 name it.
NOT_AUTHORIZED: Final = "not-authorized"


class Outcome(enum.Enum):
    """How an attempt ended, for the counters."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a wrong guess, counted by brute-force protection
    REJECTED = "rejected"  # failed, but no guess (a protocol error, an abort, a refusal)
    THROTTLED = "throttled"  # refused unevaluated: every slot was taken
    RELEASED = "released"  # no verdict (provider outage, registration awaiting approval)
    LEFT = "left"  # the client went away while its attempt waited for it


class LoginCounters(Protocol):
    """Login outcomes per (protocol, mechanism, outcome); keys are few and bounded
    (the gate guards mechanism names).  A shared store (a Redis hash, a PostgreSQL
    table) implements the same two calls."""

    def increment(self, protocol: str, mechanism: str, outcome: Outcome) -> None: ...

    def snapshot(self) -> Mapping[tuple[str, str, Outcome], int]:
        """The counts so far (a copy); they only grow."""
        ...


class LocalLoginCounters:
    """`LoginCounters` in this process."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: defaultdict[tuple[str, str, Outcome], int] = defaultdict(int)

    def increment(self, protocol: str, mechanism: str, outcome: Outcome) -> None:
        self._counts[protocol, mechanism, outcome] += 1

    def snapshot(self) -> dict[tuple[str, str, Outcome], int]:
        return dict(self._counts)


class Attempt:
    """One login attempt between `LoginGate.enter` and its settlement.

    `reserved`: it holds a throttle slot (certificate identities and anonymous
    logins are not throttled).  `account` is the throttle's key for the claimed
    identity.  An attempt is settled at most once; later settling calls are
    no-ops, so a path that reports twice cannot count twice."""

    __slots__ = (
        "account",
        "address",
        "counted_as",
        "domain",
        "mechanism",
        "protocol",
        "reserved",
        "settled",
        "username",
    )

    def __init__(
        self,
        protocol: str,
        mechanism: str,
        counted_as: str,
        username: str | None,
        domain: str,
        address: str | None,
        reserved: bool,
    ) -> None:
        self.protocol = protocol
        #: the name logged (as the client chose it); `counted_as` is its bounded form
        self.mechanism = mechanism
        self.counted_as = counted_as
        self.username = username
        self.domain = domain
        #: `throttle_account(username, domain)`, inlined (one call fewer per login)
        self.account = None if username is None else f"{username}@{domain}"
        self.address = address
        self.reserved = reserved
        self.settled = False

    def __repr__(self) -> str:
        state = "settled" if self.settled else "reserved" if self.reserved else "unthrottled"
        return f"<Attempt {self.protocol} {self.mechanism} {self.account} {state}>"


class Reason(enum.Enum):
    """Why `check_password` decided as it did."""

    ALLOWED = "allowed"
    WRONG_CREDENTIALS = "wrong-credentials"  # unknown users too: callers must not tell
    THROTTLED = "throttled"
    UNAVAILABLE = "unavailable"  # the credential provider failed: try again later
    AWAITING_APPROVAL = "awaiting-approval"  # the right password of a held registration
    ACCOUNT_DISABLED = "account-disabled"  # the right password of a locked account


@dataclass(frozen=True, slots=True)
class Decision:
    """`check_password`'s answer.  `hold`: seconds to wait before answering a
    WRONG_CREDENTIALS denial (brute-force protection holds only failures), or after
    which a THROTTLED client may try again.  `text` may be shown to the client."""

    allowed: bool
    reason: Reason
    hold: float = 0.0
    text: str = ""


@dataclass(frozen=True, slots=True)
class Proof:
    """What a caller's check of a bearer secret (a stream key, a signed token) found,
    for `LoginGate.check_secret`.  `username`: the prepared localpart it proves,
    when it names an account; `reason`: why it is refused, for the log (never the
    secret)."""

    valid: bool
    username: str | None = None
    reason: str = ""


_ALLOWED = Decision(True, Reason.ALLOWED)
_UNAVAILABLE = Decision(False, Reason.UNAVAILABLE, text="try again later")


_running_loop = asyncio.get_running_loop


class _Claimed(enum.Enum):
    """`LoginGate.failed`'s default: report the failure under the claimed name."""

    CLAIMED = "claimed"


async def verify_password(
    provider: CredentialProvider, username: str, domain: str, password: str
) -> tuple[bool, str | None]:
    """(right, held text): the provider's verdict on `password`; for our own store,
    the text for the right password of a registration awaiting approval
    (`InternalProvider.verify_password_or_held`).  Raises what the provider raises."""
    if isinstance(provider, InternalProvider):
        return await provider.verify_password_or_held(username, domain, password)
    return await provider.verify_password(username, domain, password), None


class LoginGate:
    """Throttle, settle, log and count login attempts; see the module docstring.

    `mechanisms`: the names counted as themselves (the configured SASL list, the
    legacy methods; `know` adds more); `clock`: monotonic seconds, the running
    loop's by default."""

    def __init__(
        self,
        throttle: LoginThrottle,
        counters: LoginCounters | None = None,
        *,
        mechanisms: Iterable[str] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.throttle = throttle
        self.counters: LoginCounters = LocalLoginCounters() if counters is None else counters
        self._count = self.counters.increment  # bound once: called for every login
        self._known: set[str] = set()
        self.know(*mechanisms)
        self._clock = clock

    def know(self, *mechanisms: str) -> None:
        """Count these mechanism names as themselves (names from code or configuration,
        never from a peer)."""
        self._known.update(m for m in mechanisms if 0 < len(m) <= _MAX_MECHANISM)

    def _counted_as(self, mechanism: str) -> str:
        return mechanism if mechanism in self._known else OTHER

    def _now(self) -> float:
        clock = self._clock
        return _running_loop().time() if clock is None else clock()

    # ------------------------------------------------------------ entering

    def enter(
        self,
        protocol: str,
        mechanism: str,
        username: str | None,
        domain: str,
        address: str | None,
    ) -> Attempt | Refuse:
        """Ask brute-force protection whether this attempt may be evaluated now.  An
        `Attempt` holds a slot until it is settled; a `Refuse` (counted) says when
        one frees: answer it unevaluated, as the protocol says a temporary failure."""
        # `_counted_as` and `_now`, inlined: this runs for every login.
        counted_as = mechanism if mechanism in self._known else OTHER
        attempt = Attempt(protocol, mechanism, counted_as, username, domain, address, True)
        clock = self._clock
        now = _running_loop().time() if clock is None else clock()
        verdict = self.throttle.check(address, attempt.account, now)
        if isinstance(verdict, Refuse):
            self._count(protocol, attempt.counted_as, Outcome.THROTTLED)
            return verdict
        return attempt

    def unthrottled(
        self,
        protocol: str,
        mechanism: str,
        username: str | None,
        domain: str,
        address: str | None,
    ) -> Attempt:
        """An attempt that takes no slot: a certificate identity (the TLS handshake
        proved it), an anonymous login, or a failure before any credential was asked
        for.  Its settlement is still logged and counted; a wrong guess too."""
        return Attempt(
            protocol, mechanism, self._counted_as(mechanism), username, domain, address, False
        )

    # ------------------------------------------------------------ settling

    def succeeded(self, attempt: Attempt, username: str, *, trust: bool = True) -> None:
        """The attempt proved `username` (which may differ from the claimed name):
        free its slot, forgive this address's failures against the account and
        trust the pair (`LoginThrottle.succeeded`).  `trust=False` (an anonymous
        identity) records no trust, only frees a slot it held: a throwaway name
        earns no trust."""
        if attempt.settled:
            return
        attempt.settled = True
        if trust:
            account = attempt.account
            if username != attempt.username or account is None:
                account = f"{username}@{attempt.domain}"
            clock = self._clock  # `_now`, inlined: this runs for every login
            now = _running_loop().time() if clock is None else clock()
            self.throttle.succeeded(attempt.address, account, now, reserved=attempt.reserved)
        elif attempt.reserved:
            self.throttle.released(attempt.address, attempt.account, self._now())
        self._count(attempt.protocol, attempt.counted_as, Outcome.SUCCEEDED)

    def failed(
        self,
        attempt: Attempt,
        reason: str,
        *,
        guess: bool = True,
        username: str | _Claimed | None = _Claimed.CLAIMED,
        mechanism: str | None = None,
    ) -> float:
        """Log a failed attempt and, when it was a `guess` at a credential, count it
        for brute-force protection.  Returns how long to hold the failure's answer
        (seconds; its slot stays taken as long).  A failure that is no guess (a
        protocol error, an abort, right credentials that may not log in yet, the
        throttle's own refusal) frees the slot uncounted and is answered at once.

        `reason` is the protocol's condition (``not-authorized``); `username` the
        name the failure is reported under when the protocol names one other than
        the claimed one (None: none); `mechanism` the name to log, when it is not
        the attempt's."""
        if attempt.settled:
            return 0.0
        attempt.settled = True
        if username is _Claimed.CLAIMED:
            account = attempt.account
        else:
            account = throttle_account(username, attempt.domain)
        address = attempt.address
        log.info(
            "authentication failed: mechanism=%s condition=%s user=%s address=%s",
            attempt.mechanism if mechanism is None else mechanism,
            reason,
            account or "-",
            address or "-",
        )
        now = self._now()
        if not guess:
            if attempt.reserved:
                self.throttle.released(address, account, now)
            self._count(attempt.protocol, attempt.counted_as, Outcome.REJECTED)
            return 0.0
        record = self.throttle.failed(address, account, now, reserved=attempt.reserved)
        self._count(attempt.protocol, attempt.counted_as, Outcome.FAILED)
        if record.should_log:
            log.warning(
                "brute-force protection: address=%s user=%s failures=%d account_failures=%d"
                " hold=%.1fs events=%s",
                address or "-",
                account or "-",
                record.address_failures,
                record.account_failures,
                record.delay,
                ",".join(e.value for e in record.events),
            )
        return record.delay

    def released(self, attempt: Attempt) -> None:
        """The attempt ended without a verdict on a guess (the provider was down, a
        registration awaits approval): free its slot, count no failure."""
        if attempt.settled:
            return
        attempt.settled = True
        if attempt.reserved:
            self.throttle.released(attempt.address, attempt.account, self._now())
        self._count(attempt.protocol, attempt.counted_as, Outcome.RELEASED)

    def parked(self, attempt: Attempt) -> None:
        """The attempt now waits for its client (SCRAM sent its challenge): it keeps
        its slot, but `client_left` will free it uncounted.  Settles nothing."""
        if attempt.reserved and not attempt.settled:
            clock = self._clock  # `_now`, inlined: this runs for every SCRAM login
            now = _running_loop().time() if clock is None else clock()
            self.throttle.parked(attempt.address, attempt.account, now)

    def client_left(self, attempt: Attempt) -> bool:
        """The client went away before a verdict.  A parked attempt (or one holding no
        slot) is settled, uncounted: True.  One whose credentials are still being
        evaluated stays open (False): its caller reports it, as a failure, when the
        evaluation ends (the client may have read the silence as "wrong")."""
        if attempt.settled:
            return True
        if attempt.reserved and not self.throttle.client_left(
            attempt.address, attempt.account, self._now()
        ):
            return False
        attempt.settled = True
        self._count(attempt.protocol, attempt.counted_as, Outcome.LEFT)
        return True

    # ------------------------------------------------------------ one-step checks

    async def check_password(
        self,
        provider: CredentialProvider,
        protocol: str,
        username: str,
        domain: str,
        password: str,
        address: str | None,
        mechanism: str = "PLAIN",
        memo: PasswordMemo | None = None,
    ) -> Decision:
        """Enter, check `password` with the provider, settle: the whole login of a
        protocol whose credential is checked in one step (a media server's hook).

        `username` is a prepared localpart (`jid.prepare_username`); `address` the
        client address the caller vouches for.  The password is handed to the
        provider (and to the `memo`'s keyed hash) and nowhere else: never logged,
        never kept.  A provider that raises is UNAVAILABLE (logged with its
        traceback, the slot freed), never a wrong password.  A caller cancelled
        while the check runs (its client hung up) has its attempt counted as a
        failure, as SASL counts an abandoned one.  With a `memo`, a password it
        remembers is right without asking the provider (`auth/password_memo.py`),
        and one the provider finds right is remembered."""
        entered = self.enter(protocol, mechanism, username, domain, address)
        if isinstance(entered, Refuse):
            return Decision(
                False, Reason.THROTTLED, entered.retry_after, "too many login attempts at once"
            )
        attempt = entered
        if memo is not None and memo.knows(username, domain, password):
            self.succeeded(attempt, username)
            return _ALLOWED
        try:
            right, held = await verify_password(provider, username, domain, password)
        except asyncio.CancelledError:
            self.failed(attempt, NOT_AUTHORIZED, mechanism=f"{mechanism} (abandoned)")
            raise
        except Exception:
            log.exception(
                "credential provider failed for %s@%s (%s %s)",
                username,
                domain,
                protocol,
                mechanism,
            )
            self.released(attempt)
            return _UNAVAILABLE
        if held is not None:
            self.released(attempt)
            if held == ACCOUNT_LOCKED:
                log.info("login of %s@%s refused: account locked (%s)", username, domain, protocol)
                return Decision(False, Reason.ACCOUNT_DISABLED, text=held)
            log.info("login of %s@%s held: awaiting approval (%s)", username, domain, protocol)
            return Decision(False, Reason.AWAITING_APPROVAL, text=held)
        if not right:
            hold = self.failed(attempt, NOT_AUTHORIZED)
            return Decision(False, Reason.WRONG_CREDENTIALS, hold, "not authorized")
        self.succeeded(attempt, username)
        if memo is not None:
            memo.remember(username, domain, password)
        log.info(
            "%s@%s authenticated with %s over %s from %s",
            username,
            domain,
            mechanism,
            protocol,
            address or "-",
        )
        return _ALLOWED

    async def check_secret(
        self,
        protocol: str,
        mechanism: str,
        domain: str,
        address: str | None,
        check: Callable[[], Awaitable[Proof]],
    ) -> tuple[Decision, Proof]:
        """Enter, run `check`, settle: a bearer secret checked in one step (a stream
        key, a signed token), which names no account before it is checked.

        Brute-force protection therefore keys on the address alone when entering;
        a wrong secret is a counted guess from that address, held like a wrong
        password.  A valid one that proves an account trusts the (address,
        account) pair as a password login does; one that proves none (a token
        without a user) only frees its slot.  `check` raising is UNAVAILABLE, as
        a provider's failure in `check_password`."""
        entered = self.enter(protocol, mechanism, None, domain, address)
        if isinstance(entered, Refuse):
            decision = Decision(
                False, Reason.THROTTLED, entered.retry_after, "too many login attempts at once"
            )
            return decision, Proof(False, reason="throttled")
        attempt = entered
        try:
            proof = await check()
        except asyncio.CancelledError:
            self.failed(attempt, NOT_AUTHORIZED, mechanism=f"{mechanism} (abandoned)")
            raise
        except Exception:
            log.exception("%s check failed (%s)", mechanism, protocol)
            self.released(attempt)
            return _UNAVAILABLE, Proof(False, reason="unavailable")
        if not proof.valid:
            hold = self.failed(attempt, NOT_AUTHORIZED, mechanism=f"{mechanism} ({proof.reason})")
            return Decision(False, Reason.WRONG_CREDENTIALS, hold, "not authorized"), proof
        if proof.username is None:
            self.succeeded(attempt, "", trust=False)
        else:
            self.succeeded(attempt, proof.username)
        return _ALLOWED, proof
