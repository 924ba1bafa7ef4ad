"""The built-in modules, in load order (a module's dependencies come before it)."""

from __future__ import annotations

from chatgate.modules.anonymous import AnonymousCleanup
from chatgate.modules.base import Module
from chatgate.modules.disco import Disco
from chatgate.modules.legacy_auth import LegacyAuth
from chatgate.modules.offline import OfflineMessages
from chatgate.modules.presence import PresenceModule
from chatgate.modules.register import Register
from chatgate.modules.roster.module import RosterModule
from chatgate.modules.services import EntityTime, LegacySession, Ping, SoftwareVersion
from chatgate.modules.vcard import VCard
from chatgate.registry import Registry


def builtin_modules() -> Registry[type[Module]]:
    registry: Registry[type[Module]] = Registry("module")
    for module in (
        LegacySession,
        RosterModule,
        PresenceModule,
        OfflineMessages,
        Disco,
        Ping,
        SoftwareVersion,
        EntityTime,
        VCard,
        Register,
        LegacyAuth,
        AnonymousCleanup,
    ):
        registry.register(module.name, module)  # type: ignore[arg-type]
    registry.load_entry_points("chatgate.modules")
    return registry
