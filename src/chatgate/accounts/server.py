"""The account service inside a running server: its live side and its notifier.

`ServerAccounts` is the `LiveAccounts` of a server process: before a deletion it
raises `AccountRemoving` (the presence module withdraws the account's
subscriptions, in stored and in-memory rosters, while it still exists), and it
closes an account's sessions through the router.  `server_account_service` builds
the service a module or the admin API uses, with the notifier that drops this
process's cached credentials at once (and, on a cluster node, every node's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatgate.accounts.notify import CredentialsChanged, LocalCredentialsChanged
from chatgate.accounts.service import AccountRules, AccountService, PasswordRecipe
from chatgate.auth.internal import InternalProvider
from chatgate.auth.policy import AccountPolicy
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xmpp.events import AccountRemoving

if TYPE_CHECKING:
    from chatgate.context import ServerContext


class ServerAccounts:
    """`LiveAccounts` over a server's hooks and router."""

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx

    async def withdraw(self, username: str, domain: str) -> None:
        await self._ctx.hooks.notify(AccountRemoving(username, domain))

    def end_sessions(self, username: str, domain: str, text: str) -> int:
        return self._ctx.router.directory.close_sessions(
            f"{username}@{domain}", StreamErrorCondition.NOT_AUTHORIZED, text
        )


def internal_provider_of(ctx: ServerContext, domain: str) -> InternalProvider | None:
    """The internal provider serving `domain`, or None (another provider keeps its
    accounts, or it is not served)."""
    host = ctx.hosts.get(domain)
    provider = None if host is None else host.provider
    return provider if isinstance(provider, InternalProvider) else None


def server_account_service(ctx: ServerContext, policy: AccountPolicy) -> AccountService:
    """The account service of a running server, under `policy` (`[modules.register]`
    configures it: `RegisterOptions.account_policy`)."""
    recipe = PasswordRecipe(
        ctx.config.auth.scram_iterations, ctx.options("legacy_auth", LegacyAuthOptions)
    )
    changed: CredentialsChanged = LocalCredentialsChanged(
        ctx.config.data_dir,
        lambda domain: internal_provider_of(ctx, domain),
        announce_new_names=False,
    )
    if ctx.cluster is not None:  # every node learns (`cluster/notify.py`)
        from chatgate.cluster.notify import cluster_notifier

        changed = cluster_notifier(ctx.cluster, changed)
    return AccountService(ctx.db, AccountRules(policy, recipe), changed, live=ServerAccounts(ctx))
