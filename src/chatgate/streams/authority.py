"""The stream authority's core: one answer to every media server's question,
whichever adapter read it (`adapters/`), on the same accounts as chat.

The order of the checks, for a publish, a play or their renewal:

1. **Who asks.**  The credentials the client brought decide the `Subject`:
   none is anonymous; a password goes through the login gate
   (`auth/gate.py`: brute-force protection per address and per account, the
   provider, the log line and the count, as an XMPP login); a stream key is
   looked up (`StreamKeys`); a token is verified (`tokens.verify`, bound to this
   stream, this action and, if it says so, the client's address; a one-time
   token is claimed for this client, so its renewals pass and nobody else's
   use does).  Keys and tokens pass the gate too (`LoginGate.check_secret`):
   a wrong one is a counted guess from the client's address.  Credentials
   that are present but wrong deny at once: they are never downgraded to
   anonymous, so a typo cannot reach a public stream under someone else's
   name, and an attacker learns nothing from the difference.
2. **May they.**  The rules (`policy.RuleSet`) decide; no rule denies.  A
   denial of a caller who brought no credentials is `unauthenticated` (MediaMTX
   then answers 401, and RTSP clients retry with credentials).
3. **Is it free.**  A publish is recorded in the live registry
   (`live.LiveStreams`): one publisher per stream.  A play is counted.

A renewal (nginx-rtmp's ``on_update``) is checked as the start was, with the
rules, keys and tokens in force now; when it is refused the media server ends
the session and the registry forgets it: that is how revoking a key, a token or
a right ends a live publish.  The dones only update the registry.  A connect is allowed unless the
credentials it carries are wrong (nginx-rtmp sends them there only when the
client put them on the application).  The media server's own administration
(MediaMTX api, metrics, pprof) is denied: chatgate does not manage it.  Wowza's
token provider asks for a user's stream key, which is revealed only to a
Wowza adapter configured with the shared secret (the adapter checks it).

Nothing here reads the network; time comes from `clock` (Unix seconds).
Every decision is logged without its secret: who (the account, "anonymous" or
"token"), the stream, the adapter, allowed or denied and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from chatgate.auth.gate import Decision, Proof, Reason, verify_password
from chatgate.auth.internal import InternalProvider
from chatgate.jid import InvalidJID, prepare_username
from chatgate.streams import tokens
from chatgate.streams.adapters.base import (
    CredentialKind,
    HookAction,
    Question,
    Verdict,
)
from chatgate.streams.counters import DecisionCounters, LocalDecisionCounters
from chatgate.streams.live import LiveStreams
from chatgate.streams.policy import RuleSet, Subject, SubjectKind
from chatgate.streams.rulebook import RuleBook
from chatgate.streams.stores import OneTimeTokens, RevokedTokens, StreamKeys

if TYPE_CHECKING:
    from chatgate.auth.gate import LoginGate
    from chatgate.auth.password_memo import PasswordMemo
    from chatgate.auth.provider import CredentialProvider

log = logging.getLogger(__name__)

#: the login gate's protocol name for every hook: one throttle for them all
PROTOCOL = "stream-hook"


class Groups(Protocol):
    """The groups an account belongs to, for `group:` rules."""

    async def of(self, account: str) -> frozenset[str]: ...


class NoGroups:
    async def of(self, account: str) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True, slots=True)
class Answer:
    """The authority's verdict and, for a wrong password, how long to hold it
    (brute-force protection delays only failures: the route waits that long
    before answering)."""

    verdict: Verdict
    hold: float = 0.0


_ALLOWED = Answer(Verdict.allow())


class _Denied(Exception):
    """A check failed: the answer to send, already logged."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.verdict.reason)
        self.answer = answer


class StreamAuthority:
    """Answers `Question`s (module docstring)."""

    def __init__(
        self,
        *,
        domain: str,
        gate: LoginGate,
        provider: CredentialProvider,
        rules: RuleBook | RuleSet,
        live: LiveStreams,
        keys: StreamKeys,
        token_keys: Mapping[int, bytes],
        one_time: OneTimeTokens | None = None,
        revoked: RevokedTokens | None = None,
        memo: PasswordMemo | None = None,
        groups: Groups | None = None,
        counters: DecisionCounters | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.domain = domain
        self.gate = gate
        self.provider = provider
        self.rules = rules if isinstance(rules, RuleBook) else _FixedRules(rules)
        self.live = live
        self.keys = keys
        self.token_keys = token_keys
        self.one_time = one_time
        self.revoked = revoked
        #: passwords proven right, until credentials change (`auth/password_memo.py`)
        self.memo = memo
        self.groups: Groups = groups if groups is not None else NoGroups()
        self.counters: DecisionCounters = (
            counters if counters is not None else LocalDecisionCounters()
        )
        self.clock = clock

    async def answer(self, question: Question) -> Answer:
        answer = await self._answer(question)
        self.counters.increment(question.adapter, question.action.value, answer.verdict.kind.value)
        return answer

    async def _answer(self, question: Question) -> Answer:
        action = question.action
        if action is HookAction.PUBLISH_DONE or action is HookAction.PLAY_DONE:
            await self._done(question)
            return _ALLOWED
        if action is HookAction.ADMIN:
            return self._deny(question, "-", "the media server's administration is not chatgate's")
        if action is HookAction.STREAM_KEY:
            return await self._reveal(question)
        try:
            subject, credential = await self._subject(question)
        except _Denied as denied:
            await self._renewal_refused(question)
            return denied.answer
        if action is HookAction.CONNECT:
            return _ALLOWED
        answer = await self._stream(question, subject, credential)
        if not answer.verdict.allowed:
            await self._renewal_refused(question)
        return answer

    async def _renewal_refused(self, q: Question) -> None:
        """A renewal (nginx-rtmp's ``on_update``) was refused: the media server
        now ends that session, so the registry forgets it (a revoked key, token or
        right ends a live publish within one update period)."""
        if q.action is HookAction.UPDATE_PUBLISH and q.stream and q.client_id:
            await self.live.publish_done(q.stream, q.client_id, q.node)
        elif q.action is HookAction.UPDATE_PLAY and q.stream and q.client_id:
            await self.live.play_done(q.stream, q.client_id, q.node)

    # ------------------------------------------------------------ who asks

    async def _subject(self, q: Question) -> tuple[Subject, str | None]:
        """The caller as its credentials prove it, and the id of the stream key or
        token it used (recorded with its live session, so revoking it ends the
        session); raises `_Denied`."""
        credentials = q.credentials
        kind = credentials.kind
        if kind is CredentialKind.NONE:
            return Subject.anonymous(), None
        if kind is CredentialKind.INVALID:
            raise _Denied(self._deny(q, "-", f"unusable credentials: {credentials.problem}"))
        secret = credentials.secret or ""
        if kind is CredentialKind.PASSWORD:
            return await self._password(q, credentials.username or "", secret), None
        if kind is CredentialKind.STREAM_KEY:
            return await self._stream_key(q, secret, credentials.username)
        return await self._token(q, secret)

    async def _stream_key(
        self, q: Question, key: str, claimed: str | None
    ) -> tuple[Subject, str | None]:
        """A stream key; when the client also named a user, the key must be theirs."""
        found: list[str] = []
        claimed_account: str | None = None
        if claimed is not None:
            try:
                claimed_account = f"{prepare_username(claimed)}@{self.domain}"
            except InvalidJID:
                raise _Denied(self._deny(q, "-", "wrong credentials")) from None

        async def check() -> Proof:
            owner = await self.keys.owner(key)
            if owner is None:
                return Proof(False, reason="unknown stream key")
            if claimed_account is not None and owner.account != claimed_account:
                return Proof(False, reason="another account's stream key")
            if await self._locked(owner.account):
                return Proof(False, reason="the key's account is locked")
            found[:] = [owner.account, owner.key_id]
            return Proof(True, owner.account.rpartition("@")[0])

        decision, proof = await self._check_secret(q, "stream-key", check)
        if not decision.allowed:
            answer = self._deny(q, "-", proof.reason or decision.reason.value)
            raise _Denied(Answer(answer.verdict, _hold(decision)))
        account, key_id = found
        return await self._account(account), f"key:{key_id}"

    async def _token(self, q: Question, token: str) -> tuple[Subject, str | None]:
        """A token: bound to the stream and action it was issued for; a one-time
        token is claimed for this client (its renewals are the same use)."""
        action = q.action.stream_action
        stream = q.stream
        if stream is None or action is None:
            raise _Denied(self._deny(q, "token", "a token opens a stream, not a connection"))
        verdicts: list[tokens.TokenVerdict] = []

        async def check() -> Proof:
            verdict = tokens.verify(
                token,
                self.token_keys,
                stream=stream,
                action=action,
                now=self.clock(),
                address=q.client_address,
            )
            if not verdict.valid:
                return Proof(False, reason=f"token {verdict.reason.value}")
            revoked = self.revoked
            if revoked is not None and await revoked.is_revoked(verdict.token_id or ""):
                return Proof(False, reason="token revoked")
            if verdict.one_time:
                store, client_id = self.one_time, q.client_id
                claimed = (
                    store is not None
                    and bool(client_id)
                    and await store.claim(
                        verdict.token_id or "", client_id or "", q.node, verdict.expires_at or 0
                    )
                )
                if not claimed:  # a used one, or no client id to tie the use to
                    return Proof(False, reason="one-time token already used")
            verdicts.append(verdict)
            return Proof(True)

        decision, proof = await self._check_secret(q, "token", check)
        if not decision.allowed:
            answer = self._deny(q, "token", proof.reason or decision.reason.value)
            raise _Denied(Answer(answer.verdict, _hold(decision)))
        verdict = verdicts[0]
        return Subject.token_bearer(stream, action, verdict.user), f"token:{verdict.token_id}"

    async def _password(self, q: Question, username: str, password: str) -> Subject:
        try:
            localpart = prepare_username(username)
        except InvalidJID:
            raise _Denied(self._deny(q, "-", "wrong credentials")) from None
        if _renewal(q):
            decision = await self._renewal_password(localpart, password)
        else:
            # Without the client's address (Red5 sends none) every client would share
            # one brute-force bucket, and one guesser would keep all of them out: the
            # claimed account stands in for it, so such guesses are limited per account.
            address = q.client_address or f"unknown ({localpart})"
            decision = await self.gate.check_password(
                self.provider,
                f"{PROTOCOL}:{q.adapter}",
                localpart,
                self.domain,
                password,
                address,
                mechanism="password",
                memo=self.memo,
            )
        if not decision.allowed:
            who = f"{localpart}@{self.domain}"
            answer = self._deny(q, who, decision.reason.value)
            raise _Denied(Answer(answer.verdict, _hold(decision)))
        return await self._account(f"{localpart}@{self.domain}")

    # A renewal (nginx-rtmp's on_update) repeats the credentials its session
    # started with: refusing it means they were revoked or expired since, never
    # a guess.  So it is checked without brute-force protection (no slot, no
    # failure counted against the client's address, no hold), and its refusal
    # is answered at once.

    async def _check_secret(
        self, q: Question, mechanism: str, check: Callable[[], Awaitable[Proof]]
    ) -> tuple[Decision, Proof]:
        if _renewal(q):
            proof = await check()
            return (_RIGHT if proof.valid else _NOT_ANY_MORE), proof
        return await self.gate.check_secret(
            f"{PROTOCOL}:{q.adapter}", mechanism, self.domain, q.client_address, check
        )

    async def _renewal_password(self, localpart: str, password: str) -> Decision:
        memo = self.memo
        if memo is not None and memo.knows(localpart, self.domain, password):
            return _RIGHT
        right, held = await verify_password(self.provider, localpart, self.domain, password)
        if not right or held is not None:
            return _NOT_ANY_MORE
        if memo is not None:
            memo.remember(localpart, self.domain, password)
        return _RIGHT

    async def _locked(self, account: str) -> bool:
        """Whether an administrator locked the account (`chatgate user lock`): its
        stream key opens nothing then, as its password logs in nowhere.  Free for
        an account in the provider's cache (only unlocked ones are cached)."""
        provider = self.provider
        if not isinstance(provider, InternalProvider):
            return False  # locks are the internal store's
        localpart, _, domain = account.rpartition("@")
        _exists, held = await provider.user_exists_or_held(localpart, domain)
        return held is not None

    async def _account(self, account: str) -> Subject:
        return Subject.for_account(account, await self.groups.of(account))

    # ------------------------------------------------------------ may they, is it free

    async def _stream(self, q: Question, subject: Subject, credential: str | None) -> Answer:
        stream, action = q.stream, q.action.stream_action
        who = _who(subject)
        if stream is None or action is None:
            return self._deny(q, who, "no stream")
        rules = await self.rules.current()
        decision = rules.decide(subject, stream, action)
        if not decision.allowed:
            if subject.kind is SubjectKind.ANONYMOUS:
                log.info("stream %s: %s %s: credentials needed", q.adapter, stream, action)
                return Answer(Verdict.unauthenticated(decision.reason.value))
            return self._deny(q, who, decision.reason.value)
        client_id = q.client_id
        if client_id is None:
            # A media server that names no client (MediaMTX without an id, Red5's
            # validator) sends no done either: there is no session to record, and
            # it keeps one publisher per stream itself.
            return self._allow(q, stream, action, who, " (not tracked: no client id)")
        renewal = q.action in (HookAction.UPDATE_PUBLISH, HookAction.UPDATE_PLAY)
        now = self.clock()
        if q.action in (HookAction.PUBLISH, HookAction.UPDATE_PUBLISH):
            published = await self.live.try_publish(
                stream,
                _identity(subject),
                client_id,
                q.node,
                now,
                credential=credential,
                renewal=renewal,
            )
            if not published.accepted:
                return self._deny(q, who, published.reason.value)
        else:
            played = await self.live.play_started(
                stream,
                _identity(subject),
                client_id,
                q.node,
                now,
                credential=credential,
                renewal=renewal,
            )
            if not played.accepted:
                return self._deny(q, who, played.reason.value)
        return self._allow(q, stream, action, who)

    def _allow(self, q: Question, stream: str, action: str, who: str, note: str = "") -> Answer:
        log.info(
            "stream %s: %s %s by %s from %s: allowed%s",
            q.adapter,
            stream,
            action,
            who,
            q.client_address or "-",
            note,
        )
        return _ALLOWED

    async def _done(self, q: Question) -> None:
        if q.stream is None or q.client_id is None:
            return
        if q.action is HookAction.PUBLISH_DONE:
            await self.live.publish_done(q.stream, q.client_id, q.node)
        else:
            await self.live.play_done(q.stream, q.client_id, q.node)

    async def _reveal(self, q: Question) -> Answer:
        """Wowza's token provider: the named account's stream key, if it has one."""
        try:
            account = f"{prepare_username(q.name or '')}@{self.domain}"
        except InvalidJID:
            return Answer(Verdict.deny("Invalid Client"))
        key = await self.keys.key_of(account)
        if key is None:
            return self._deny(q, account, "no stream key")
        log.info("stream %s: stream key of %s revealed", q.adapter, account)
        return Answer(Verdict.reveal(key))

    def _deny(self, q: Question, who: str, reason: str) -> Answer:
        log.info(
            "stream %s: %s %s by %s from %s: denied: %s",
            q.adapter,
            q.stream or "-",
            q.action.value,
            who,
            q.client_address or "-",
            reason,
        )
        return Answer(Verdict.deny(reason))


class _FixedRules:
    """A `RuleBook` stand-in for a fixed `RuleSet` (tests, embedding)."""

    def __init__(self, rules: RuleSet) -> None:
        self._rules = rules

    async def current(self) -> RuleSet:
        return self._rules


def _renewal(q: Question) -> bool:
    return q.action is HookAction.UPDATE_PUBLISH or q.action is HookAction.UPDATE_PLAY


def _hold(decision: Decision) -> float:
    """How long to hold a refusal: only an evaluated wrong guess is held (a
    throttled one's `hold` is when to try again, not a delay to serve)."""
    return decision.hold if decision.reason is Reason.WRONG_CREDENTIALS else 0.0


_RIGHT: Final = Decision(True, Reason.ALLOWED)
_NOT_ANY_MORE: Final = Decision(False, Reason.WRONG_CREDENTIALS)


def _identity(subject: Subject) -> str | None:
    """Who the live registry records: the account, or the user a token was issued to."""
    return subject.account if subject.kind is SubjectKind.ACCOUNT else subject.token_user


def _who(subject: Subject) -> str:
    if subject.kind is SubjectKind.ACCOUNT:
        return subject.account or "-"
    return str(subject.kind.value)
