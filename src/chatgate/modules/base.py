"""The module contract: a small class whose `setup()` returns registrations.

The `ModuleContext` applies each registration and records it, so stopping a
module removes everything it added (no hand-written teardown).

A module's options, the `[modules.NAME]` table, are described by its `Options`
model; `modules.registry.validate_module_options` checks every table against
them before anything starts, so `chatgate check` and the server's start refuse
a misspelt module or option instead of a module ignoring it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from chatgate.auth.gate import Attempt
    from chatgate.config import Config
    from chatgate.hooks import Hooks
    from chatgate.jid import JID
    from chatgate.storage.database import Database
    from chatgate.vhost import VirtualHost
    from chatgate.vocabulary.errors import StreamErrorCondition
    from chatgate.vocabulary.facts import ConnectionFacts
    from chatgate.xml.element import Element
    from chatgate.xmpp.router import Router
    from chatgate.xmpp.session import C2SSession
    from chatgate.xmpp.stages import StanzaStage

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Spec:
    """A protocol a module implements, e.g. ``Spec("XEP-0199", "2.0.1")``."""

    name: str
    version: str = ""


IqCallable = Callable[["C2SSession", "Element"], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class IqHandler:
    """Answers IQs of `type` whose payload is in `namespace`.

    `to_account=True` also routes IQs addressed to a local account's bare JID
    (e.g. vcard-temp or disco#info on a user) to this handler.
    """

    namespace: str
    type: str  # "get" or "set"
    handler: IqCallable
    to_server: bool = True
    to_account: bool = False


@dataclass(frozen=True, slots=True)
class DiscoFeature:
    """A `var` listed in the server's disco#info (XEP-0030)."""

    var: str
    on_account: bool = False


@dataclass(frozen=True, slots=True)
class StreamFeature:
    """A stream feature element (serialized), offered after authentication, or before
    it when `pre_auth` (e.g. XEP-0077 `<register/>`, XEP-0078 `<auth/>`)."""

    xml: str
    pre_auth: bool = False
    #: offered only on these virtual hosts (None: on every one)
    hosts: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class OnStart:
    """Work a module must finish once before the listeners open (e.g. storing what
    its configuration names, so that it holds from the first connection on)."""

    run: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OnStop:
    """Work a module does once when the server stops cleanly (e.g. handing what it
    holds to another cluster node): after the sessions are closed and the
    background work drained, before the cluster node leaves and the database
    closes.  Run in reverse load order; each is cancelled after `timeout` seconds
    (and its failure logged) so that a stuck module cannot hold the shutdown."""

    run: Callable[[], Awaitable[None]]
    timeout: float = 10.0


class PreAuthConnection(Protocol):
    """What a pre-authentication IQ handler (XEP-0077 registration, XEP-0078 legacy
    authentication) may use of the connection it came on: facts and answers, never
    the negotiation core's own state (the connection driver implements it)."""

    @property
    def facts(self) -> ConnectionFacts: ...

    @property
    def domain(self) -> str:
        """The virtual host the stream header chose."""
        ...

    @property
    def stream_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def requires_tls(self) -> bool:
        """The listener refuses authentication before TLS (RFC 6120 §5.3.1)."""
        ...

    @property
    def sasl_failures(self) -> int:
        """Failed SASL attempts on this stream so far."""
        ...

    @property
    def max_auth_failures(self) -> int: ...

    @property
    def authenticated_user(self) -> str | None: ...

    @property
    def session(self) -> C2SSession | None:
        """The session bound on this connection (a handler's state can go then)."""
        ...

    @property
    def legacy_login_open(self) -> bool:
        """No SASL exchange is under way and none has succeeded: a legacy login may
        still open the session."""
        ...

    def send(self, el: Element) -> None: ...

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str = ""
    ) -> None: ...

    async def legacy_login(
        self, username: str, resource: str, mechanism: str, attempt: Attempt
    ) -> C2SSession | None:
        """Open the session of an XEP-0078 login checked through the login gate and
        settle `attempt` as succeeded; raises StanzaError (then `attempt` is the
        caller's to settle, as it is when None says the connection closed while the
        session directory decided)."""
        ...


PreAuthCallable = Callable[[PreAuthConnection, "Element"], "Awaitable[None]"]


@dataclass(frozen=True, slots=True)
class PreAuthIqHandler:
    """Answers IQs of `type` in `namespace` before authentication (registration,
    legacy authentication). The handler gets the connection, whose `send`,
    `facts`, `domain` (the virtual host), `stream_id` and `legacy_login` it may
    use; logins are entered and settled through `ServerContext.login_gate`."""

    namespace: str
    type: str
    handler: PreAuthCallable


@dataclass(frozen=True, slots=True)
class OnEvent:
    event: type
    handler: Callable[[Any], Any]
    priority: int = 0


ServiceCallable = Callable[["C2SSession", "Element", "JID"], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class ServiceDomain:
    """A service on a domain of its own (XEP-0045 rooms on ``conference.example.org``,
    XEP-0363 uploads on ``upload.example.org``): every stanza a local client sends
    to `domain`, or to any JID on it, goes to `handler` (the session, the stanza
    with 'from' stamped, the parsed 'to') instead of the router's account rules;
    the service answers through the router.

    `parent` (a served virtual host) lists the service in its disco#items, under
    `name`."""

    domain: str
    handler: ServiceCallable
    parent: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Stage:
    """A `StanzaStage` the router runs on messages and IQs between accounts
    (`xmpp/stages.py`); higher `priority` runs first (blocking before archiving
    before carbons)."""

    stage: StanzaStage
    priority: int = 0


Registration = (
    IqHandler
    | PreAuthIqHandler
    | DiscoFeature
    | StreamFeature
    | OnEvent
    | OnStart
    | OnStop
    | ServiceDomain
    | Stage
)


class NoOptions(BaseModel):
    """The options of a module that takes none: its `[modules.NAME]` table, if any,
    must be empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Module(Protocol):
    """A feature module.

    Besides the members below, a module that takes options declares them as a
    class attribute ``Options``: the pydantic model of its `[modules.NAME]` table,
    with a default and a docstring per field (`options_model` reads it; a module
    without one takes no options, `NoOptions`).  Every table is checked against
    its model before any module is set up (`validate_module_options`), and
    `setup()` reads its options with ``ctx.options(name, Options)``.  Keys the
    model does not name are refused whatever its `extra` setting; rules that
    span fields belong in the model (a `model_validator`), so that `chatgate
    check` reports them too.
    """

    name: ClassVar[str]
    depends: ClassVar[tuple[str, ...]]
    implements: ClassVar[tuple[Spec, ...]]

    def setup(self, ctx: Any) -> Iterable[Registration]:
        """Registrations for `ctx` (a `ModuleContext`; modules annotate the concrete
        `ServerContext` they are given)."""
        ...


class ModuleContext(Protocol):
    """The part of the server context every module relies on (`context.py`'s
    `ServerContext` is the implementation); modules reach further only through
    what they declare in `depends`."""

    config: Config
    db: Database
    hooks: Hooks
    router: Router
    hosts: dict[str, VirtualHost]
    domain: str

    def options(self, name: str, model: type[M]) -> M: ...


def options_model(module: type) -> type[BaseModel]:
    """The options model the module class `module` declares (`NoOptions` when it
    declares none).  Raises TypeError when its ``Options`` is not a pydantic model."""
    model = getattr(module, "Options", None)
    if model is None:
        return NoOptions
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{module!r}.Options is not a pydantic model")
    return model


@dataclass
class ModuleRecord:
    module: Module
    registrations: list[Registration] = field(default_factory=list)
