"""XEP-0357 push notifications: wake a user's sleeping phone when a message waits.

A client registers an app server (`<enable jid=... node=...>`, with the
publish-options the app server needs, usually a secret); from then on, each
message that reaches the account while no session got it (the router's
`delivered` with no target: the message went to offline storage) makes the
server notify every registration of the account:

* by default, a XEP-0357 pubsub publish IQ from the user's bare JID to the app
  server, through the router: only an app server connected here as a client
  (a full JID on a served domain) can be reached, since there is no federation
  or component protocol yet;
* or, when ``[modules.push] http_url`` is set, a small JSON POST there (an
  operator's own push gateway), with bounded concurrency and a timeout.

Notifications carry a message count, and the sender and the body only when the
options say so.  Each registration is notified at most once per
`min_interval`; messages meanwhile are counted into one notification sent when
the interval ends (`NotificationLimiter`, in `push_limits.py`).  Nothing here
awaits inside routing: the stage hands the work to a bounded number of
background tasks.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Collection, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from chatgate.jid import JID, InvalidJID
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    OnEvent,
    OnStart,
    Registration,
    Spec,
    Stage,
)
from chatgate.modules.dataforms import FormField, build_form, find_form, read_submission
from chatgate.modules.push_limits import (
    Defer,
    LocalNotificationLimiter,
    NotificationLimiter,
    Send,
)
from chatgate.modules.push_registered import KnownRegistrations, RegisteredAccounts
from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog
from chatgate.storage.repositories.push import PushRepository, PushTarget, TooManyRegistrations
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import PUBLISH_OPTIONS, PUBSUB, PUSH, PUSH_SUMMARY
from chatgate.xml.element import Element
from chatgate.xmpp.events import SessionClosed, SessionHibernated, SessionResumed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionMovedOut
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)


#: the stored publish-options of one registration, serialized (a secret and a few
#: fields in practice): more is refused not-acceptable
MAX_OPTIONS_BYTES = 4096
MAX_NODE_CHARS = 1023
#: a notification's body, when `include_body`, is cut to this: a preview, not the message
MAX_BODY_CHARS = 512


class Options(BaseModel):
    """``[modules.push]``"""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer XEP-0357 push registrations (XEP-0479 Advanced Mobile)."""
    max_registrations: int = Field(10, ge=1, le=1000)
    """Registrations (devices) one account may hold; more: resource-constraint."""
    min_interval: float = Field(5.0, ge=0.0, le=3600.0)
    """Seconds between two notifications to one registration; messages meanwhile
    are counted into one notification sent when the interval ends."""
    include_sender: bool = False
    """Put the sender's JID in notifications (`last-message-sender`)."""
    include_body: bool = False
    """Put the message body in notifications (`last-message-body`): the app server
    and the phone vendor's push service then see it."""
    http_url: str | None = None
    """Instead of publishing to the app server over XMPP, POST a JSON summary here
    (e.g. ``https://push.example.org/notify``)."""
    http_timeout: float = Field(10.0, gt=0.0, le=300.0)
    """Seconds one POST may take in all."""
    http_concurrency: int = Field(8, ge=1, le=1000)
    """POSTs in flight at once; more wait for a free one."""
    max_pending: int = Field(1000, ge=1)
    """Notifications waiting or in flight at once; past it new ones are dropped (logged)."""
    limiter_entries: int = Field(10_000, ge=1)
    """Registrations whose last notification time is remembered (LRU)."""


# ------------------------------------------------------------------ the module


class PushNotifications:
    name: ClassVar[str] = "push"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0357", "0.4.1"),)
    Options = Options

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, Options)
        if not options.enabled:
            return
        self.ctx = ctx
        self.options = options
        self.repository = PushRepository(ctx.db.engine)
        local = LocalNotificationLimiter(options.min_interval, options.limiter_entries)
        self.limiter: NotificationLimiter = local
        registered: RegisteredAccounts = KnownRegistrations(self.repository.registered)
        if ctx.cluster is not None:
            from chatgate.cluster.push_registered import ClusterRegisteredAccounts

            # Every node's enables reach every node's set.
            registered = ClusterRegisteredAccounts(
                ctx.cluster, self.repository.registered, ctx.spawn
            )
            if ctx.peers.clustered:
                from chatgate.cluster.push import RedisNotificationLimiter

                # One slot per registration for all nodes (the local one serves
                # while Redis is away).
                self.limiter = RedisNotificationLimiter(ctx.cluster, options.min_interval, local)
        self.notifier = Notifier(ctx, self.repository, self.limiter, options, registered)
        yield IqHandler(PUSH, "set", self._set)
        yield DiscoFeature(PUSH, on_account=True)
        yield DiscoFeature(PUSH)
        stage = PushStage(self.notifier, ctx.router.directory.hibernated_elsewhere)
        yield Stage(stage, priority=-10)
        yield OnEvent(SessionHibernated, stage.hibernating)
        yield OnEvent(SessionResumed, stage.back)
        yield OnEvent(SessionClosed, stage.back)
        yield OnEvent(SessionMovedOut, stage.back)  # resumed on another node
        yield OnStart(registered.start)

    async def _set(self, session: C2SSession, iq: Element) -> None:
        to = iq.get("to")
        if to and to not in (session.bare, session.domain):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "push registrations are your own")
        owner = (session.username, session.domain)
        enable = iq.find("enable", PUSH)
        disable = iq.find("disable", PUSH)
        if enable is not None:
            service, node = _service(enable), enable.get("node")
            if not node:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "<enable/> needs a node")
            if len(node) > MAX_NODE_CHARS:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "node too long")
            options = _publish_options(enable)
            try:
                await self.repository.enable(
                    owner, service, node, options, self.options.max_registrations
                )
            except TooManyRegistrations as exc:
                raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, str(exc)) from None
            await self.notifier.registered.added(session.bare)
        elif disable is not None:
            await self.repository.disable(owner, _service(disable), disable.get("node") or None)
        else:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "expected <enable/> or <disable/>")
        reply = iq_result(iq)
        reply.attrs["to"] = session.full
        reply.attrs.pop("from", None)
        session.send(reply)


def _service(el: Element) -> str:
    text = el.get("jid")
    if not text:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the app server's jid is missing")
    try:
        return str(JID.parse(text))
    except InvalidJID as exc:
        raise StanzaError(StanzaErrorCondition.JID_MALFORMED, str(exc)) from None


def _publish_options(enable: Element) -> dict[str, list[str]]:
    """XEP-0357 §5: the optional publish-options form, kept to be sent back."""
    form = find_form(enable)
    if form is None:
        return {}
    try:
        submission = read_submission(form)
    except ValueError as exc:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, str(exc)) from None
    if submission.form_type != PUBLISH_OPTIONS:
        raise StanzaError(
            StanzaErrorCondition.BAD_REQUEST, f"the form's FORM_TYPE must be {PUBLISH_OPTIONS}"
        )
    if len(json.dumps(submission.values).encode()) > MAX_OPTIONS_BYTES:
        raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "publish-options too large")
    return submission.values


class PushStage:
    """Hears where messages went; one that went nowhere may wake a phone."""

    def __init__(self, notifier: Notifier, elsewhere: Collection[object] = frozenset()) -> None:
        self.notifier = notifier
        #: this node's sessions waiting to be resumed (XEP-0198): a message written
        #: only to those reached no device, so it wakes one (XEP-0357 §1)
        self.hibernated: set[C2SSession] = set()
        #: the same for sessions on other nodes (the directory's live set)
        self.elsewhere = elsewhere

    def hibernating(self, event: SessionHibernated) -> None:
        self.hibernated.add(event.session)

    def back(self, event: SessionResumed | SessionClosed | SessionMovedOut) -> None:
        self.hibernated.discard(event.session)

    def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
        return True

    def delivered(self, stanza: Element, to: JID, targets: Sequence[C2SSession]) -> None:
        if targets:
            here, elsewhere = self.hibernated, self.elsewhere
            if not (here or elsewhere):
                return  # nothing waits anywhere: a message that went somewhere reached a device
            for target in targets:
                if target not in here and target not in elsewhere:
                    return
        if (stanza.get("type") or "normal") not in ("chat", "normal"):
            return
        body = stanza.find("body", ns.CLIENT)
        if body is None:
            return  # chat states, receipts: nothing to wake a phone for
        self.notifier.message_for(
            f"{to.local}@{to.domain}", stanza.get("from") or "", body.text[:MAX_BODY_CHARS]
        )


class Notifier:
    """Reads an account's registrations and notifies each, bounded in tasks."""

    def __init__(
        self,
        ctx: ServerContext,
        repository: PushRepository,
        limiter: NotificationLimiter,
        options: Options,
        registered: RegisteredAccounts,
    ) -> None:
        self.ctx = ctx
        self.repository = repository
        self.limiter = limiter
        self.options = options
        #: a message for an account without a registration needs no read
        self.registered = registered
        self.pending = 0
        self.dropped = 0
        self.sent = 0
        self._http = asyncio.Semaphore(options.http_concurrency)
        #: one line per database outage, not a traceback per message
        self._outage = OutageLog(log, "push")

    def message_for(self, bare: str, sender: str, body: str) -> None:
        if not self.registered.may_have(bare):
            return  # no device registered: nothing to read, nobody to notify
        self._start(self._notify(bare, sender, body))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, unless `max_pending` tasks already run."""
        if self.pending >= self.options.max_pending:
            work.close()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("push: %d notifications dropped (max_pending)", self.dropped)
            return
        self.pending += 1

        async def run() -> None:
            try:
                await work
            finally:
                self.pending -= 1

        self.ctx.spawn(run())

    async def _notify(self, bare: str, sender: str, body: str) -> None:
        local, _, domain = bare.partition("@")
        try:
            targets = await self.repository.targets((local, domain))
        except StorageUnavailable as exc:
            self._outage.failed(f"the registrations of {bare}", exc)
            return
        loop = asyncio.get_running_loop()
        for target in targets:
            key = f"{bare}\0{target.service}\0{target.node}"
            decision = self.limiter.admit(key, loop.time(), sender, body)
            if inspect.isawaitable(decision):
                decision = await decision
            if isinstance(decision, Send):
                # each registration on its own: one slow app server delays no other
                self._start(self._send(bare, target, decision.count, sender, body))
            elif isinstance(decision, Defer):
                self._start(self._later(bare, target, key, decision.delay))

    async def _later(self, bare: str, target: PushTarget, key: str, delay: float) -> None:
        await asyncio.sleep(delay)
        found = self.limiter.flush(key, asyncio.get_running_loop().time())
        if inspect.isawaitable(found):
            found = await found
        if found is not None:
            await self._send(bare, target, *found)

    async def _send(
        self, bare: str, target: PushTarget, count: int, sender: str, body: str
    ) -> None:
        options = self.options
        sender = sender if options.include_sender else ""
        body = body if options.include_body else ""
        if options.http_url is not None:
            await self._post(bare, target, count, sender, body)
        else:
            self._publish(bare, target, count, sender, body)

    def _publish(self, bare: str, target: PushTarget, count: int, sender: str, body: str) -> None:
        """XEP-0357 §7: a pubsub publish to the app server, from the user's bare JID."""
        try:
            service = JID.parse(target.service)
        except InvalidJID:
            return
        iq = publish_iq(bare, target, count, sender, body)
        reachable = service.domain in self.ctx.hosts and service.local and service.resource
        if reachable and self.ctx.router.deliver_to_full(service, iq):
            self.sent += 1
            return
        log.info("push: app server %s of %s is not reachable from here", target.service, bare)

    async def _post(
        self, bare: str, target: PushTarget, count: int, sender: str, body: str
    ) -> None:
        url = self.options.http_url
        assert url is not None
        summary: dict[str, object] = {
            "account": bare,
            "service": target.service,
            "node": target.node,
            "options": target.options,
            "message_count": count,
        }
        if sender:
            summary["last_message_sender"] = sender
        if body:
            summary["last_message_body"] = body
        timeout = aiohttp.ClientTimeout(total=self.options.http_timeout)
        async with self._http:
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as http,
                    http.post(url, json=summary) as response,
                ):
                    if response.status >= 300:
                        log.warning("push: %s answered %d for %s", url, response.status, bare)
                        return
                    self.sent += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("push: POST to %s failed for %s: %r", url, bare, exc)


def publish_iq(bare: str, target: PushTarget, count: int, sender: str, body: str) -> Element:
    """The notification of XEP-0357 §7 for `target`."""
    iq = Element(
        "iq",
        ns.CLIENT,
        {"type": "set", "from": bare, "to": target.service, "id": "push" + os.urandom(6).hex()},
    )
    pubsub = iq.sub("pubsub", PUBSUB)
    item = pubsub.sub("publish", attrs={"node": target.node}).sub("item")
    fields = [FormField("message-count", values=(str(count),))]
    if sender:
        fields.append(FormField("last-message-sender", values=(sender,)))
    if body:
        fields.append(FormField("last-message-body", values=(body,)))
    item.sub("notification", PUSH).append(build_form(PUSH_SUMMARY, fields, form="submit"))
    if target.options:
        extra = [FormField(var, values=tuple(values)) for var, values in target.options.items()]
        pubsub.sub("publish-options").append(build_form(PUBLISH_OPTIONS, extra, form="submit"))
    return iq
