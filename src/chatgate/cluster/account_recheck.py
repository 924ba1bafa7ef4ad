"""After an outage of Redis, this node's sessions of accounts deleted or locked
meanwhile end.

Deleting or locking an account closes its sessions on every node: the changing
node sends each other node a CLOSE over Redis.  A node that had lost Redis
could not hear it, and would keep serving a deleted or locked account's
sessions for as long as they last.  So once the cluster has resynchronised
(`ClusterNode.on_resynced`), a node reads which of its sessions' accounts still
exist and which are locked, and ends the others as the deletion or the lock
would have.

A session bound before the account now of its name was created belongs to a
deleted account, whose name was registered again meanwhile: it ends too.

The changing node keeps the closes it could not send itself
(`ClusterSessionDirectory.close_sessions`) and sends them after the resync: a
lock's only while the account is still locked or gone (`owed_closes_that_hold`:
it may have been unlocked meanwhile); a deletion's always (the old sessions are
not those of an account registered under the name since), and so does an
administrator's end of a session.

Only accounts of the internal store are read: another provider's accounts
(HTTP, LDAP) are not ours to judge.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatgate.accounts.server import internal_provider_of
from chatgate.accounts.service import LOCKED_TEXT, REMOVED_TEXT
from chatgate.storage.errors import StorageError
from chatgate.vocabulary.errors import StreamErrorCondition

if TYPE_CHECKING:
    from chatgate.cluster.directory import ClusterSessionDirectory
    from chatgate.cluster.node import ClusterNode
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

#: seconds by which a session must predate its account's creation to be taken for
#: a deleted account's (the account was created on another node, by its clock)
CLOCK_MARGIN = 2.0


async def end_sessions_of_gone_accounts(
    ctx: ServerContext, directory: ClusterSessionDirectory
) -> int:
    """Close this node's sessions whose account was deleted (or deleted and made
    again: the session was bound before the account now of its name was created)
    or locked; returns how many sessions were closed."""
    local = directory.local
    owners: dict[tuple[str, str], str] = {}
    for bare in list(local):
        username, _, domain = bare.partition("@")
        if internal_provider_of(ctx, domain) is not None:
            owners[(username, domain)] = bare
    if not owners:
        return 0
    try:
        standing = await ctx.db.accounts.standing(owners)
    except StorageError as exc:
        log.warning("cluster: cannot check this node's sessions' accounts (%s)", exc)
        return 0
    ended = 0
    for owner, bare in owners.items():
        found = standing.get(owner)
        # still this node's sessions (the read awaited): closed as the change would
        for session in list(local.get(bare, {}).values()):
            bound = directory.bound_at(session)
            if found is None:
                text = REMOVED_TEXT
            elif found[0]:
                text = LOCKED_TEXT
            elif bound is not None and bound < found[1].timestamp() - CLOCK_MARGIN:
                text = REMOVED_TEXT  # an account of its name made since it was bound
            else:
                continue
            session.close(StreamErrorCondition.NOT_AUTHORIZED, text)
            ended += 1
    if ended:
        log.warning(
            "cluster: %d sessions of accounts deleted or locked while Redis was away were closed",
            ended,
        )
    return ended


async def owed_closes_that_hold(
    ctx: ServerContext, owed: dict[str, tuple[StreamErrorCondition, str]]
) -> set[str]:
    """The accounts (of `owed`: account -> condition, text) whose owed close still
    holds: a lock's only while the account is locked (or gone), every other one
    (a deletion: the name may have been registered again meanwhile, its old
    sessions must still end; an administrator's end of a session).  The
    database away: every one (a close is undone by logging in again; a session
    of a deleted account is not)."""
    holding: set[str] = set()
    owners: dict[tuple[str, str], str] = {}
    for bare, (condition, text) in owed.items():
        username, _, domain = bare.partition("@")
        if condition is StreamErrorCondition.NOT_AUTHORIZED and text == LOCKED_TEXT:
            owners[(username, domain)] = bare
        else:
            holding.add(bare)
    if owners:
        try:
            standing = await ctx.db.accounts.standing(owners)
        except StorageError as exc:
            log.warning("cluster: cannot check the accounts of owed closes (%s)", exc)
            return set(owed)
        for owner, bare in owners.items():
            found = standing.get(owner)
            if found is None or found[0]:
                holding.add(bare)
    return holding


def recheck_accounts_after_outages(
    ctx: ServerContext, node: ClusterNode, directory: ClusterSessionDirectory
) -> None:
    async def recheck() -> None:
        await end_sessions_of_gone_accounts(ctx, directory)

    node.on_resynced(recheck)

    async def holding(owed: dict[str, tuple[StreamErrorCondition, str]]) -> set[str]:
        return await owed_closes_that_hold(ctx, owed)

    directory.owed_check = holding
