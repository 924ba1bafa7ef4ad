"""What every `chatgate` subcommand shares: the --config option, config loading,
the account names the commands take, failing with an exit code, and the database.

Exit codes, the same in every group: 0 done; 1 the thing named does not exist,
already exists or is not in the expected state; 2 bad input or configuration.

Which configuration file a command reads, first found wins: the subcommand's
``--config`` (``chatgate user add alice --config FILE``), the global one before
the subcommand (``chatgate --config FILE user add alice``), the
``CHATGATE_CONFIG`` environment variable, then ``./chatgate.toml``.  The file
must exist: only ``chatgate init`` creates one.  A missing file used to be read
as "all defaults", so a typo in ``--config`` started a server on the default
ports, or made a command create an empty database beside the missing file.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from chatgate.config import Config, load_config, section
from chatgate.jid import InvalidJID, prepare_domain, prepare_username
from chatgate.storage.database import Database
from chatgate.storage.errors import StorageUnavailable
from chatgate.vocabulary.errors import ConfigError

err_console = Console(stderr=True)


def command_group(help: str) -> typer.Typer:
    """A group of `chatgate` sub-commands, set up as every group is: help when
    called bare, no shell-completion commands, plain errors instead of rich's."""
    return typer.Typer(
        help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def plain_console() -> Console:
    """Standard output for command results: printed as they are, no markup."""
    return Console(highlight=False, markup=False)


T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: the global --config, else $CHATGATE_CONFIG,"
        " else ./chatgate.toml).",
        show_default=False,
    ),
]
#: the file read when neither option nor environment names one
DEFAULT_CONFIG = Path("chatgate.toml")
#: environment variable naming the configuration file (below both --config options)
CONFIG_ENV = "CHATGATE_CONFIG"
#: where the root command's `--config` (given before the subcommand) is kept
GLOBAL_CONFIG_KEY = "chatgate.global_config"

UserArgument = Annotated[
    str,
    typer.Argument(help="NAME (on the main domain) or NAME@DOMAIN (any served domain)."),
]


def config_path(ctx: typer.Context | None, given: Path | None) -> Path:
    """The configuration file a command reads: its own `--config`, else the global
    one, else ``$CHATGATE_CONFIG``, else ``./chatgate.toml`` (see the module docstring)."""
    if given is not None:
        return given
    if ctx is not None:
        global_config = ctx.find_root().meta.get(GLOBAL_CONFIG_KEY)
        if global_config is not None:
            return Path(global_config)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG


def load_or_exit(ctx: typer.Context | None, given: Path | None) -> Config:
    """Load the configuration `config_path` names; a missing file or any other problem
    is printed without a traceback and exits 2 (only `chatgate init` creates a file)."""
    path = config_path(ctx, given)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        hint = f"`chatgate init --config {path}` writes a default one, or give the right path"
        if given is None and path == DEFAULT_CONFIG:
            where = Path.cwd() / path
            message = (
                f"no configuration: {where} {what} (and neither --config nor"
                f" ${CONFIG_ENV} names one); `chatgate init` writes a default one"
            )
        else:
            message = f"configuration file {path} {what}; {hint}"
        err_console.print(
            "error:", message, style="red", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(2)
    try:
        return load_config(path)
    except ConfigError as exc:
        err_console.print("error:", str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def module_options(cfg: Config, name: str, model: type[M]) -> M:
    """A module's validated `[modules.NAME]` options; invalid ones exit 2, as at start."""
    try:
        return section(cfg, name, model)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def fail(message: str, code: int) -> typer.Exit:
    """Print `message` as an error and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# ---------------------------------------------------------------- names


def account_domain(text: str | None, cfg: Config) -> str:
    """The served domain `text` names (None: `[server] domain`), if it keeps accounts.

    Raises ValueError with the reason for a malformed domain, one this server
    does not serve (`Config.served_domains`), an anonymous host, whose
    identities live only as long as their session and are never stored, or a
    host whose credential provider is not the internal store.
    """
    served = {prepare_domain(d): d for d in cfg.served_domains}
    try:
        domain = prepare_domain(text) if text else prepare_domain(cfg.server.domain)
    except InvalidJID as exc:
        raise ValueError(f"invalid domain {text!r}: {exc}") from None
    if domain not in served:
        raise ValueError(f"{domain} is not served here (served: {', '.join(cfg.served_domains)})")
    host = cfg.host(served[domain])
    if host.anonymous:
        raise ValueError(f"{domain} is an anonymous host: it has no stored accounts")
    provider = (host.provider or cfg.auth.provider).name
    if provider != "internal":
        # An account stored here would never be asked about: logins go to the provider.
        raise ValueError(f"{domain} asks the {provider} provider; manage its accounts there")
    return domain


def parse_user(spec: str, cfg: Config) -> tuple[str, str]:
    """NAME or NAME@DOMAIN -> (prepared username, domain).  Raises ValueError with the reason.

    The username is PRECIS UsernameCaseMapped plus the RFC 7622 localpart
    rules; the domain is checked by `account_domain`.
    """
    name, at, domain = spec.partition("@")
    if at and not domain:
        raise ValueError(f"{spec!r}: empty domain after '@'")
    domain = account_domain(domain if at else None, cfg)
    try:
        return prepare_username(name), domain
    except InvalidJID as exc:
        raise ValueError(f"invalid username {name!r}: {exc}") from None


def target(spec: str, cfg: Config) -> tuple[str, str]:
    """`parse_user`, exiting 2 with the reason."""
    try:
        return parse_user(spec, cfg)
    except ValueError as exc:
        raise fail(str(exc), 2) from None


def jid(username: str, domain: str) -> str:
    return f"{username}@{domain}"


# ---------------------------------------------------------------- database


async def with_db(cfg: Config, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the configured database (migrating it), run `work`, close it.  A change
    stored but not announced to the cluster's nodes (`[cluster] enabled`, its Redis
    out of reach) exits 1 with what to do (`not_announced`), not a traceback; so
    does a database out of reach (nothing was committed that the error cut)."""
    try:
        db = await Database.open(cfg.storage_url)
    except StorageUnavailable as exc:
        raise fail(unreachable(cfg, exc), 1) from None
    try:
        return await work(db)
    except StorageUnavailable as exc:
        raise fail(unreachable(cfg, exc), 1) from None
    except OSError as exc:
        message = not_announced(exc) if cfg.cluster.enabled else None
        if message is None:
            raise
        raise fail(message, 1) from None
    finally:
        await db.close()


def unreachable(cfg: Config, exc: StorageUnavailable) -> str:
    """The operator's message when the database cannot be reached (its URL without
    the password)."""
    from chatgate.administration.configuration import safe_url

    reason = exc.__cause__ if exc.__cause__ is not None else exc
    return f"the database {safe_url(cfg.storage_url)} cannot be reached ({reason}); try again"


def not_announced(exc: BaseException) -> str | None:
    """The operator's message when `exc` says a change was stored but the cluster's
    Redis could not be told of it (`CredentialsNotAnnounced`, `SignalNotAnnounced`);
    None for any other exception.  Nothing is to be redone: the running nodes
    re-read what they cache when their Redis connection comes back, or at restart."""
    from chatgate.cluster.notify import CredentialsNotAnnounced
    from chatgate.cluster.signal import SignalNotAnnounced

    if not isinstance(exc, CredentialsNotAnnounced | SignalNotAnnounced):
        return None
    return f"{exc}. Do not repeat the change; restart the nodes if Redis stays away."
