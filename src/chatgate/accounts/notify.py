"""Telling every process that an account's credentials changed.

Credential caches (`auth/internal.py`'s keys and pending names, `streams`' key
owners) live in each process that logs users in.  A change made anywhere must
reach all of them, or a deleted account logs in on a cached key.  The account
service tells a `CredentialsChanged` after every change it makes; the local
implementation here drops the entry in this process's provider and bumps the
credentials stamp file (`bump_credentials_stamp`), which every other process on
the data directory watches.  Nodes of a cluster, which share no data directory, also
publish every change over Redis (`chatgate.cluster.notify`), and each applies
the others' changes with this same `LocalCredentialsChanged`.

A stamp that cannot be written raises (OSError): the change is stored, but a
running server would not learn of it, and the caller must say so.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from chatgate.auth.internal import InternalProvider, bump_credentials_stamp


class ChangeKind(enum.Enum):
    """What happened to an account's credentials."""

    CREATED = "created"  # a new account
    HELD = "held"  # a registration awaiting approval was made (the name is taken)
    RESOLVED = "resolved"  # a registration awaiting approval was approved or rejected
    PASSWORD = "password"  # new keys and legacy secrets
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    DELETED = "deleted"  # the account, and a registration of its name if any

    @property
    def new_name(self) -> bool:
        """A name that had no credentials now has some: nothing cached goes stale,
        only caches that know every name must learn it."""
        return self in (ChangeKind.CREATED, ChangeKind.HELD)


@dataclass(frozen=True, slots=True)
class CredentialChange:
    username: str
    domain: str
    kind: ChangeKind


class CredentialsChanged(Protocol):
    """Told after every change the account service made (and stored)."""

    async def credentials_changed(self, change: CredentialChange) -> None: ...


#: the internal provider serving a domain in this process, or None
ProviderOf = Callable[[str], InternalProvider | None]


class LocalCredentialsChanged:
    """This process's provider learns at once; the other processes on the data
    directory through the credentials stamp.

    `provider_of` is None in a process that serves no logins (the command line).
    `announce_new_names` False spares the stamp for CREATED and HELD: the server
    runs as the only process on its data directory (``reuse_port`` is refused), so
    nobody else caches names, and a burst of registrations must not drop its own
    whole cache at each one; the command line announces them, for the server.
    `data_dir` None: no stamp (tests, a provider without one).
    """

    def __init__(
        self,
        data_dir: Path | None,
        provider_of: ProviderOf | None = None,
        *,
        announce_new_names: bool = True,
    ) -> None:
        self._data_dir = data_dir
        self._provider_of = provider_of
        self._announce_new_names = announce_new_names

    async def credentials_changed(self, change: CredentialChange) -> None:
        self.apply(change)

    def apply(self, change: CredentialChange) -> None:
        """`credentials_changed`, synchronously (it never waits: a cluster node applies
        the changes other nodes made from its pub/sub handler)."""
        owner = (change.username, change.domain)
        provider = None if self._provider_of is None else self._provider_of(change.domain)
        if provider is not None:
            if change.kind in (ChangeKind.RESOLVED, ChangeKind.DELETED):
                provider.pending_resolved(*owner)  # forgets the keys too
            else:
                provider.invalidate(*owner)
            if change.kind is ChangeKind.HELD:
                # Its login with the right password is told why not.
                provider.pending_added(*owner)
        if self._data_dir is None or (change.kind.new_name and not self._announce_new_names):
            return
        bump_credentials_stamp(self._data_dir)
