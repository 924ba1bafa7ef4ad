"""Anonymous identities leave nothing behind (RFC 4505 on an anonymous virtual host).

An ANONYMOUS login gets an account row for its random localpart so that the
roster, vCard and everything else that hangs off an account work during the
session.  When the identity's last session ends, this module deletes the row
and, by cascade, all it owned; the identity stops existing (messages to it
bounce instead of being stored, `ServerContext.account_exists`).  Rows left by
a crash are deleted when the server starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from chatgate.modules.base import OnEvent, Registration, Spec
from chatgate.vocabulary.errors import ConfigError
from chatgate.xmpp.events import AccountRemoving, SessionClosed

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)


class AnonymousCleanup:
    name: ClassVar[str] = "anonymous"
    depends: ClassVar[tuple[str, ...]] = ("roster", "presence")
    implements: ClassVar[tuple[Spec, ...]] = (Spec("RFC 4505"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        if any(host.anonymous for host in ctx.hosts.values()):
            # After presence (100) has told contacts, before the roster (-100) forgets.
            yield OnEvent(SessionClosed, self._session_closed, priority=-50)

    async def _session_closed(self, event: SessionClosed) -> None:
        session = event.session
        if not self.ctx.is_anonymous(session.domain):
            return
        bound = self.ctx.router.directory.bound_anywhere(session.bare)
        if bound if isinstance(bound, bool) else await bound:
            return  # another session of the identity is still bound
        owner = (session.username, session.domain)
        try:
            # The row's cascade deletes what the identity owns; what it left in
            # others' rosters (requests it sent, contacts it had) is withdrawn by
            # the presence module.
            await self.ctx.hooks.notify(AccountRemoving(*owner))
        finally:
            await self.ctx.db.accounts.delete_anonymous(session.domain, session.username)
        log.info("anonymous %s ended: its data is deleted", session.bare)


async def purge_anonymous_hosts(ctx: ServerContext) -> None:
    """Delete what anonymous sessions of an earlier run left (a crash skips the
    per-session cleanup); called once at start, before the listeners open.

    Only identities made by ANONYMOUS logins go.  A domain that also holds
    ordinary accounts (it was served with passwords before) stops the start:
    those accounts would be unreachable, and deleting them is the operator's call.
    """
    for host in ctx.hosts.values():
        if not host.anonymous:
            continue
        kept = await ctx.db.accounts.count(host.domain, anonymous=False)
        if kept:
            raise ConfigError(
                f'hosts."{host.domain}": anonymous = true, but the domain has {kept}'
                " ordinary account(s), which it would hide; serve guests on another"
                " domain, or move or delete those accounts first (with anonymous = false,"
                " `chatgate user list/del` manage them)"
            )
        count = await ctx.db.accounts.delete_anonymous(host.domain)
        if count:
            log.info("deleted %d anonymous identities left on %s", count, host.domain)
        traces = await ctx.db.roster.forget_contacts_on(host.domain)
        if traces:
            log.info("deleted %d roster items and requests naming %s", traces, host.domain)
