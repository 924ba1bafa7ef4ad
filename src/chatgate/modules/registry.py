"""The built-in modules, in load order (a module's dependencies come before it), and
the check of every `[modules.*]` table against the modules' option models.

The check runs before anything starts (`chatgate check`, `Server.start`): a
table naming no module, or an option its module does not have, is an error
naming the key, never a setting silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from chatgate.config import Config
from chatgate.modules.adhoc import AdHocCommands
from chatgate.modules.anonymous import AnonymousCleanup
from chatgate.modules.base import Module, options_model
from chatgate.modules.blocking import Blocking
from chatgate.modules.bookmarks import Bookmarks
from chatgate.modules.carbons import Carbons
from chatgate.modules.csi import ClientStateIndication
from chatgate.modules.disco import Disco
from chatgate.modules.legacy_auth import LegacyAuth
from chatgate.modules.mam.module import MessageArchive
from chatgate.modules.muc.module import MultiUserChat
from chatgate.modules.offline import OfflineMessages
from chatgate.modules.pep import PersonalEventing
from chatgate.modules.presence import PresenceModule
from chatgate.modules.private_storage import PrivateStorage
from chatgate.modules.push import PushNotifications
from chatgate.modules.register import Register
from chatgate.modules.roster.module import RosterModule
from chatgate.modules.services import EntityTime, LegacySession, Ping, SoftwareVersion
from chatgate.modules.stream_management import StreamManagement
from chatgate.modules.stream_tokens import StreamTokens
from chatgate.modules.upload import HttpUpload
from chatgate.modules.vcard import VCard
from chatgate.registry import Registry
from chatgate.vocabulary.errors import ConfigError


def builtin_modules(*, load_entry_points: bool = True) -> Registry[type[Module]]:
    """The built-in modules, then those of the `chatgate.modules` entry-point group
    (unless `load_entry_points` is false: tests that must not see installed plugins)."""
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
        StreamTokens,
        # XEP-0479 (Advanced IM and Mobile); archiving comes before the rooms that use it
        Blocking,
        MessageArchive,
        Carbons,
        PushNotifications,
        MultiUserChat,
        PersonalEventing,
        PrivateStorage,
        Bookmarks,
        AdHocCommands,
        HttpUpload,
        StreamManagement,
        ClientStateIndication,
    ):
        registry.register(module.name, module)
    if load_entry_points:
        registry.load_entry_points("chatgate.modules")
    return registry


def validate_module_options(
    config: Config, registry: Registry[type[Module]]
) -> dict[str, BaseModel]:
    """Check every `[modules.NAME]` table of `config` against the options model of
    module NAME in `registry`; return the validated options of every module there
    (defaults where the configuration has no table).

    Raises ConfigError listing every problem at once, one line per key, in the
    style of `config.load_config`: a table naming no module (``modules.regster: no
    such module (known: …)``), an option the model does not name, at any depth
    (``modules.register.enabeld: unknown option``), and a value the model refuses
    (``modules.legacy_auth.digest: Input should be a valid boolean``).  A plugin
    whose ``Options`` is not a pydantic model is reported against its name.
    """
    problems: list[str] = []
    for name in config.modules:
        if name not in registry:
            known = ", ".join(sorted(registry.names()))
            problems.append(
                f"  modules.{name}: no such module (known: {known}){_guess(name, registry)}"
            )
    validated: dict[str, BaseModel] = {}
    for name in registry.names():
        try:
            model = options_model(registry.get(name))
        except TypeError as exc:
            problems.append(f"  modules.{name}: the module's options cannot be checked: {exc}")
            continue
        table = config.modules.get(name, {})
        try:
            validated[name] = _validate(name, model, table)
        except _Invalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))
    return validated


class _Invalid(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems


def _validate(name: str, model: type[BaseModel], table: dict[str, object]) -> BaseModel:
    """`table` validated by `model`; raises _Invalid with one line per problem.

    Top-level keys are compared with the model's fields here, so that a plugin's
    model that forgot ``extra="forbid"`` still refuses a misspelt option; deeper
    ones are left to the nested models (ours all forbid extras)."""
    fields = _option_names(model)
    problems = [
        f"  modules.{name}.{key}: unknown option{_guess(key, fields)}"
        for key in table
        if key not in fields
    ]
    try:
        options = model.model_validate({k: v for k, v in table.items() if k in fields})
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in (name, *err["loc"]))
            if err["type"] == "extra_forbidden":
                message = "unknown option"
            else:
                message = err["msg"].removeprefix("Value error, ")
            problems.append(f"  modules.{where}: {message}")
    if problems:
        raise _Invalid(problems)
    return options


def _option_names(model: type[BaseModel]) -> list[str]:
    """The keys `model` accepts: its field names and their aliases."""
    names: list[str] = []
    for field_name, info in model.model_fields.items():
        names.append(field_name)
        if info.alias:
            names.append(info.alias)
    return names


def _guess(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean X?" for a near miss (a typo), else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""
