"""XEP-0050 ad-hoc commands with XEP-0133 service administration.

Wiring only: the module reads `[modules.adhoc]`, builds the commands
(`admin.py` for administrators, `user.py` for everyone), the session table
(`sessions.py`) and the runner (`runner.py`), answers ``<command/>`` IQs to
the server, and lets disco list the commands (XEP-0050 §2: disco#items on
node ``http://jabber.org/protocol/commands`` gives each command the requester
may run; disco#info on a command's node its identity).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chatgate.jid import JID, InvalidJID
from chatgate.modules.adhoc.admin import AdminCommands
from chatgate.modules.adhoc.command import Command
from chatgate.modules.adhoc.runner import CommandError, CommandRunner
from chatgate.modules.adhoc.sessions import LocalCommandSessions
from chatgate.modules.adhoc.user import MySessions, PingCommand
from chatgate.modules.base import DiscoFeature, IqHandler, Registration, Spec
from chatgate.modules.disco import Disco, NodeAnswer, NodeItem
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError
from chatgate.vocabulary.ns import COMMANDS
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.context import ServerContext


class AdHocOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer ad-hoc commands (XEP-0050) and, to `admins`, service administration (XEP-0133)."""
    admins: list[str] = []
    """Bare JIDs of the XMPP administrators: they may add, delete and change accounts,
    end sessions, count users and announce, on every served domain."""
    session_lifetime: Annotated[float, Field(ge=10, le=86400)] = 600.0
    """Seconds a multi-stage command waits for the requester's next step; after it the
    session is gone (`session-expired`)."""
    max_sessions_per_account: Annotated[int, Field(ge=1, le=100)] = 5
    """Command sessions one account may have open at once (past it: `resource-constraint`)."""
    max_sessions: Annotated[int, Field(ge=1)] = 10_000
    """Command sessions open at once in one server process."""

    @field_validator("admins")
    @classmethod
    def _bare_jids(cls, admins: list[str]) -> list[str]:
        prepared = []
        for text in admins:
            try:
                jid = JID.parse(text)
            except InvalidJID as exc:
                raise ValueError(f"{text!r} is not a JID: {exc}") from None
            if not jid.local or jid.resource:
                raise ValueError(f"{text!r} is not a bare JID (user@domain)")
            prepared.append(str(jid))
        return prepared


class AdHocCommands:
    name: ClassVar[str] = "adhoc"
    depends: ClassVar[tuple[str, ...]] = ("disco",)
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0050", "1.3.0"), Spec("XEP-0133", "1.3.1"))
    Options: ClassVar[type[BaseModel]] = AdHocOptions

    #: the runner, once set up (None when disabled)
    runner: CommandRunner | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, AdHocOptions)
        if not options.enabled:
            return
        admins = frozenset(options.admins)
        commands: list[Command] = [
            PingCommand(),
            MySessions(ctx),
            *AdminCommands(ctx, admins).commands(),
        ]
        sessions = LocalCommandSessions(
            lifetime=options.session_lifetime,
            per_account=options.max_sessions_per_account,
            total=options.max_sessions,
        )
        runner = self.runner = CommandRunner(
            {c.node: c for c in commands}, sessions, time.monotonic
        )

        def resolve(session: C2SSession, host: str, node: str) -> NodeAnswer | None:
            requester = JID(session.username, session.domain, session.resource)
            if node == COMMANDS:
                listed = runner.visible(requester, host)
                return NodeAnswer(
                    (("automation", "command-list", "Commands"),),
                    items=tuple(NodeItem(host, c.node, c.name) for c in listed),
                )
            if node not in runner.commands:
                return None
            try:
                command = runner.command_for(node, requester, host)
            except CommandError as exc:
                raise StanzaError(exc.condition, exc.text) from None
            return NodeAnswer(
                (("automation", "command-node", command.name),), (COMMANDS, ns.DATA_FORMS)
            )

        disco = ctx.modules["disco"].module
        assert isinstance(disco, Disco)
        disco.nodes.append(resolve)
        # FIXME: a `DiscoNode` registration in modules/base.py would let the context
        # remove this resolver when the module stops; today it stays with disco.
        yield IqHandler(COMMANDS, "set", runner.handle)
        yield DiscoFeature(COMMANDS)
