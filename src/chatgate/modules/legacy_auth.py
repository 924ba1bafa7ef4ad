"""XEP-0078 legacy authentication (``jabber:iq:auth``), and the legacy secrets it needs.

COMPAT: for old clients and scripts only, off by default.  SASL is preferred;
XEP-0078 is obsolete.

What this module owns:

* the ``[modules.legacy_auth]`` options, which also decide which legacy
  secrets are stored when a password is set (`derive_legacy_secrets`, used by
  in-band registration and meant for the CLI too);
* the pure checks of the three methods (`digest_value`, `zero_knowledge_step`);
* the pre-authentication handler: the IQ-get that lists the methods available
  for an account, and the IQ-set that checks credentials and opens the session
  through `PreAuthConnection.legacy_login` (no stream restart, no bind IQ).

The methods (XEP-0078 §3 and, for zero-knowledge, jabberd 1.4's mod_auth_0k,
described in Programming Jabber ch. 7):

* ``<password/>``: the password in clear, checked by the credential provider;
  offered only over TLS unless `allow_plaintext_without_tls`.
* ``<digest/>``: lowercase hex SHA1(stream id + password).  The server needs a
  plaintext-equivalent secret for it, stored only when `digest` is on.
* ``<sequence/>`` + ``<token/>`` (zero-knowledge): the server keeps
  hash_N = SHA1^N(hash0), hash0 = SHA1(SHA1(password) + token) (all lowercase hex
  strings), and announces N-1.  The client sends hash_{N-1}; one SHA-1 of it must
  give hash_N; then hash_{N-1} is stored and N decrements.  At N = 0 the method
  is no longer offered until a password change resets the chain.

Errors (XEP-0078 §3, with legacy codes): missing username, resource or
credential, or a password over 1,024 bytes (`auth/passwords.py`) ->
not-acceptable (406); wrong credentials or a method not offered on this stream
-> not-authorized (401); resource conflict -> conflict (409).  Error replies
never echo the request (§3: "SHOULD NOT ... given the sensitive nature").
The right plaintext password of a registration awaiting approval ->
not-authorized (401) with a <text/> saying so
(`InternalProvider.verify_password_or_held`), not counted by brute-force
protection (it is no guess).  Digest and zero-knowledge know nothing of held
registrations (their secrets wait in the registration, and the IQ-get would have
to announce its chain): such a name is answered there as an unknown one, a bare
401.
Logins go through the same brute-force protection as SASL (``[auth.throttle]``):
credentials are checked at once and a not-authorized is held back by the
throttle's delay; an address with every slot taken gets resource-constraint
(500, wait) unchecked.  A
client whose SASL attempt failed gets a <policy-violation/> stream error
(§Security), and so does one past `max_auth_failures` legacy failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from chatgate.auth.credentials import prepare_password
from chatgate.auth.gate import Attempt, verify_password
from chatgate.auth.internal import InternalProvider
from chatgate.auth.passwords import TOO_LONG, too_long
from chatgate.auth.throttle import Refuse
from chatgate.jid import InvalidJID, prepare_username
from chatgate.modules.base import (
    OnStart,
    PreAuthConnection,
    PreAuthIqHandler,
    Registration,
    Spec,
    StreamFeature,
)
from chatgate.modules.legacy_decoy import SECRET_NAME as DECOY_SECRET
from chatgate.modules.legacy_decoy import CensusCache, LegacyDecoy
from chatgate.modules.preauth import (
    connection_state,
    error_with_code,
    iq_reply,
    pre_auth_lock,
    tls_missing,
)
from chatgate.sasl.digest_md5 import digest_md5_ha1
from chatgate.storage.repositories.legacy import (
    DigestMd5Secret,
    LegacySecrets,
    ZeroKnowledgeChain,
)
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

PASSWORD = "jabber:iq:auth/password"
DIGEST = "jabber:iq:auth/digest"
ZERO_KNOWLEDGE = "jabber:iq:auth/zero-knowledge"
#: The login gate's protocol name (shared with SASL: the method tells them apart).
PROTOCOL = "xmpp"
NOT_AUTHORIZED = StanzaErrorCondition.NOT_AUTHORIZED.value


class LegacyAuthOptions(BaseModel):
    """``[modules.legacy_auth]``: XEP-0078 and the legacy secrets stored for it."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = False
    """Answer jabber:iq:auth logins and advertise the iq-auth stream feature. When off,
    jabber:iq:auth requests get service-unavailable (XEP-0078 §3)."""
    allow_plaintext_without_tls: bool = False
    """Offer the plaintext <password/> method on streams without TLS."""
    digest: bool = False
    """Offer <digest/> and store, at every password set, the plaintext-equivalent secret it
    needs (legacy_digest storage): whoever reads the database can then log in as anyone
    who set a password since. Accounts get the secret at their next password set or
    legacy plaintext login."""
    zero_knowledge: bool = False
    """Offer the zero-knowledge method and store its hash chain at every password set."""
    zero_knowledge_sequence: Annotated[int, Field(ge=1, le=100_000)] = 500
    """Logins a fresh zero-knowledge chain allows (jabberd's default was 500)."""
    digest_md5: bool = False
    """Store H(user:realm:password), realm = the server's domain, for the SASL DIGEST-MD5
    mechanism (RFC 6331 made it historic; also plaintext-equivalent). The mechanism must
    still be listed in [auth] mechanisms."""


# ---------------------------------------------------------------- pure checks


def _sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def digest_value(stream_id: str, password: str) -> str:
    """XEP-0078 §3: lowercase hex SHA1(concat(stream id, password)), UTF-8 bytes."""
    return _sha1_hex(stream_id + password)


def digest_matches(stream_id: str, secret: str, presented: str) -> bool:
    """Compare the client's digest with ours in constant time (hex case ignored)."""
    expected = digest_value(stream_id, secret).encode("ascii")
    return hmac.compare_digest(expected, presented.strip().lower().encode("utf-8", "replace"))


def zero_knowledge_chain(password: str, token: str, sequence: int) -> ZeroKnowledgeChain:
    """A fresh chain (mod_auth_0k_reset): hash_N = SHA1^N(SHA1(SHA1(password) + token))."""
    value = _sha1_hex(_sha1_hex(password) + token)
    for _ in range(sequence):
        value = _sha1_hex(value)
    return ZeroKnowledgeChain(token, sequence, value)


def zero_knowledge_client_hash(password: str, token: str, announced: int) -> str:
    """What a client sends for the announced sequence (Net::XMPP, the book's script)."""
    return zero_knowledge_chain(password, token, announced).hash


def zero_knowledge_step(chain: ZeroKnowledgeChain, presented: str) -> ZeroKnowledgeChain | None:
    """The chain after a login with `presented` (hash_{N-1}), or None when it is wrong
    or the chain is exhausted (N = 0)."""
    if chain.sequence <= 0:
        return None
    candidate = presented.strip().lower()
    if not hmac.compare_digest(_sha1_hex(candidate).encode(), chain.hash.encode("ascii")):
        return None
    return ZeroKnowledgeChain(chain.token, chain.sequence - 1, candidate)


def new_token() -> str:
    """A chain token, 8 uppercase hex digits as jabberd's were (but random)."""
    return secrets.token_hex(4).upper()


def derive_legacy_secrets(
    password: str, username: str, domain: str, options: LegacyAuthOptions
) -> LegacySecrets:
    """The legacy secrets to store for a new password, only those configured.

    The password is PRECIS-prepared first (RFC 8265 OpaqueString, as for SCRAM),
    which leaves ASCII passwords unchanged.  Raises ValueError for a password
    that preparation refuses.
    """
    prepared = prepare_password(password).decode("utf-8")
    md5 = None
    if options.digest_md5:
        md5 = DigestMd5Secret(domain, digest_md5_ha1(username, domain, prepared))
    zk = None
    if options.zero_knowledge:
        zk = zero_knowledge_chain(prepared, new_token(), options.zero_knowledge_sequence)
    return LegacySecrets(prepared if options.digest else None, md5, zk)


# ---------------------------------------------------------------- wire helpers


#: XEP-0086: the legacy error code for each condition (XEP-0077/0078 servers MUST send both).
def plaintext_allowed(conn: PreAuthConnection, options: LegacyAuthOptions) -> bool:
    return conn.facts.tls_active or options.allow_plaintext_without_tls


# ---------------------------------------------------------------- the module


@dataclass(frozen=True, slots=True)
class _Request:
    username: str
    resource: str
    password: str | None
    digest: str | None
    hash: str | None


def _child_text(query: Element, name: str) -> str | None:
    el = query.find(name, ns.IQ_AUTH)
    return None if el is None else el.text


class LegacyAuth:
    """XEP-0078 over the pre-authentication IQ seam; see the module docstring."""

    name: ClassVar[str] = "legacy_auth"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0078", "2.5"),)
    Options: ClassVar[type[BaseModel]] = LegacyAuthOptions

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        self.options = ctx.options(self.name, LegacyAuthOptions)
        ctx.login_gate.know(PASSWORD, DIGEST, ZERO_KNOWLEDGE)
        # Unknown names are answered as accounts are (`legacy_decoy`), keyed by an
        # installation secret from the database: the same in every process.
        self._decoy: LegacyDecoy | None = None
        self._census = CensusCache(ctx.db.legacy_census.census)
        yield OnStart(self._load_decoy)
        yield PreAuthIqHandler(ns.IQ_AUTH, "get", self.fields)
        yield PreAuthIqHandler(ns.IQ_AUTH, "set", self.login)
        if self.options.enabled:
            yield StreamFeature(f"<auth xmlns='{ns.IQ_AUTH_FEATURE}'/>", pre_auth=True)

    # ------------------------------------------------------------ IQ-get

    async def fields(self, conn: PreAuthConnection, iq: Element) -> None:
        async with pre_auth_lock(conn):
            if not self._usable(conn, iq):
                return
            query = Element("query", ns.IQ_AUTH)
            requested = _child_text(iq.find("query", ns.IQ_AUTH) or query, "username")
            username = None
            if requested:
                try:
                    username = prepare_username(requested.strip())
                except InvalidJID:
                    username = None
            query.sub("username", text=requested or None)
            options = self.options
            if plaintext_allowed(conn, options):
                query.sub("password")
            if not self._stores_secrets(conn.domain):
                # Digest and zero-knowledge need secrets from our own store; a host
                # whose provider keeps the accounts can only check a password.
                query.sub("resource")
                conn.send(iq_reply(iq, "result", query))
                return
            census = None
            if options.digest or options.zero_knowledge:
                # Asked for every name, known or not: a recount costs the same for both.
                now = asyncio.get_running_loop().time()
                census = await self._census.get(conn.domain, now)
            stored = None if username is None else await self._secrets(username, conn.domain)
            # XEP-0078 §3: an unknown username gets the normal fields, not an error;
            # it is answered as a typical account of this domain would be.
            if username is not None and stored is None and census is not None:
                decoy = self._decoy_for().answer(username, conn.domain, census)
                offer_digest, chain = decoy.digest, decoy.chain
            else:
                offer_digest = stored is None or bool(stored.digest_password)
                chain = stored.zero_knowledge if stored else None
            if options.digest and offer_digest:
                query.sub("digest")
            if (
                options.zero_knowledge
                and username is not None
                and chain is not None
                and chain.sequence > 0
            ):
                query.sub("sequence", text=str(chain.sequence - 1))
                query.sub("token", text=chain.token)
            query.sub("resource")
            conn.send(iq_reply(iq, "result", query))

    # ------------------------------------------------------------ IQ-set

    async def login(self, conn: PreAuthConnection, iq: Element) -> None:
        async with pre_auth_lock(conn):
            if not self._usable(conn, iq):
                return
            try:
                request = self._parse(iq)
            except StanzaError as exc:
                conn.send(error_with_code(iq, exc.condition, exc.text))
                return
            if request.password is not None and not plaintext_allowed(conn, self.options):
                text = "plaintext passwords need TLS"
                conn.send(error_with_code(iq, StanzaErrorCondition.NOT_AUTHORIZED, text))
                return
            if request.password is not None and too_long(request.password):
                # auth/passwords.py: refused before anything prepares it; no stored
                # password is that long, so this is no guess and is not counted.
                conn.send(error_with_code(iq, StanzaErrorCondition.NOT_ACCEPTABLE, TOO_LONG))
                return
            try:
                username: str | None = prepare_username(request.username)
            except InvalidJID:
                username = None
            attempt = self._enter(conn, iq, request, username)
            if attempt is None:
                return
            gate = self.ctx.login_gate
            if username is None:
                await self._failed(conn, iq, attempt, PASSWORD, None)
                return
            try:
                mechanism, ok, held = await self._check(conn, request, username)
            except StanzaError as exc:
                # No verdict (the provider failed): the attempt's slot is freed.
                gate.released(attempt)
                conn.send(error_with_code(iq, exc.condition, exc.text, error_type=exc.error_type))
                return
            if held is not None:
                # The right password of a registration awaiting approval: no guess, so
                # its slot is freed uncounted and the client hears why at once.
                gate.released(attempt)
                log.info("login of %s@%s held: awaiting approval", username, conn.domain)
                if not conn.closed:
                    self._refuse(conn, iq, held)
                return
            if conn.closed:
                # Abandoned before its answer: a failure, holding its slot (as SASL).
                gate.failed(attempt, NOT_AUTHORIZED, username=username, mechanism=mechanism)
                return
            if not ok:
                await self._failed(conn, iq, attempt, mechanism, username)
                return
            if not conn.legacy_login_open:
                # The client started SASL (or STARTTLS) while we were checking.  The
                # credentials were right: that settles the throttle's attempt.
                gate.succeeded(attempt, username)
                conn.send(error_with_code(iq, StanzaErrorCondition.UNEXPECTED_REQUEST))
                return
            try:
                session = await conn.legacy_login(username, request.resource, mechanism, attempt)
            except StanzaError as exc:
                # XEP-0078 §3: a resource conflict the policy refuses is 409.  The
                # credentials were right: that settles the throttle's attempt.
                gate.succeeded(attempt, username)
                conn.send(error_with_code(iq, exc.condition, exc.text))
                return
            if session is None:
                # Gone while the session directory decided: right credentials all
                # the same, and nobody to answer.
                gate.succeeded(attempt, username)
                return
            conn.send(iq_reply(iq, "result"))
            if mechanism == PASSWORD and request.password is not None:
                await self._provision(username, conn.domain, request.password)

    # ------------------------------------------------------------ internals

    def _usable(self, conn: PreAuthConnection, iq: Element) -> bool:
        """Refusals common to get and set; False when an answer was sent."""
        if conn.sasl_failures:
            # XEP-0078 §Security: "If a client attempts to authenticate using the
            # 'jabber:iq:auth' namespace after an attempt at SASL authentication
            # fails, the server MUST refuse ... by returning a <policy-violation/>
            # stream error".
            conn.close_stream(StreamErrorCondition.POLICY_VIOLATION, "SASL failed before")
            return False
        if not self.options.enabled:
            # §3: "If the server does not support non-SASL authentication ... it MUST
            # return a <service-unavailable/> error."
            conn.send(error_with_code(iq, StanzaErrorCondition.SERVICE_UNAVAILABLE))
            return False
        if tls_missing(conn):
            conn.send(
                error_with_code(iq, StanzaErrorCondition.NOT_AUTHORIZED, "negotiate TLS first")
            )
            return False
        if conn.authenticated_user is not None:
            conn.send(error_with_code(iq, StanzaErrorCondition.UNEXPECTED_REQUEST))
            return False
        return True

    def _enter(
        self, conn: PreAuthConnection, iq: Element, request: _Request, username: str | None
    ) -> Attempt | None:
        """The login gate, as for SASL (`auth/gate.py`): the attempt takes a slot of its
        address and is evaluated at once, or, with no slot free, is refused
        unevaluated (None: it was answered).  A name that does not prepare is
        throttled as the client spelt it."""
        method = (
            PASSWORD
            if request.password is not None
            else DIGEST
            if request.digest is not None
            else ZERO_KNOWLEDGE
        )
        entered = self.ctx.login_gate.enter(
            PROTOCOL, method, username or request.username, conn.domain, conn.facts.remote_address
        )
        if isinstance(entered, Refuse):
            text = "too many login attempts at once; try again later"
            conn.send(error_with_code(iq, StanzaErrorCondition.RESOURCE_CONSTRAINT, text))
            return None
        return entered

    @staticmethod
    def _parse(iq: Element) -> _Request:
        query = iq.find("query", ns.IQ_AUTH)
        if query is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST)
        username = (_child_text(query, "username") or "").strip()
        resource = (_child_text(query, "resource") or "").strip()
        password = _child_text(query, "password")
        digest = _child_text(query, "digest")
        zk_hash = _child_text(query, "hash")
        credentials = [c for c in (password, digest, zk_hash) if c]
        if not username or not resource or len(credentials) != 1:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                "username, resource and one of password, digest or hash are required",
            )
        return _Request(username, resource, password or None, digest or None, zk_hash or None)

    async def _check(
        self, conn: PreAuthConnection, request: _Request, username: str
    ) -> tuple[str, bool, str | None]:
        """(mechanism name, credentials correct, the text for a right password whose
        registration awaits approval); StanzaError when the provider failed."""
        options, domain = self.options, conn.domain
        if request.password is not None:
            provider = self.ctx.host(domain).provider
            try:
                ok, held = await verify_password(provider, username, domain, request.password)
            except Exception:
                # As SASL's temporary-auth-failure: an outage is not a wrong password.
                log.exception("credential provider failed for %s@%s", username, domain)
                raise StanzaError(
                    StanzaErrorCondition.INTERNAL_SERVER_ERROR, "try again later", "wait"
                ) from None
            return PASSWORD, ok, held
        if not self._stores_secrets(domain):
            return (DIGEST if request.digest is not None else ZERO_KNOWLEDGE), False, None
        stored = await self._secrets(username, domain)
        if request.digest is not None:
            secret = stored.digest_password if stored and options.digest else None
            if secret is None:
                return DIGEST, False, None
            return DIGEST, digest_matches(conn.stream_id, secret, request.digest), None
        assert request.hash is not None
        chain = stored.zero_knowledge if stored and options.zero_knowledge else None
        if chain is None:
            return ZERO_KNOWLEDGE, False, None
        nxt = zero_knowledge_step(chain, request.hash)
        if nxt is None:
            return ZERO_KNOWLEDGE, False, None
        # Compare-and-set: a hash is good for exactly one login.
        advanced = await self.ctx.db.legacy.advance_chain((username, domain), chain, nxt)
        return ZERO_KNOWLEDGE, advanced, None

    def _stores_secrets(self, domain: str) -> bool:
        """Whether `domain`'s accounts, and so their legacy secrets, are in our store."""
        return isinstance(self.ctx.host(domain).provider, InternalProvider)

    async def _failed(
        self,
        conn: PreAuthConnection,
        iq: Element,
        attempt: Attempt,
        mechanism: str,
        username: str | None,
    ) -> None:
        """A wrong guess (`username` None: a name that does not prepare, reported
        as no name): counted, and answered after its hold."""
        hold = self.ctx.login_gate.failed(
            attempt, NOT_AUTHORIZED, username=username, mechanism=mechanism
        )
        if hold > 0:
            # Only failures are held, as for SASL; this connection's later requests
            # wait behind this one (`pre_auth_lock`), so it cannot guess meanwhile.
            await asyncio.sleep(hold)
            if conn.closed:
                return
        self._refuse(conn, iq)

    @staticmethod
    def _refuse(conn: PreAuthConnection, iq: Element, text: str = "") -> None:
        """Answer not-authorized (401); past `max_auth_failures` failed attempts on this
        stream, of any kind, close it."""
        state = connection_state(conn)
        state.failures += 1
        conn.send(error_with_code(iq, StanzaErrorCondition.NOT_AUTHORIZED, text))
        if state.failures >= conn.max_auth_failures:
            conn.close_stream(
                StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts"
            )

    async def _secrets(self, username: str, domain: str) -> LegacySecrets | None:
        owner = (username, domain)
        stored = await self.ctx.db.legacy.secrets(owner)
        if stored is None and await self.ctx.db.accounts.exists(*owner):
            return LegacySecrets()
        return stored

    async def _load_decoy(self) -> None:
        """Read (or make, once per installation) the secret that keys decoy answers."""
        secret = await self.ctx.db.secrets.get_or_create(DECOY_SECRET, os.urandom(32))
        options = self.options
        self._decoy = LegacyDecoy(
            secret,
            digest=options.digest,
            zero_knowledge=options.zero_knowledge,
            sequence=options.zero_knowledge_sequence,
        )

    def _decoy_for(self) -> LegacyDecoy:
        if self._decoy is None:
            raise RuntimeError("legacy_auth answered before the server started its modules")
        return self._decoy

    async def _provision(self, username: str, domain: str, password: str) -> None:
        """After a plaintext login, store legacy secrets the account lacks (COMPAT:
        accounts made before `digest` or `zero_knowledge` was switched on)."""
        options = self.options
        if not (options.digest or options.zero_knowledge or options.digest_md5):
            return
        owner = (username, domain)
        stored = await self.ctx.db.legacy.secrets(owner) or LegacySecrets()
        missing = (
            (options.digest and stored.digest_password is None)
            or (options.zero_knowledge and stored.zero_knowledge is None)
            or (options.digest_md5 and stored.digest_md5 is None)
        )
        if not missing or not await self.ctx.db.accounts.exists(*owner):
            return
        try:
            fresh = derive_legacy_secrets(password, username, domain, options)
        except ValueError:
            return
        merged = LegacySecrets(
            stored.digest_password or fresh.digest_password,
            stored.digest_md5 or fresh.digest_md5,
            stored.zero_knowledge or fresh.zero_knowledge,
        )
        await self.ctx.db.legacy.set_secrets(owner, merged)
