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
from chatgate.xmpp.events import AccountRemoving, RemoteSessionLost, SessionClosed

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
            # An identity whose node died: one surviving node deletes it.
            yield OnEvent(RemoteSessionLost, self._remote_session_lost, priority=-50)

    async def _session_closed(self, event: SessionClosed) -> None:
        session = event.session
        await self._ended(session.username, session.domain)

    async def _remote_session_lost(self, event: RemoteSessionLost) -> None:
        username, _, domain = event.bare.partition("@")
        cluster = self.ctx.cluster
        if cluster is None or not self.ctx.is_anonymous(domain):
            return
        # Every survivor hears of the death; the first to take this key cleans up.
        key = cluster.key("anonymous-end", event.bare)
        if not await cluster.redis.set(key, cluster.name, nx=True, px=60_000):
            return
        await self._ended(username, domain)

    async def _ended(self, username: str, domain: str) -> None:
        if not self.ctx.is_anonymous(domain):
            return
        bare = f"{username}@{domain}"
        bound = self.ctx.router.directory.bound_anywhere(bare)
        if bound if isinstance(bound, bool) else await bound:
            return  # another session of the identity is still bound
        owner = (username, domain)
        try:
            # The row's cascade deletes what the identity owns; what it left in
            # others' rosters (requests it sent, contacts it had) is withdrawn by
            # the presence module.
            await self.ctx.hooks.notify(AccountRemoving(*owner))
        finally:
            await self.ctx.db.accounts.delete_anonymous(domain, username)
        log.info("anonymous %s ended: its data is deleted", bare)


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
        # In a cluster, identities live on other nodes stay (the mirror is loaded).
        suffix = "@" + host.domain
        live = {b[: -len(suffix)] for b in ctx.router.directory.table if b.endswith(suffix)}
        count = await ctx.db.accounts.delete_anonymous(host.domain, keep=live)
        if count:
            log.info("deleted %d anonymous identities left on %s", count, host.domain)
        if live:
            continue  # contacts naming live identities stay; their ends clean up
        traces = await ctx.db.roster.forget_contacts_on(host.domain)
        if traces:
            log.info("deleted %d roster items and requests naming %s", traces, host.domain)
