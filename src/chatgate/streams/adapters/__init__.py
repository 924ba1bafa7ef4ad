"""Media-server adapters: each turns one media server's hook requests into a
`Question` for the stream authority and the authority's `Verdict` into the exact
response that media server accepts.

The shared types live in `base` (re-exported here); the form and credential
conventions in `form`; one module per media server.  `builtin_adapters` lists
the built-ins by their registry names (the URL segment under ``/hooks/``);
third-party adapters come from the entry-point group ``chatgate.stream_adapters``.
Nothing here registers itself on import, awaits, reads the clock or logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from chatgate.registry import Registry
from chatgate.streams.adapters.base import (
    Adapter,
    CredentialKind,
    Credentials,
    HookAction,
    HookRequest,
    HookResponse,
    Question,
    Verdict,
    VerdictKind,
)
from chatgate.streams.adapters.mediamtx import MediaMtxAdapter
from chatgate.streams.adapters.nginx_rtmp import NginxRtmpAdapter
from chatgate.streams.adapters.red5 import Red5Adapter
from chatgate.streams.adapters.srs import SrsAdapter
from chatgate.streams.adapters.wowza import WowzaTokenAdapter

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "AdapterFactory",
    "CredentialKind",
    "Credentials",
    "HookAction",
    "HookRequest",
    "HookResponse",
    "Question",
    "Verdict",
    "VerdictKind",
    "builtin_adapters",
]

ENTRY_POINT_GROUP: Final = "chatgate.stream_adapters"

AdapterFactory = Callable[..., Adapter]
"""An adapter class: called with its own keyword options (``node=...`` and, for
some, more: see each module), it returns an `Adapter`."""


_BUILTINS: Final[tuple[tuple[str, AdapterFactory], ...]] = (
    (NginxRtmpAdapter.name, NginxRtmpAdapter),
    (MediaMtxAdapter.name, MediaMtxAdapter),
    (SrsAdapter.name, SrsAdapter),
    (Red5Adapter.name, Red5Adapter),
    (WowzaTokenAdapter.name, WowzaTokenAdapter),
)


def builtin_adapters(*, load_entry_points: bool = True) -> Registry[AdapterFactory]:
    """The built-in adapters by name (``"nginx-rtmp"``, ...), plus installed ones.

    The registry holds factories, not configured objects: the routes build one
    adapter per configured media server with its options (its node name, Red5's
    application, Wowza's shared secret)."""
    registry: Registry[AdapterFactory] = Registry("stream adapter")
    for name, factory in _BUILTINS:
        registry.register(name, factory)
    if load_entry_points:
        registry.load_entry_points(ENTRY_POINT_GROUP)
    return registry
