"""Commands any account may run on its own server: harmless, about itself only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chatgate.jid import JID
from chatgate.modules.adhoc.command import Call, Outcome, Page, Values
from chatgate.modules.dataforms import FormField, build_form

if TYPE_CHECKING:
    from chatgate.context import ServerContext

#: FORM_TYPE and node prefix of chatgate's own commands
CHATGATE_COMMANDS = "urn:chatgate:commands"


class MySessions:
    """The requester's own connected resources, on every node (a result form)."""

    node = f"{CHATGATE_COMMANDS}#my-sessions"
    name = "List my sessions"
    pages: Sequence[Page] = ()

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def allowed(self, requester: JID, host: str) -> bool:
        return requester.domain == host

    async def finish(self, call: Call, values: Values) -> Outcome:
        bare = str(call.requester.bare)
        resources = self.ctx.router.directory.table.get(bare, {})
        listed = tuple(sorted(f"{bare}/{r}" for r in resources))
        form = build_form(
            CHATGATE_COMMANDS,
            (FormField("sessions", "jid-multi", "Sessions", values=listed),),
            form="result",
        )
        return Outcome(form=form)


class PingCommand:
    """``ping``: a command that answers "Pong" and the server's time, to check that
    commands work at all (the node Prosody and ejabberd clients know)."""

    node = "ping"
    name = "Ping"
    pages: Sequence[Page] = ()

    def allowed(self, requester: JID, host: str) -> bool:
        return True

    async def finish(self, call: Call, values: Values) -> Outcome:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Outcome(f"Pong\n{now}")
