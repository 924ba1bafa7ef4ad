"""The XEP-0050 exchange: actions, sessions and the `<command/>` answers.

Theory of operation (XEP-0050 §3, §4):

- ``execute`` without a sessionid starts a command: a command without pages
  runs at once and answers ``status='completed'``; one with pages opens a
  session (`sessions.py`) and shows page 0 with ``status='executing'``.
- With a sessionid, ``next`` submits the page shown and shows the next one,
  ``prev`` shows the previous one, ``complete`` submits the last page and runs
  the command, ``cancel`` forgets the session (``status='canceled'``), and
  ``execute`` is the default action the last answer advertised (§3.4: "the
  'execute' attribute ... designates the default action").  An action the page
  did not advertise is ``bad-action``.
- Errors (§4.6) are RFC 6120 conditions with a commands child: an unknown
  action ``bad-request``/``malformed-action``, an unknown or foreign session
  ``bad-request``/``bad-sessionid``, an expired one ``not-allowed``/
  ``session-expired``, a submitted form this page cannot take
  ``bad-request``/``bad-payload``.  A command the requester may not run is
  ``forbidden`` (listed to nobody but those it allows), an unknown node
  ``item-not-found``, no room for another session ``resource-constraint``.

A submitted form keeps only the fields its page declares (at most
`MAX_VALUES` values of `MAX_VALUE_CHARS` each), and a session holds at most
`MAX_SESSION_CHARS` in all (past it the session ends with ``bad-payload``):
what a requester can make the server hold between steps is bounded whatever
it sends.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from chatgate.jid import JID, InvalidJID
from chatgate.modules.adhoc.command import Call, Command, Outcome, Page, Values
from chatgate.modules.adhoc.sessions import CommandSession, CommandSessions, Lookup, SessionsFull
from chatgate.modules.dataforms import find_form, read_submission
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.vocabulary.ns import COMMANDS
from chatgate.xml.element import Element
from chatgate.xmpp.stanza import error_reply, iq_result

if TYPE_CHECKING:
    from chatgate.xmpp.session import C2SSession

log = logging.getLogger(__name__)

ACTIONS = frozenset({"execute", "next", "prev", "complete", "cancel"})
#: values kept per submitted field
MAX_VALUES = 256
#: characters kept per submitted value
MAX_VALUE_CHARS = 4096
#: characters a session may hold over all its pages (what waits between steps)
MAX_SESSION_CHARS = 65_536


class CommandError(Exception):
    """Answer the IQ with `condition` and XEP-0050's `specific` child (§4.6)."""

    def __init__(
        self, condition: StanzaErrorCondition, specific: str | None = None, text: str = ""
    ) -> None:
        super().__init__(text or condition.value)
        self.condition = condition
        self.specific = specific
        self.text = text


class CommandRunner:
    """Runs `commands` (by node) for requesters; `clock` gives monotonic seconds."""

    def __init__(
        self,
        commands: Mapping[str, Command],
        sessions: CommandSessions,
        clock: Callable[[], float],
    ) -> None:
        self.commands = commands
        self.sessions = sessions
        self.clock = clock

    def visible(self, requester: JID, host: str) -> list[Command]:
        """The commands `requester` may run on `host`, in their registration order."""
        return [c for c in self.commands.values() if c.allowed(requester, host)]

    def command_for(self, node: str, requester: JID, host: str) -> Command:
        """The command at `node`; CommandError item-not-found / forbidden."""
        command = self.commands.get(node)
        if command is None:
            raise CommandError(StanzaErrorCondition.ITEM_NOT_FOUND, text="no such command")
        if not command.allowed(requester, host):
            raise CommandError(StanzaErrorCondition.FORBIDDEN, text="you may not run this command")
        return command

    async def handle(self, session: C2SSession, iq: Element) -> None:
        """Answer one ``<iq type='set'><command/></iq>`` from `session`."""
        try:
            payload = await self._answer(session, iq)
        except CommandError as exc:
            session.send(_error(iq, session, exc))
            return
        reply = iq_result(iq, payload)
        reply.attrs["to"] = session.full
        session.send(reply)

    async def _answer(self, session: C2SSession, iq: Element) -> Element:
        request = iq.find("command", COMMANDS)
        assert request is not None  # dispatched on this payload
        host = _host(iq, session)
        requester = JID(session.username, session.domain, session.resource)
        node = request.get("node") or ""
        if not node:
            raise CommandError(StanzaErrorCondition.BAD_REQUEST, text="the command has no node")
        action = request.get("action") or "execute"
        if action not in ACTIONS:
            raise CommandError(StanzaErrorCondition.BAD_REQUEST, "malformed-action")
        command = self.command_for(node, requester, host)
        call = Call(session, requester, host)
        session_id = request.get("sessionid")
        if not session_id:
            if action != "execute":
                raise CommandError(StanzaErrorCondition.BAD_REQUEST, "bad-sessionid")
            return await self._start(command, call)
        found = self.sessions.get(session.full, session_id, self.clock())
        if found is Lookup.EXPIRED:
            raise CommandError(StanzaErrorCondition.NOT_ALLOWED, "session-expired")
        if isinstance(found, Lookup) or found.node != node or found.host != host:
            raise CommandError(StanzaErrorCondition.BAD_REQUEST, "bad-sessionid")
        return await self._step(command, call, found, action, request)

    async def _start(self, command: Command, call: Call) -> Element:
        if not command.pages:
            outcome = await self._finish(command, call, Values())
            return _completed(command.node, secrets.token_hex(12), outcome)
        try:
            opened = self.sessions.open(call.session.full, command.node, call.host, self.clock())
        except SessionsFull as exc:
            raise CommandError(StanzaErrorCondition.RESOURCE_CONSTRAINT, text=str(exc)) from None
        return _executing(command, opened)

    async def _step(
        self, command: Command, call: Call, open_: CommandSession, action: str, request: Element
    ) -> Element:
        last = len(command.pages) - 1
        if action == "cancel":
            self.sessions.close(open_.owner, open_.id)
            return _status(command.node, open_.id, "canceled")
        if action == "execute":  # the default action this page advertised
            action = "complete" if open_.page >= last else "next"
        if action == "prev":
            if open_.page == 0:
                raise CommandError(StanzaErrorCondition.BAD_REQUEST, "bad-action")
            open_.page -= 1
            return _executing(command, open_)
        if (action == "next") == (open_.page >= last):
            # next past the last page, or complete before it: not advertised
            raise CommandError(StanzaErrorCondition.BAD_REQUEST, "bad-action")
        page = command.pages[open_.page]
        open_.values.update(_submitted(page, request))
        if sum(len(v) for values in open_.values.values() for v in values) > MAX_SESSION_CHARS:
            self.sessions.close(open_.owner, open_.id)
            raise CommandError(
                StanzaErrorCondition.BAD_REQUEST,
                "bad-payload",
                f"the forms hold more than {MAX_SESSION_CHARS} characters",
            )
        missing = [
            f.label or f.var
            for f in page.fields
            if f.required and not any(v.strip() for v in open_.values.get(f.var, ()))
        ]
        if missing:
            raise CommandError(
                StanzaErrorCondition.BAD_REQUEST,
                "bad-payload",
                f"required: {', '.join(missing)}",
            )
        if action == "next":
            open_.page += 1
            return _executing(command, open_)
        self.sessions.close(open_.owner, open_.id)
        outcome = await self._finish(command, call, Values(dict(open_.values)))
        return _completed(command.node, open_.id, outcome)

    async def _finish(self, command: Command, call: Call, values: Values) -> Outcome:
        try:
            return await command.finish(call, values)
        except Exception:
            log.exception("ad-hoc command %s failed for %s", command.node, call.requester)
            raise CommandError(
                StanzaErrorCondition.INTERNAL_SERVER_ERROR, text="the command failed"
            ) from None


def _host(iq: Element, session: C2SSession) -> str:
    """The served domain the command was sent to; commands are the server's, so
    one addressed to an account is refused (service-unavailable)."""
    to = iq.get("to")
    if not to:
        return session.domain
    try:
        target = JID.parse(to)
    except InvalidJID:
        raise CommandError(StanzaErrorCondition.JID_MALFORMED) from None
    if target.local or target.resource:
        raise CommandError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
    return target.domain


def _submitted(page: Page, request: Element) -> dict[str, list[str]]:
    """The page's fields from the submitted form (none when no form came);
    CommandError bad-payload for a form that is no submission or another form."""
    form = find_form(request)
    if form is None:
        return {}
    try:
        submission = read_submission(form)
    except ValueError as exc:
        raise CommandError(StanzaErrorCondition.BAD_REQUEST, "bad-payload", str(exc)) from None
    if submission.form_type is not None and submission.form_type != page.form_type:
        raise CommandError(
            StanzaErrorCondition.BAD_REQUEST, "bad-payload", "the form is not this command's"
        )
    kept: dict[str, list[str]] = {}
    for var, values in submission.values.items():
        if page.field(var) is not None:
            kept[var] = [v[:MAX_VALUE_CHARS] for v in values[:MAX_VALUES]]
    return kept


def _status(node: str, session_id: str, status: str) -> Element:
    return Element("command", COMMANDS, {"node": node, "sessionid": session_id, "status": status})


def _executing(command: Command, open_: CommandSession) -> Element:
    """The page `open_` is on, with the actions it allows (§3.4)."""
    el = _status(command.node, open_.id, "executing")
    last = open_.page >= len(command.pages) - 1
    actions = el.sub("actions", attrs={"execute": "complete" if last else "next"})
    if open_.page > 0:
        actions.sub("prev")
    actions.sub("complete" if last else "next")
    el.append(command.pages[open_.page].form())
    return el


def _completed(node: str, session_id: str, outcome: Outcome) -> Element:
    el = _status(node, session_id, "completed")
    if outcome.note:
        el.sub("note", attrs={"type": outcome.note_type}, text=outcome.note)
    if outcome.form is not None:
        el.append(outcome.form)
    return el


def _error(iq: Element, session: C2SSession, exc: CommandError) -> Element:
    reply = error_reply(iq, exc.condition, exc.text)
    reply.attrs["to"] = session.full
    if exc.specific is not None:
        error = reply.find("error")
        assert error is not None
        error.sub(exc.specific, COMMANDS)
    return reply
