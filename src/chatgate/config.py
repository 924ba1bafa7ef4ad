"""Configuration: one TOML file parsed into pydantic models at start.

Every option has a default and a docstring; unknown keys are errors; a bad
value stops the start with a message naming the option (never a warning and a
fallback).  Paths are resolved relative to the configuration file's folder.
"""

from __future__ import annotations

import enum
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chatgate.auth.options import ProviderConfig
from chatgate.auth.throttle import ThrottleOptions
from chatgate.cluster.options import ClusterOptions
from chatgate.http.admin_options import AdminOptions
from chatgate.http.options import HttpOptions
from chatgate.streams.options import StreamsOptions
from chatgate.vocabulary.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


#: `[auth] mechanisms` when the operator does not set it: channel binding first (RFC 5802
#: §6: a -PLUS mechanism is offered only where the connection has a binding, so the same
#: list serves every listener), then SCRAM by hash strength, then PLAIN (TLS only).
DEFAULT_MECHANISMS: tuple[str, ...] = (
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
)
#: Put before `DEFAULT_MECHANISMS` when `[tls] client_certificates` asks for certificates
#: and `[auth] mechanisms` is unset.  It is offered only to a client whose certificate
#: verified (XEP-0178 §3), which presented it to log in with it.
CERTIFICATE_MECHANISM = "EXTERNAL"


class TlsMode(enum.Enum):
    STARTTLS = "starttls"  # RFC 6120 §5: plain TCP, upgraded with <starttls/>
    DIRECT = "direct"  # XEP-0368: TLS from the first byte
    NONE = "none"  # no TLS at all (loopback benchmarks only)


#: Why `reuse_port` (and `chatgate serve --workers`) needs `[cluster] enabled`.
REUSE_PORT_NEEDS_CLUSTER = (
    "needs [cluster] enabled = true: processes sharing a port would otherwise each have"
    " their own session table and could not deliver to each other's sessions (set"
    " [cluster] redis_url and a [storage] url every process shares, or run one process)"
)


class ListenerConfig(_Model):
    """A c2s listener."""

    type: Literal["c2s"] = "c2s"
    host: str = "127.0.0.1"
    """Address to bind; loopback by default."""
    port: Annotated[int, Field(ge=0, le=65535)] = 5222
    """TCP port; 0 picks a free one (tests)."""
    tls: TlsMode = TlsMode.STARTTLS
    """`starttls`, `direct` (XEP-0368) or `none`."""
    require_tls: bool = True
    """Refuse SASL until TLS is active (RFC 6120 §5.3.1 "mandatory-to-negotiate")."""
    mechanisms: list[str] | None = None
    """Overrides `[auth] mechanisms` for this listener."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT, so that several processes on this machine share the port
    (the kernel spreads connections among them).  Only with `[cluster] enabled`: the
    processes then deliver to each other's sessions through Redis.  `chatgate serve
    --workers N` sets it on every listener itself."""


#: Fewest characters in a component's shared secret (XEP-0114 §3: the handshake hashes it
#: with the stream id; a short one is guessed).  slixmpp's own CI uses ``secret``, so six.
MIN_COMPONENT_SECRET = 6
#: A component domain: DNS labels of letters, digits and hyphens, in lower case, at least two.
_COMPONENT_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


class ComponentConfig(_Model):
    """An XEP-0114 external component, `[[components]]`: a program that connects to the
    component listener and serves a whole domain (a gateway, a bot), as Prosody's
    `Component "gw.example.org"` with `component_secret`."""

    domain: str
    """The domain the component serves: every stanza to it or to a JID on it goes to
    the component.  Not a virtual host, nor a service's domain (MUC, upload)."""
    secret: str | None = None
    """The shared secret the component's handshake proves (at least six characters;
    use a long random one, e.g. `openssl rand -hex 32`).  Exactly one of `secret` and
    `secret_file`."""
    secret_file: Path | None = None
    """A file holding the shared secret (surrounding whitespace ignored), relative to
    the configuration file: keeps the secret out of a configuration under version
    control.  Read at start."""
    name: str = ""
    """The name listed beside the domain in the parent host's disco#items."""
    parent: str | None = None
    """The virtual host whose disco#items list the component; unset, the served
    domain the component's domain ends with (`gw.example.org` -> `example.org`),
    else `[server] domain`."""

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if len(value) > 253 or not _COMPONENT_DOMAIN.match(value):
            raise ValueError(
                f"{value!r} is not a component domain: a lower-case DNS name of at least"
                " two labels, such as 'gateway.example.org'"
            )
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ComponentConfig:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError(f"{self.domain}: give exactly one of secret and secret_file")
        if self.secret is not None and len(self.secret) < MIN_COMPONENT_SECRET:
            raise ValueError(
                f"{self.domain}: the secret is shorter than {MIN_COMPONENT_SECRET} characters"
            )
        return self


class ComponentListenerConfig(_Model):
    """Where XEP-0114 components connect (`[component_listener]`); it is opened only
    when `[[components]]` are configured.  Plain TCP, as Prosody's and ejabberd's
    component ports: keep it on loopback or a private network."""

    host: str = "127.0.0.1"
    """Address to bind; loopback by default."""
    port: Annotated[int, Field(ge=0, le=65535)] = 5347
    """TCP port (5347, the customary component port); 0 picks a free one (tests)."""
    handshake_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds a connection may take from its first byte to a successful handshake."""
    failure_delay: Annotated[float, Field(ge=0)] = 2.0
    """Seconds before a wrong handshake is answered with `not-authorized` (slows down
    guessing, as failed SASL attempts are)."""


class TlsConfig(_Model):
    certificate: Path | None = None
    """PEM certificate chain; when unset, a self-signed one is generated under `data_dir/certs`."""
    private_key: Path | None = None
    """PEM private key for `certificate`."""
    key_type: Literal["ec", "rsa"] = "ec"
    """Key type of a generated certificate: ECDSA P-256 (cheaper handshakes) or RSA 2048."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Lowest TLS version accepted."""
    max_version: Literal["1.2", "1.3"] = "1.3"
    """Highest TLS version offered (1.2 only to test or serve TLS 1.2-only channel bindings)."""
    channel_bindings: list[Literal["tls-exporter", "tls-unique", "tls-server-end-point"]] = [
        "tls-exporter",
        "tls-unique",
        "tls-server-end-point",
    ]
    """Channel-binding types offered to SCRAM-*-PLUS (XEP-0440), where the connection allows
    them: tls-exporter on TLS 1.3 (1.2 only with extended master secret), tls-unique on
    TLS 1.2 with extended master secret only, tls-server-end-point whenever the certificate's
    signature names one hash. An empty list turns every -PLUS mechanism off."""
    client_certificates: Literal["disabled", "wanted", "needed"] = "disabled"
    """Client certificates (EXTERNAL, XEP-0178), like Openfire's `xmpp.client.cert.policy`:
    `disabled` never asks; `wanted` asks and lets a client without a trusted one in (EXTERNAL
    is then not offered); `needed` fails the TLS handshake without a trusted certificate."""
    trust_files: list[Path] = []
    """PEM files of CA certificates that issue client certificates."""
    trust_dirs: list[Path] = []
    """Folders of CA certificates in OpenSSL's hashed layout (`openssl rehash`)."""
    accept_self_signed: bool = False
    """Trust a self-signed client certificate that no configured CA issued. Anyone can make
    such a certificate naming any JID: only for closed test networks."""
    revoked_fingerprints: list[str] = []
    """SHA-256 fingerprints (hex, colons optional) of client or CA certificates to refuse."""
    identity_sources: list[Literal["xmpp-addr", "email", "cn"]] = ["xmpp-addr"]
    """Where a client certificate's JIDs come from, in order: `xmpp-addr` (id-on-xmppAddr,
    RFC 6120 §13.7.1.4), `email` (rfc822Name / emailAddress), `cn` (subject common name).
    The first source that names any JID of this domain wins."""
    auto_provision: bool = False
    """Let EXTERNAL log in a certificate identity that has no account yet."""

    @field_validator("revoked_fingerprints")
    @classmethod
    def _fingerprints(cls, values: list[str]) -> list[str]:
        normalized = []
        for value in values:
            hexed = value.replace(":", "").strip().lower()
            if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
                raise ValueError(f"{value!r} is not a SHA-256 fingerprint")
            normalized.append(hexed)
        return normalized

    @field_validator("identity_sources")
    @classmethod
    def _sources(cls, values: list[str]) -> list[str]:
        if not values or len(set(values)) != len(values):
            raise ValueError("list each identity source once, at least one")
        return values


class StorageConfig(_Model):
    url: str = "sqlite+aiosqlite:///var/chatgate.db"
    """SQLAlchemy URL; relative SQLite paths are relative to the config file."""


class AuthConfig(_Model):
    mechanisms: list[str] = list(DEFAULT_MECHANISMS)
    """SASL mechanisms offered, in this order (a whitelist: others are never offered).
    Unset: channel binding (-PLUS) first, with EXTERNAL in front where `[tls]
    client_certificates` is `wanted` or `needed`; a list that is set is used as written."""
    allow_plain_without_tls: bool = False
    """Offer plaintext mechanisms before TLS. Only for loopback benchmarks."""
    scram_iterations: Annotated[int, Field(ge=4096, le=10_000_000)] = 4096
    """PBKDF2 iteration count for newly stored SCRAM keys (RFC 7677 asks for at least 4096)."""
    auth_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds a connection may take from its first byte to a bound session (jabberd's
    `authtime`); past it the stream is closed with `connection-timeout`."""
    credential_cache_size: Annotated[int, Field(ge=0)] = 100_000
    """Accounts whose SCRAM keys are kept in memory for logins without a database round trip."""
    throttle: ThrottleOptions = ThrottleOptions()
    """Brute-force protection and registration rate limits (`[auth.throttle]`)."""
    provider: ProviderConfig = ProviderConfig()
    """Where authentication gets its answers (`[auth.provider]`): `internal`, `http`,
    `extauth`, `ldap` or a plugin's provider."""


class AnonymousLimits(_Model):
    """How often one address may start an ANONYMOUS session (RFC 4505 §4 asks servers to
    limit them: each is a fresh identity, free to abuse)."""

    per_address: Annotated[int, Field(ge=1)] = 10
    """ANONYMOUS logins one address may make per `period`."""
    total: Annotated[int, Field(ge=1)] = 300
    """ANONYMOUS logins the whole host accepts per `period`."""
    period: Annotated[float, Field(gt=0)] = 60.0
    """Seconds over which the counts above apply."""


class HostConfig(_Model):
    """A further virtual host, `[hosts."example.net"]`, served next to `[server] domain`.

    Unset options inherit the `[auth]` ones.  An anonymous host (`anonymous = true`)
    offers only SASL ANONYMOUS (RFC 4505): each login gets a random localpart, and
    everything the session created (roster, offline messages, vCard) is deleted when
    it ends, as Prosody's `authentication = "anonymous"` hosts do.
    """

    anonymous: bool = False
    """Serve this domain to anonymous users only (ANONYMOUS, nothing persisted)."""
    anonymous_limits: AnonymousLimits = AnonymousLimits()
    """Rate limits of ANONYMOUS logins on this host (`[hosts."NAME".anonymous_limits]`)."""
    mechanisms: list[str] | None = None
    """SASL mechanisms offered on this host, in order; unset: `[auth] mechanisms`
    (`["ANONYMOUS"]` on an anonymous host)."""
    provider: ProviderConfig | None = None
    """This host's credential provider (`[hosts."NAME".provider]`); unset: `[auth.provider]`."""


class ResourceConflict(enum.Enum):
    NEWEST_WINS = "newest"  # the old session gets <conflict/> and is closed
    REJECT_NEW = "reject"  # the new bind gets a <conflict/> stanza error
    RANDOMIZE = "randomize"  # the new session gets a server-chosen resource


class SessionConfig(_Model):
    resource_conflict: ResourceConflict = ResourceConflict.NEWEST_WINS
    """What happens when a client binds a resource that is already online."""
    max_resources: Annotated[int, Field(ge=1)] = 10
    """Sessions one account may have at once."""


class LimitsConfig(_Model):
    max_stanza_size: Annotated[int, Field(ge=1024)] = 262_144
    """Bytes in one stanza; larger gives `policy-violation` (RFC 6120 §13.12)."""
    max_depth: Annotated[int, Field(ge=4, le=1000)] = 64
    """Element nesting depth inside one stanza."""
    preauth_max_stanza_size: Annotated[int, Field(ge=1024)] = 65_536
    """Bytes in one top-level element before authentication (SASL, registration and
    legacy-auth IQs are small); larger gives `policy-violation`.  COMPAT: a session
    opened by XEP-0078 legacy authentication keeps this limit (its stream never restarts)."""
    max_offline_messages: Annotated[int, Field(ge=0)] = 500
    """Offline messages kept per account (XEP-0160); more bounce with `service-unavailable`."""
    max_offline_bytes: Annotated[int, Field(ge=0)] = 2_097_152
    """Bytes of offline messages kept per account, counted as stored (re-serialized:
    escaping and namespace declarations can make that several times the size that
    arrived); more bounce with `service-unavailable`.  All of it is written to the
    session at login, so keep it well below `max_output_buffer`."""
    max_offline_messages_per_sender: Annotated[int, Field(ge=0)] = 100
    """Of `max_offline_messages`, how many one sender (bare JID) may hold for one
    account, so that one sender cannot fill the store and lock others out; more
    bounce with `service-unavailable`."""
    max_offline_bytes_per_sender: Annotated[int, Field(ge=0)] = 524_288
    """Of `max_offline_bytes`, how many one sender (bare JID) may hold for one account;
    more bounce with `service-unavailable`."""
    max_roster_items: Annotated[int, Field(ge=1)] = 1000
    """Roster items per account: a roster set, subscription request, approval or
    pre-approval that would add one more is refused with `resource-constraint`."""
    max_roster_name_length: Annotated[int, Field(ge=1)] = 256
    """Characters in a roster item's 'name'; longer is `not-acceptable` (RFC 6121 §2.3.3)."""
    max_roster_group_length: Annotated[int, Field(ge=1)] = 256
    """Characters in one roster group name; longer is `not-acceptable` (RFC 6121 §2.3.3)."""
    max_groups_per_roster_item: Annotated[int, Field(ge=0)] = 16
    """Groups one roster item may be in; more are `not-acceptable`."""
    max_subscription_requests: Annotated[int, Field(ge=1)] = 500
    """Unanswered inbound subscription requests kept per account; a new request past
    it is not stored and its sender gets `resource-constraint`."""
    max_directed_presences: Annotated[int, Field(ge=0)] = 1000
    """Entities one session may have sent directed presence to (remembered so that they
    get its unavailable presence, RFC 6121 §4.6); more are refused with
    `resource-constraint` and not routed."""
    c2s_rate: Annotated[int, Field(ge=0)] = 262_144
    """Bytes per second read from one established client connection (0: no limit);
    a client sending faster is read more slowly (Prosody's mod_limits)."""
    c2s_burst: Annotated[int, Field(ge=1024)] = 1_048_576
    """Bytes an established connection may send at once above `c2s_rate`."""
    preauth_rate: Annotated[int, Field(ge=0)] = 16_384
    """Bytes per second read from a connection before its session is bound (0: no limit)."""
    preauth_burst: Annotated[int, Field(ge=1024)] = 65_536
    """Bytes a connection may send at once before its session is bound."""
    preauth_stanzas_per_second: Annotated[float, Field(gt=0)] = 10.0
    """Top-level elements per second handled for a connection before its session is
    bound; more wait their turn (reading pauses meanwhile)."""
    preauth_stanza_burst: Annotated[int, Field(ge=4)] = 30
    """Top-level elements handled at once before the session is bound."""
    max_preauth_connections_per_address: Annotated[int, Field(ge=1)] = 128
    """Connections one address may hold before their sessions are bound; more are
    closed with `policy-violation`."""
    max_output_buffer: Annotated[int, Field(ge=65_536)] = 4_194_304
    """Bytes waiting to be sent to one client that does not read; past it the session is
    closed with `policy-violation` (ejabberd's per-session queue limit)."""


class ServerConfig(_Model):
    domain: str = "localhost"
    """The XMPP domain served."""
    data_dir: Path = Path("var")
    """Where the database, generated certificates and runtime files live."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Logging threshold; `info` logs listeners, logins and failures, never stanza contents."""
    shutdown_grace: Annotated[float, Field(ge=0)] = 5.0
    """Seconds to let sessions flush their close on SIGTERM."""
    version_name: str = "chatgate"
    """Name answered to software version queries (XEP-0092)."""
    reveal_os: bool = False
    """Include the operating system in software version answers."""


class Config(_Model):
    server: ServerConfig = ServerConfig()
    listeners: list[ListenerConfig] = [
        ListenerConfig(port=5222, tls=TlsMode.STARTTLS),
        ListenerConfig(port=5223, tls=TlsMode.DIRECT),
    ]
    tls: TlsConfig = TlsConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    session: SessionConfig = SessionConfig()
    limits: LimitsConfig = LimitsConfig()
    http: HttpOptions = HttpOptions()
    """The HTTP(S) listener: BOSH, WebSocket, discovery, the web chat."""
    streams: StreamsOptions = StreamsOptions()
    """The stream authority's hooks for media servers (off by default)."""
    admin: AdminOptions = AdminOptions()
    """The REST API, web console and metrics on the HTTP listener, and their authentication."""
    cluster: ClusterOptions = ClusterOptions()
    """Several nodes over one PostgreSQL and one Redis (off: one process)."""
    components: list[ComponentConfig] = []
    """XEP-0114 external components, `[[components]]` (none by default)."""
    component_listener: ComponentListenerConfig = ComponentListenerConfig()
    """Where components connect; open only when `components` are configured."""
    hosts: dict[str, HostConfig] = {}
    """Further virtual hosts, `[hosts."NAME"]`; `[server] domain` is always served."""
    modules: dict[str, dict[str, Any]] = {}
    """Per-module options, `[modules.NAME]`; each module validates its own table."""
    #: folder of the config file; relative paths are resolved against it
    base_dir: Path = Field(default=Path("."), exclude=True)
    #: the file this configuration was read from (None: built in code); the setup
    #: wizard writes its choices there
    source_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _default_mechanisms(cls, data: Any) -> Any:
        """EXTERNAL joins the default `[auth] mechanisms`, first, where client
        certificates are asked for; an operator's own list is never touched."""
        if not isinstance(data, dict):
            return data
        auth, tls = data.get("auth", {}), data.get("tls", {})
        if isinstance(auth, AuthConfig):
            chosen = "mechanisms" in auth.model_fields_set
        elif isinstance(auth, dict):
            chosen = "mechanisms" in auth
        else:
            return data  # not a table: validation names the error
        if isinstance(tls, TlsConfig):
            policy: object = tls.client_certificates
        elif isinstance(tls, dict):
            policy = tls.get("client_certificates", "disabled")
        else:
            return data
        if chosen or policy not in ("wanted", "needed"):
            return data
        mechanisms = [CERTIFICATE_MECHANISM, *DEFAULT_MECHANISMS]
        if isinstance(auth, AuthConfig):
            auth = auth.model_copy(update={"mechanisms": mechanisms})
        else:
            auth = {**auth, "mechanisms": mechanisms}
        return {**data, "auth": auth}

    @field_validator("listeners")
    @classmethod
    def _unique_ports(cls, listeners: list[ListenerConfig]) -> list[ListenerConfig]:
        seen = set()
        for listener in listeners:
            key = (listener.host, listener.port)
            if listener.port and key in seen:
                raise ValueError(f"two listeners on {listener.host}:{listener.port}")
            seen.add(key)
        return listeners

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, hosts: dict[str, HostConfig]) -> dict[str, HostConfig]:
        for name in hosts:
            if name != name.lower() or not name or "@" in name or "/" in name:
                raise ValueError(f"{name!r} is not a domain name in lower case")
            if hosts[name].provider is not None and hosts[name].anonymous:
                raise ValueError(f"{name!r}: an anonymous host has no credential provider")
        return hosts

    @model_validator(mode="after")
    def _reuse_port_needs_cluster(self) -> Config:
        # Processes sharing a port without the cluster layer each have their own
        # session table: a message between two of them would go nowhere.
        if not self.cluster.enabled:
            for index, listener in enumerate(self.listeners):
                if listener.reuse_port:
                    raise ValueError(f"listeners.{index}.reuse_port: {REUSE_PORT_NEEDS_CLUSTER}")
        return self

    @model_validator(mode="after")
    def _main_domain_keeps_accounts(self) -> Config:
        # The main domain holds the operator's accounts (the CLI, admin addresses);
        # guests get a domain of their own, as with Prosody and ejabberd.
        if self.host(self.server.domain).anonymous:
            raise ValueError(
                f"hosts.{self.server.domain}: the main domain [server] domain cannot be"
                ' anonymous; serve guests on a domain of their own, e.g. [hosts."guest.'
                f'{self.server.domain}"]'
            )
        return self

    @model_validator(mode="after")
    def _component_domains(self) -> Config:
        # A component's domain is its own: never a virtual host, never another
        # component's; service domains (MUC, upload) are checked at start, where
        # the modules that claim them are loaded.
        served = set(self.served_domains)
        seen: set[str] = set()
        for index, component in enumerate(self.components):
            where = f"components.{index}.domain"
            if component.domain in served:
                raise ValueError(f"{where}: {component.domain} is a virtual host served here")
            if component.domain in seen:
                raise ValueError(f"{where}: {component.domain} is configured twice")
            seen.add(component.domain)
            if component.parent is not None and component.parent not in served:
                raise ValueError(f"components.{index}.parent: {component.parent} is not served")
        if self.components:
            listener = self.component_listener
            for index, c2s in enumerate(self.listeners):
                if (c2s.host, c2s.port) == (listener.host, listener.port) and listener.port:
                    raise ValueError(
                        f"component_listener: listeners.{index} is on {c2s.host}:{c2s.port} too"
                    )
        return self

    def component_parent(self, component: ComponentConfig) -> str:
        """The virtual host whose disco#items list `component` (see `ComponentConfig.parent`)."""
        if component.parent is not None:
            return component.parent
        for domain in self.served_domains:
            if component.domain.endswith("." + domain):
                return domain
        return self.server.domain

    def component_secret(self, component: ComponentConfig) -> str:
        """`component`'s shared secret, read from its `secret_file` if it has one;
        raises ConfigError when that file cannot be read or holds too short a secret."""
        if component.secret is not None:
            return component.secret
        assert component.secret_file is not None
        path = self.path(component.secret_file)
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"components: {component.domain}: cannot read {path}: {exc}"
            ) from None
        if len(secret) < MIN_COMPONENT_SECRET:
            raise ConfigError(
                f"components: {component.domain}: the secret in {path} is shorter than"
                f" {MIN_COMPONENT_SECRET} characters"
            )
        return secret

    @property
    def served_domains(self) -> tuple[str, ...]:
        """Every domain this server is authoritative for: `[server] domain` first."""
        return (self.server.domain, *(d for d in self.hosts if d != self.server.domain))

    def host(self, domain: str) -> HostConfig:
        """The options of a served domain (the main one has the defaults)."""
        return self.hosts.get(domain) or _MAIN_HOST

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the config file's folder."""
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def data_dir(self) -> Path:
        return self.path(self.server.data_dir)

    @property
    def storage_url(self) -> str:
        """The storage URL with a relative SQLite path made absolute."""
        url = self.storage.url
        prefix, sep, rest = url.partition(":///")
        if sep and prefix.startswith("sqlite") and not rest.startswith("/") and rest != ":memory:":
            return f"{prefix}:///{(self.base_dir / rest).resolve()}"
        return url


_MAIN_HOST = HostConfig()

M = TypeVar("M", bound=BaseModel)


def section(config: Config, name: str, model: type[M]) -> M:
    """Validate `[modules.NAME]` with the module's own options model; raises ConfigError."""
    try:
        return model.model_validate(config.modules.get(name, {}))
    except ValidationError as exc:
        problems = [
            f"  modules.{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None


def load_config(path: Path) -> Config:
    """Parse and validate `path`; a missing file gives the defaults. Raises ConfigError."""
    base_dir = path.resolve().parent
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return Config.model_validate({**data, "base_dir": base_dir, "source_path": path.resolve()})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"  {where}: {message}" if where else f"  {message}")
        raise ConfigError(f"{path}: invalid configuration:\n" + "\n".join(problems)) from None


DEFAULT_CONFIG_TEXT = """\
# chatgate configuration. Every option and its default: docs/configuration.md
# `chatgate check` prints what this file makes the server do.

[server]
domain = "localhost"
data_dir = "var"

# c2s with STARTTLS (RFC 6120) and direct TLS (XEP-0368), loopback only.
[[listeners]]
host = "127.0.0.1"
port = 5222
tls = "starttls"

[[listeners]]
host = "127.0.0.1"
port = 5223
tls = "direct"

# BOSH, WebSocket and the web chat (http://127.0.0.1:5280/chat/), loopback only.
[http]
host = "127.0.0.1"
port = 5280
tls_port = 5281
# cors_origins = ["https://chat.example.org"]   # pages elsewhere that may use BOSH

[tls]
# certificate = "/etc/chatgate/cert.pem"   # unset: self-signed, generated into var/certs/
# private_key = "/etc/chatgate/key.pem"

[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"

[auth]
# SASL mechanisms in order of preference; unset, this list (-PLUS only where TLS gives
# a channel binding), with EXTERNAL first where [tls] client_certificates asks for them.
# A list set here is used exactly as written.
# mechanisms = ["SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
#               "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
allow_plain_without_tls = false
"""
