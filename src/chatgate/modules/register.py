"""XEP-0077 in-band registration: new accounts before authentication; password
change, profile fields and account removal within a session.

What this module owns: the ``[modules.register]`` options, the registration
policy (username and password rules, the anti-abuse delay, invites, approval)
as pure code that is handed the time, and the handlers that apply it.  The
rate limits are `auth.throttle.RegistrationThrottle`'s (``[auth.throttle.registration]``).
It never stores anything itself: accounts are created, held for approval, given a new
password and deleted by the account service (`chatgate.accounts`), as by the command
line, which stores SCRAM keys and the configured legacy secrets, never a password,
and tells every credential cache.

Cost: a password over 1,024 bytes is refused (not-acceptable) before anything
prepares it (`auth/passwords.py`), and its PRECIS preparation and the key
derivation (PBKDF2, the zero-knowledge hash chain) run in a worker thread,
never on the event loop.  Every registration attempt counts toward
``[auth.throttle.registration] attempts_per_address``, whatever its outcome.

Before authentication (XEP-0077 §3.1, Programming Jabber ch. 7): an inquiry
(IQ-get) returns the instructions, the legacy fields and the same fields as a
data form (XEP-0004); an attempt (IQ-set) creates the account, and the client
may then log in on the same stream.  Registration turned off answers
<not-allowed/> (405) to inquiry and attempt alike: the server implements the
protocol (password changes still work) but its policy lets no one create an
account (RFC 6120 §8.3.3.10), and the same condition for both steps avoids the
inconsistency the book notes in jabberd 1.4 (406/409 for attempts, 501 for
inquiries).

With `approval`, the attempt succeeds but the registration is held
(`pending_registrations`) until `chatgate registration approve`; the internal
provider learns its name (the account service's notice; every held name at start), so that a
login with the right password is refused with a text saying it awaits approval,
while a wrong password, or a client that guesses names, gets what an unknown name
gets.

Within a session (§3.2, §3.3): the IQ-get answers <registered/> and the fields on
file; an IQ-set with a password changes it (new SCRAM keys and legacy secrets,
the zero-knowledge chain reset, the provider's cache dropped: the next login
needs the new password); other fields update the profile; <remove/> deletes the
account and everything it owns at once, cancels its presence subscriptions,
answers the IQ, then closes every session of the account with a <not-authorized/>
stream error, as §3.2 says.

Every error carries the legacy code too (XEP-0077 §Error Handling); errors about
passwords never echo the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from chatgate.accounts import InviteUnavailable, NameTaken, NoSuchAccount
from chatgate.accounts.server import server_account_service
from chatgate.accounts.service import REMOVED_TEXT
from chatgate.auth.internal import InternalProvider
from chatgate.auth.policy import DEFAULT_RESERVED, AccountPolicy, NameUnavailable, PolicyViolation
from chatgate.auth.throttle import Refuse, ThrottleReason
from chatgate.jid import JID, InvalidJID, prepare_username
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    OnStart,
    PreAuthConnection,
    PreAuthIqHandler,
    Registration,
    Spec,
    StreamFeature,
)
from chatgate.modules.dataforms import FormField, build_form, find_form, read_submission
from chatgate.modules.preauth import (
    ConnectionTable,
    error_with_code,
    iq_reply,
    pre_auth_lock,
    tls_missing,
)
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.invitations import Invite
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import (
    ConfigError,
    StanzaError,
    StanzaErrorCondition,
    StreamErrorCondition,
)
from chatgate.vocabulary.ns import IBR_TOKEN_FEATURE, PARS, REGISTER_FEATURE
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)


#: XEP-0077 §14 fields an operator may ask for, with the data form labels.
FIELD_LABELS: dict[str, str] = {
    "name": "Full name",
    "first": "Given name",
    "last": "Family name",
    "nick": "Nickname",
    "email": "Email address",
    "address": "Street address",
    "city": "City",
    "state": "State or region",
    "zip": "Postal code",
    "phone": "Telephone number",
    "url": "Web page",
    "date": "Date",
}
_C = StanzaErrorCondition


class InviteToken(BaseModel):
    """One invitation token from the configuration (stored when the server starts)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    token: Annotated[str, Field(min_length=8)]
    """The secret the invitee presents (XEP-0445 <preauth/> or the form's `token` field)."""
    username: str | None = None
    """The only username this token registers; reserved for it until it is used up."""
    uses: Annotated[int, Field(ge=1)] = 1
    """Accounts the token may create."""
    expires: AwareDatetime | None = None
    """When the token stops working (a TOML datetime with offset)."""
    domain: str | None = None
    """The virtual host the token registers on (unset: `[server] domain`)."""


class RegisterOptions(BaseModel):
    """``[modules.register]``: XEP-0077 in-band registration."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = False
    """Let clients create accounts before authenticating. Off: inquiries and attempts get
    not-allowed (405) and no <register/> stream feature is offered."""
    instructions: str = "Choose a username and password to register with this server."
    """The <instructions/> of an inquiry."""
    fields: list[str] = []
    """XEP-0077 fields asked for besides username and password, all required: name, first,
    last, nick, email, address, city, state, zip, phone, url, date."""
    require_tls: bool = True
    """Refuse registration and password changes on a stream without TLS (not-authorized)."""
    min_username_length: Annotated[int, Field(ge=1, le=1023)] = 1
    """Fewest characters in a new username (after PRECIS preparation), by registration or
    `chatgate user add`/`import`, registration on or off."""
    max_username_length: Annotated[int, Field(ge=1, le=1023)] = 64
    """Most characters in a new username (registration and the command line)."""
    min_password_length: Annotated[int, Field(ge=1)] = 8
    """Fewest characters in every password set: registration, an in-band password change,
    `chatgate user add`, `passwd` and `import`, registration on or off."""
    reserved_usernames: list[str] = list(DEFAULT_RESERVED)
    """Names nobody can register (conflict, 409), compared after PRECIS preparation;
    `chatgate user add` refuses them too unless given `--allow-reserved`."""
    min_seconds_between_inquiry_and_attempt: Annotated[float, Field(ge=0)] = 0
    """CAPTCHA-free anti-abuse switch: an attempt needs an inquiry on the same stream at
    least this many seconds earlier (policy-violation otherwise). 0 turns it off."""
    approval: bool = False
    """Hold new registrations until an administrator approves them (the name is taken at
    once; logging in works after approval)."""
    invites: Literal["off", "optional", "required"] = "off"
    """XEP-0401/0445 invitation tokens: `required` lets only invitees register."""
    invite_tokens: list[InviteToken] = []
    """Invitation tokens from the configuration (more can be stored by other tools)."""
    notify: list[str] = []
    """Local bare JIDs told by message about every registration (jabberd's notify)."""
    allow_password_change: bool = True
    """Let a logged-in user change the password in-band (XEP-0077 §3.3)."""
    allow_remove: bool = True
    """Let a logged-in user delete the account in-band (XEP-0077 §3.2)."""

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(FIELD_LABELS))
        if unknown:
            raise ValueError(f"unknown XEP-0077 field(s): {', '.join(unknown)}")
        return list(dict.fromkeys(names))

    @field_validator("reserved_usernames")
    @classmethod
    def _prepare_reserved(cls, names: list[str]) -> list[str]:
        try:
            return [prepare_username(n) for n in names]
        except InvalidJID as exc:
            raise ValueError(f"reserved username: {exc}") from None

    @model_validator(mode="after")
    def _username_lengths(self) -> RegisterOptions:
        if self.min_username_length > self.max_username_length:
            raise ValueError(
                f"min_username_length ({self.min_username_length}) >"
                f" max_username_length ({self.max_username_length})"
            )
        return self

    def account_policy(self) -> AccountPolicy:
        """The account rules these options configure (`auth/policy.py`), for every
        place an account is made or a password set, the command line included."""
        return AccountPolicy(
            min_username_length=self.min_username_length,
            max_username_length=self.max_username_length,
            min_password_length=self.min_password_length,
            reserved_usernames=frozenset(self.reserved_usernames),
        )


# ---------------------------------------------------------------- the policy (pure)


@dataclass(frozen=True, slots=True)
class Submission:
    """What a jabber:iq:register IQ-set asks for, from legacy fields or a data form."""

    username: str | None
    password: str | None  # "" for an empty <password/>
    fields: dict[str, str]
    token: str | None
    remove: bool
    only_remove: bool


def read_request(iq: Element) -> Submission:
    """Read an IQ-set's query; the data form wins over legacy fields (XEP-0077 §6).
    Raises StanzaError(bad-request) without a <query/> or with a malformed form."""
    query = iq.find("query", ns.REGISTER)
    if query is None:
        raise StanzaError(_C.BAD_REQUEST, "expected <query xmlns='jabber:iq:register'/>")
    x = find_form(query)
    if x is not None:
        try:
            form = read_submission(x)
        except ValueError as exc:
            raise StanzaError(_C.BAD_REQUEST, str(exc)) from None
        if form.form_type not in (None, ns.REGISTER):
            raise StanzaError(_C.BAD_REQUEST, f"unexpected FORM_TYPE {form.form_type!r}")
        fields = {k: form.first(k) or "" for k in FIELD_LABELS if k in form.values}
        return Submission(
            form.first("username"),
            form.first("password"),
            fields,
            form.first("token"),
            False,
            False,
        )

    def text(name: str) -> str | None:
        el = query.find(name, ns.REGISTER)
        return None if el is None else el.text.strip() if name != "password" else el.text

    children = [c for c in query.children if isinstance(c, Element)]
    remove = query.find("remove", ns.REGISTER) is not None
    fields = {k: text(k) or "" for k in FIELD_LABELS if query.find(k, ns.REGISTER) is not None}
    return Submission(
        text("username"), text("password"), fields, None, remove, remove and len(children) == 1
    )


class RegistrationPolicy:
    """The rules a registration or a new password must pass; pure, raises StanzaError.

    Names and passwords follow the shared `AccountPolicy` (`auth/policy.py`, the
    same rules as the command line's), its refusals turned into XEP-0077 errors:
    a reserved name is taken (conflict, 409), anything else not-acceptable (406).
    """

    def __init__(self, options: RegisterOptions) -> None:
        self.options = options
        self.accounts = options.account_policy()

    def username(self, text: str | None) -> str:
        try:
            return self.accounts.username(text)
        except NameUnavailable as exc:
            raise StanzaError(_C.CONFLICT, str(exc)) from None
        except PolicyViolation as exc:
            raise StanzaError(_C.NOT_ACCEPTABLE, str(exc)) from None

    def password_size(self, text: str | None) -> str:
        """The cheap checks, before anything prepares the password: present, and at
        most 1,024 bytes (`auth/passwords.py`)."""
        try:
            return self.accounts.password_size(text)
        except PolicyViolation as exc:
            raise StanzaError(_C.NOT_ACCEPTABLE, str(exc)) from None

    def password(self, text: str | None) -> str:
        """Every rule (`password_size`, PRECIS, the minimum length); costs a PRECIS
        pass (up to a millisecond or so): callers run it in a worker thread."""
        try:
            return self.accounts.password(text)
        except PolicyViolation as exc:
            raise StanzaError(_C.NOT_ACCEPTABLE, str(exc)) from None

    def fields(self, submitted: dict[str, str]) -> dict[str, str]:
        """The configured fields; every one is required (XEP-0077 §3.1 "MUST provide")."""
        missing = [f for f in self.options.fields if not submitted.get(f, "").strip()]
        if missing:
            raise StanzaError(_C.NOT_ACCEPTABLE, f"missing: {', '.join(missing)}")
        return {f: submitted[f].strip() for f in self.options.fields}

    def timing(self, inquired_at: float | None, now: float) -> None:
        delay = self.options.min_seconds_between_inquiry_and_attempt
        if delay and (inquired_at is None or now - inquired_at < delay):
            raise StanzaError(_C.POLICY_VIOLATION, "ask for the registration form first, then wait")


# ---------------------------------------------------------------- the module


@dataclass
class _Stream:
    """Per-stream registration state (the stream has no account yet)."""

    inquired_at: float | None = None
    token: str | None = None
    token_accepted: datetime | None = None


class Register:
    """XEP-0077 before and after authentication; see the module docstring."""

    name: ClassVar[str] = "register"
    depends: ClassVar[tuple[str, ...]] = ("presence",)
    implements: ClassVar[tuple[Spec, ...]] = (
        Spec("XEP-0077", "2.4"),
        Spec("XEP-0445", "0.2"),
    )
    Options: ClassVar[type[BaseModel]] = RegisterOptions

    #: monotonic seconds (the loop's, as `[auth.throttle]` uses) for the registration
    #: throttle and the anti-abuse delay; tests replace it
    clock: Callable[[], float] = staticmethod(lambda: asyncio.get_running_loop().time())

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        self.options = o = ctx.options(self.name, RegisterOptions)
        #: creates, changes and deletes the accounts, as the command line does
        self.accounts = server_account_service(ctx, o.account_policy())
        self.notify = [self._watcher(jid) for jid in o.notify]
        self.policy = RegistrationPolicy(o)
        self._stream = ConnectionTable(_Stream)
        local = frozenset(d for d in ctx.hosts if self._local(d))
        for t in o.invite_tokens:
            if (t.domain or ctx.domain) not in local:
                raise ConfigError(
                    f"modules.register.invite_tokens: {t.domain!r} is not a served domain"
                    " whose accounts are in the internal store"
                )
        if o.invite_tokens:
            yield OnStart(self._store_configured_invites)
        # Even with approval off now: registrations held while it was on still wait.
        yield OnStart(self._track_pending)
        yield PreAuthIqHandler(ns.REGISTER, "get", self.inquiry)
        yield PreAuthIqHandler(ns.REGISTER, "set", self.attempt)
        yield PreAuthIqHandler(PARS, "set", self.preauth)
        yield IqHandler(ns.REGISTER, "get", self.profile)
        yield IqHandler(ns.REGISTER, "set", self.change)
        yield DiscoFeature(ns.REGISTER)
        if o.enabled and local:
            # Only where accounts can be made: not where a provider keeps them.
            yield StreamFeature(f"<register xmlns='{REGISTER_FEATURE}'/>", True, local)
            if o.invites != "off":
                yield StreamFeature(f"<register xmlns='{IBR_TOKEN_FEATURE}'/>", True, local)

    def _local(self, domain: str) -> bool:
        """Accounts of `domain` live in our database: its provider is the internal one
        (never on an anonymous host, whose provider knows no accounts)."""
        return isinstance(self.ctx.host(domain).provider, InternalProvider)

    def _watcher(self, text: str) -> JID:
        try:
            jid = JID.parse(text)
        except InvalidJID as exc:
            raise ConfigError(f"modules.register.notify: {text!r}: {exc}") from None
        if not jid.local or jid.resource or jid.domain not in self.ctx.hosts:
            raise ConfigError(f"modules.register.notify: {text!r} is not a local bare JID")
        return jid

    def _refusal(self, conn: PreAuthConnection) -> StanzaError | None:
        """Refusals common to inquiry and attempt, the same for both."""
        if not self.options.enabled or not self._local(conn.domain):
            return StanzaError(_C.NOT_ALLOWED, "in-band registration is not allowed here")
        if (self.options.require_tls and not conn.facts.tls_active) or tls_missing(conn):
            return StanzaError(_C.NOT_AUTHORIZED, "registration needs TLS")
        return None

    # ------------------------------------------------------------ before authentication

    async def inquiry(self, conn: PreAuthConnection, iq: Element) -> None:
        async with pre_auth_lock(conn):
            refusal = self._refusal(conn)
            if refusal is not None:
                conn.send(error_with_code(iq, refusal.condition, refusal.text))
                return
            self._stream(conn).inquired_at = self.clock()
            conn.send(iq_reply(iq, "result", self._form()))

    def _form(self, values: dict[str, str] | None = None) -> Element:
        o, known = self.options, values or {}
        query = Element("query", ns.REGISTER)
        if values is not None:
            query.sub("registered")
        query.sub("instructions", text=o.instructions)
        query.sub("username", text=known.get("username"))
        query.sub("password")
        for name in o.fields:
            query.sub(name, text=known.get(name))
        fields = [
            FormField(
                "username", label="Username", required=True, values=_opt(known.get("username"))
            ),
            FormField("password", "text-private", "Password", required=True),
        ]
        fields += [
            FormField(n, label=FIELD_LABELS[n], required=True, values=_opt(known.get(n)))
            for n in o.fields
        ]
        if values is None and o.invites != "off":
            required = o.invites == "required"
            fields.append(FormField("token", label="Invitation token", required=required))
        title = "Account registration" if values is None else "Your registration"
        query.append(build_form(ns.REGISTER, fields, title=title, instructions=o.instructions))
        return query

    async def attempt(self, conn: PreAuthConnection, iq: Element) -> None:
        async with pre_auth_lock(conn):
            try:
                await self._attempt(conn, iq)
            except StanzaError as exc:
                if not conn.closed:
                    conn.send(
                        error_with_code(iq, exc.condition, exc.text, error_type=exc.error_type)
                    )

    async def _attempt(self, conn: PreAuthConnection, iq: Element) -> None:
        refusal = self._refusal(conn)
        if refusal is not None:
            raise refusal
        request = read_request(iq)
        if request.remove:
            # XEP-0077 §3.2 table: the entity is not registered with (logged in to) us.
            raise StanzaError(_C.UNEXPECTED_REQUEST, "log in before removing an account")
        state = self._stream(conn)
        address = conn.facts.remote_address
        now = self.clock()
        # Every attempt counts, whatever comes of it (a taken name costs as much).
        verdict = self.ctx.registration_throttle.attempt(address, now)
        if isinstance(verdict, Refuse):
            # As ejabberd's registration_timeout: wait, and try again later.
            what = (
                "registration attempts"
                if verdict.reason is ThrottleReason.REGISTRATION_ATTEMPTS
                else "new accounts"
            )
            text = f"too many {what}; try again in {verdict.retry_after:.0f} s"
            raise StanzaError(_C.RESOURCE_CONSTRAINT, text)
        self.policy.timing(state.inquired_at, now)
        username = self.policy.username(request.username)
        self.policy.password_size(request.password)
        password = await asyncio.to_thread(self.policy.password, request.password)
        fields = self.policy.fields(request.fields)
        domain = conn.domain
        token, when = await self._invite(state, request.token, domain)
        accounts = self.accounts
        try:
            # Keys and legacy secrets are derived in a worker thread; the credential
            # caches learn of the account (or of the held name, whose login with the
            # password is then told why not).
            if self.options.approval:
                await accounts.hold(
                    username,
                    domain,
                    password,
                    fields=fields,
                    address=address,
                    invite=token,
                    now=when,
                )
            else:
                await accounts.create(
                    username, domain, password, fields=fields, invite=token, now=when
                )
        except NameTaken:
            raise StanzaError(_C.CONFLICT, "this username is not available") from None
        except InviteUnavailable as exc:
            raise StanzaError(_C.FORBIDDEN, str(exc)) from None
        except PolicyViolation as exc:  # checked above already; the service checks again
            raise StanzaError(_C.NOT_ACCEPTABLE, str(exc)) from None
        self.ctx.registration_throttle.registered(address, self.clock())
        pending = " (waiting for approval)" if self.options.approval else ""
        log.info("registered %s@%s from %s%s", username, domain, address or "-", pending)
        if not conn.closed:
            conn.send(iq_reply(iq, "result"))
        await self._tell_watchers(f"New account {username}@{domain}{pending}.")

    async def _invite(
        self, state: _Stream, form_token: str | None, domain: str
    ) -> tuple[str | None, datetime | None]:
        """The token to redeem and the time to check it at (XEP-0445: expiry is
        checked when the token is presented, not again later in the stream)."""
        mode = self.options.invites
        if mode == "off":
            return None, None
        if form_token:
            if await self._usable_invite(form_token, domain) is None:
                raise StanzaError(_C.FORBIDDEN, "the invitation is unknown, used up or expired")
            return form_token, None
        if state.token is not None:
            return state.token, state.token_accepted
        if mode == "required":
            raise StanzaError(_C.FORBIDDEN, "registration needs an invitation")
        return None, None

    async def _track_pending(self) -> None:
        """Hand the registrations awaiting approval to the internal providers, so that a
        client that proves such a registration's password is told that it awaits
        approval (`auth/internal.py`), before the first client connects."""
        providers = {id(h.provider): h.provider for h in self.ctx.hosts.values()}
        for provider in providers.values():
            if isinstance(provider, InternalProvider):
                await provider.track_pending(self.ctx.db.pending_registrations)

    async def _store_configured_invites(self) -> None:
        """Store `invite_tokens` before the first client connects, so that the names
        they reserve are reserved from the start (a token already stored, perhaps
        partly used, is left as it is)."""
        for t in self.options.invite_tokens:
            await self.ctx.db.invitations.add_invite(
                t.token,
                t.domain or self.ctx.domain,
                username=_prepared(t.username),
                uses=t.uses,
                expires=t.expires,
            )

    async def _usable_invite(self, token: str, domain: str) -> Invite | None:
        return await self.ctx.db.invitations.invite(token, domain, datetime.now(UTC))

    async def preauth(self, conn: PreAuthConnection, iq: Element) -> None:
        """XEP-0445: a token presented before registering."""
        async with pre_auth_lock(conn):
            local = self._local(conn.domain)
            if not self.options.enabled or self.options.invites == "off" or not local:
                conn.send(error_with_code(iq, _C.SERVICE_UNAVAILABLE))
                return
            el = iq.find("preauth", PARS)
            token = el.get("token") if el is not None else None
            if not token or await self._usable_invite(token, conn.domain) is None:
                text = "The provided token is invalid or expired"
                conn.send(error_with_code(iq, _C.ITEM_NOT_FOUND, text))
                return
            state = self._stream(conn)
            state.token, state.token_accepted = token, datetime.now(UTC)
            conn.send(iq_reply(iq, "result"))

    async def _tell_watchers(self, body: str) -> None:
        router = self.ctx.router
        for jid in self.notify:
            message = Element("message", ns.CLIENT, {"from": self.ctx.domain, "to": str(jid)})
            message.sub("body", text=body)
            pending = router.deliver_message_to_bare(message, jid)
            if pending is not None:
                await pending

    # ------------------------------------------------------------ within a session

    async def profile(self, session: C2SSession, iq: Element) -> None:
        fields = await self.ctx.db.registration.fields((session.username, session.domain))
        values = {"username": session.username, **fields}
        session.send(iq_reply(iq, "result", self._form(values), to=session.full))

    async def change(self, session: C2SSession, iq: Element) -> None:
        try:
            try:
                await self._change(session, iq)
            except (NoSuchAccount, AccountNotFound):  # deleted meanwhile: `chatgate user del`
                raise StanzaError(_C.ITEM_NOT_FOUND, "the account no longer exists") from None
        except StanzaError as exc:
            # XEP-0077 §3.3: "SHOULD NOT return the original XML" (it holds a password).
            reply = error_with_code(
                iq, exc.condition, exc.text, to=session.full, error_type=exc.error_type
            )
            session.send(reply)

    async def _change(self, session: C2SSession, iq: Element) -> None:
        request = read_request(iq)
        owner = (session.username, session.domain)
        if request.remove:
            if not request.only_remove:
                raise StanzaError(_C.BAD_REQUEST, "<remove/> must be the only child")
            if not self.options.allow_remove or not self._local(session.domain):
                raise StanzaError(_C.NOT_ALLOWED, "accounts cannot be removed in-band here")
            await self._remove(session, iq)
            return
        if request.username:
            try:
                same = prepare_username(request.username) == session.username
            except InvalidJID:
                same = False
            if not same:
                raise StanzaError(_C.FORBIDDEN, "you can change only your own account")
        changes = {k: v for k, v in request.fields.items() if k in self.options.fields}
        if not request.password and not changes:
            # §3.3: an empty password never becomes the password.
            raise StanzaError(_C.NOT_ACCEPTABLE, "nothing to change (an empty password is kept)")
        if changes and not self._local(session.domain):
            # The account lives in the host's credential provider, not in our store.
            raise StanzaError(_C.NOT_ALLOWED, "registration fields cannot be changed here")
        if request.password:
            await self._change_password(session, owner, request.password)
        if changes:
            await self.ctx.db.registration.set_fields(owner, changes)
        session.send(iq_reply(iq, "result", None, to=session.full))

    async def _change_password(
        self, session: C2SSession, owner: tuple[str, str], text: str
    ) -> None:
        if not self.options.allow_password_change or not self._local(session.domain):
            raise StanzaError(_C.NOT_ALLOWED, "passwords cannot be changed in-band here")
        if self.options.require_tls and not session.tls_active:
            # §3.3: not-authorized, "the channel is not safe enough".
            raise StanzaError(_C.NOT_AUTHORIZED, "password changes need TLS")
        self.policy.password_size(text)
        password = await asyncio.to_thread(self.policy.password, text)
        # New keys and legacy secrets (derived in a worker thread), every cache told.
        await self.accounts.change_password(*owner, password)
        log.info("%s changed the password in-band", session.bare)

    async def _remove(self, session: C2SSession, iq: Element) -> None:
        """§3.2: reply, delete everything, close every session with <not-authorized/>."""
        ctx, bare = self.ctx, session.bare
        # Subscriptions withdrawn first, then everything the account owns, every cache
        # told; the sessions are closed here, after the answer.
        await self.accounts.delete(session.username, session.domain, end_sessions=False)
        log.info("%s removed the account in-band", bare)
        session.send(iq_reply(iq, "result", None, to=session.full))
        text = REMOVED_TEXT
        ctx.router.directory.close_sessions(bare, StreamErrorCondition.NOT_AUTHORIZED, text)
        # This session too, had it been unbound already (closing twice does nothing).
        session.close(StreamErrorCondition.NOT_AUTHORIZED, text)


# ---------------------------------------------------------------- helpers


def _opt(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _prepared(username: str | None) -> str | None:
    return None if username is None else prepare_username(username)
