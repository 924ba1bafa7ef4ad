"""Build a route set's `AuthChain` from the method names `[admin]` lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatgate.http.auth.base import AuthChain
from chatgate.vocabulary.errors import ConfigError

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.http.admin_options import AdminOptions


async def build_chain(ctx: ServerContext, options: AdminOptions, names: Sequence[str]) -> AuthChain:
    raise ConfigError(f"[admin] auth: methods {', '.join(names)} are not available yet")
