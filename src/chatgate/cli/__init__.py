"""The `chatgate` command: serve, check, init, version, and the administration groups
(`user`, `registration`, `invite`).

`--config FILE` may come before the subcommand (``chatgate --config FILE user add
alice``, as ``prosodyctl --config`` and ``git -C`` take it) or after it; see
`cli/common.py` for which one wins and for ``CHATGATE_CONFIG``.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from chatgate import __version__
from chatgate.cli.admin import admin_app, admin_password_app
from chatgate.cli.common import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    GLOBAL_CONFIG_KEY,
    ConfigOption,
    config_path,
    err_console,
    load_or_exit,
)
from chatgate.cli.invite import invite_app
from chatgate.cli.registration import registration_app
from chatgate.cli.streams import streams_app
from chatgate.cli.user import user_app
from chatgate.config import DEFAULT_CONFIG_TEXT, Config, TlsMode
from chatgate.datadir import write_private_file
from chatgate.vocabulary.errors import ConfigError

app = typer.Typer(
    name="chatgate",
    help="chatgate: an XMPP server whose strength is authentication.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(user_app, name="user", help="Manage accounts in the internal store.")
app.add_typer(
    registration_app,
    name="registration",
    help="Approve or reject in-band registrations awaiting approval.",
)
app.add_typer(
    invite_app,
    name="invite",
    help="Create, list and revoke invitation tokens for in-band registration.",
)
app.add_typer(streams_app, name="streams", help="Stream authority: rules, keys, tokens, live.")
app.add_typer(admin_app, name="admin", help="Administrators and bearer tokens of the admin API.")
app.add_typer(admin_password_app, name="admin-password", help="The admin.password file.")
console = Console()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help=f"Configuration file for every subcommand (default: ${CONFIG_ENV}, else"
            f" ./{DEFAULT_CONFIG}); a subcommand's own --config wins.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """chatgate: an XMPP server whose strength is authentication."""
    ctx.meta[GLOBAL_CONFIG_KEY] = config


@app.command()
def init(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Write a default configuration file if none exists (loopback only, domain localhost).

    The only command that creates a configuration: every other one exits 2 when
    its file does not exist.
    """
    config = config_path(ctx, config)
    if config.exists():
        console.print(f"using existing {config}")
        return
    # 0600 whatever the umask: a configuration may come to hold a provider's password.
    write_private_file(config, DEFAULT_CONFIG_TEXT.encode("utf-8"))
    console.print(f"wrote {config} (domain localhost, loopback listeners)")


@app.command()
def serve(
    ctx: typer.Context,
    config: ConfigOption = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            "-w",
            help="Run N server processes sharing the listeners' ports (SO_REUSEPORT),"
            " 0 or 'auto' for one per core; needs [cluster] enabled.  Unset: one process.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the server in the foreground until SIGTERM or Ctrl-C."""
    cfg = load_or_exit(ctx, config)
    config = config_path(ctx, config)
    logging.basicConfig(
        level=cfg.server.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Alembic's per-connection INFO lines say nothing an operator needs.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    if workers is not None:
        _serve_workers(cfg, workers)
        return
    from chatgate.cluster.node import ClusterUnavailable
    from chatgate.server import run

    err_console.print(
        f"chatgate {__version__}: add an account from another terminal with "
        f"[bold]{_console_script()} user add NAME[/bold]"
        + ("" if config == DEFAULT_CONFIG else f" --config {config}"),
        highlight=False,
        soft_wrap=True,
    )
    try:
        run(cfg)
    except ConfigError as exc:
        err_console.print("error:", str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except (OSError, ClusterUnavailable) as exc:
        err_console.print(
            "error: cannot start:", str(exc), style="red", markup=False, highlight=False
        )
        raise typer.Exit(1) from None


def _serve_workers(cfg: Config, workers: str) -> None:
    """`serve --workers`: the parent of N workers (`cluster/workers.py`)."""
    from chatgate.cluster.workers import serve_workers, worker_count

    try:
        count = worker_count(workers)
    except ValueError:
        err_console.print(
            f"error: --workers {workers!r}: a number, 0 or 'auto' (one per core)",
            style="red",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(2) from None
    try:
        code = serve_workers(cfg, count)
    except ConfigError as exc:
        err_console.print("error:", str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        err_console.print(
            "error: cannot start:", str(exc), style="red", markup=False, highlight=False
        )
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


@app.command()
def check(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Validate the configuration and print what would run, and where."""
    cfg = load_or_exit(ctx, config)
    try:
        from chatgate.modules.registry import builtin_modules, validate_module_options

        validate_module_options(cfg, builtin_modules())
        _check(cfg)
    except ConfigError as exc:
        err_console.print("error:", str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _check(cfg: Config) -> None:
    """Print the resolved configuration; raise `ConfigError` where `serve` would refuse
    to start: every provider, SASL mechanism and TLS setting is loaded as `serve`
    loads it (`cli/checks.py`), without listening or opening the database."""
    from chatgate.administration.configuration import safe_url
    from chatgate.cli.checks import load_like_serve, module_lines, security_lines, web_lines
    from chatgate.components.describe import component_lines
    from chatgate.sasl.registry import builtin_mechanisms
    from chatgate.tls import certificate_paths
    from chatgate.vhost import validate_host_mechanisms

    mechanisms = builtin_mechanisms(tls=cfg.tls)  # loads the SASL plugins, as serve does
    load_like_serve(cfg)
    console.print(f"[bold]domain[/bold]    {cfg.server.domain}")
    console.print(f"[bold]data dir[/bold]  {cfg.data_dir.resolve()}")
    console.print(f"[bold]storage[/bold]   {escape(safe_url(cfg.storage_url))}", soft_wrap=True)
    cert, _key = certificate_paths(cfg)
    origin = "configured" if cfg.tls.certificate else "self-signed, generated at first start"
    if cert.exists():
        from chatgate.tls import describe_certificate, names_missing

        origin += f": {describe_certificate(cert)}"
        missing = [] if cfg.tls.certificate else names_missing(cert, cfg.served_domains)
        if missing:
            origin += (
                f"; it does not name {', '.join(missing)}: REPLACED at the next start,"
                " and clients that trusted it must be given the new one"
            )
    console.print(f"[bold]tls[/bold]       {escape(f'{cert} ({origin})')}", soft_wrap=True)
    console.print(f"[bold]auth[/bold]      provider {cfg.auth.provider.name}", soft_wrap=True)
    validate_host_mechanisms(cfg, mechanisms)
    for name, host in cfg.hosts.items():
        what = "anonymous (SASL ANONYMOUS, nothing kept)" if host.anonymous else "provider "
        if not host.anonymous:
            what += (host.provider or cfg.auth.provider).name
            own = host.mechanisms
            what += f"  sasl: {', '.join(own)}" if own else "  sasl: as each listener"
        console.print(f"[bold]host[/bold]      {name}: {what}", soft_wrap=True)
    console.print("[bold]listeners[/bold]")
    for listener in cfg.listeners:
        names = listener.mechanisms or cfg.auth.mechanisms
        tls = listener.tls.value
        if listener.tls is TlsMode.STARTTLS:
            tls += " (required)" if listener.require_tls else " (optional)"
        where = f"{listener.host}:{listener.port}"
        sasl = ", ".join(names)
        console.print(f"  {listener.type} {where}  tls: {tls}  sasl: {sasl}", soft_wrap=True)
    for line in component_lines(cfg):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    for line in web_lines(cfg):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    for line in security_lines(cfg):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    for line in module_lines(cfg):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    if cfg.cluster.enabled:  # one process (the default) says nothing more
        console.print(_cluster_line(cfg), soft_wrap=True, markup=False, highlight=False)
    console.print(
        f"limits: stanza {cfg.limits.max_stanza_size} bytes,"
        f" auth timeout {cfg.auth.auth_timeout:g} s,"
        f" offline {cfg.limits.max_offline_messages} messages per account"
    )
    console.print("[green]configuration OK[/green]")


def _cluster_line(cfg: Config) -> str:
    cluster = cfg.cluster
    from chatgate.cluster.workers import without_password

    return (
        f"cluster: node {cluster.node or '(host name and pid)'} on"
        f" {without_password(cluster.redis_url)} (prefix {cluster.key_prefix!r},"
        f" heartbeat {cluster.heartbeat_interval:g} s, dead after {cluster.node_timeout:g} s);"
        f" storage must be shared by every node"
    )


@app.command()
def version(config: ConfigOption = None) -> None:
    """Print the chatgate version.  `--config` is accepted (and not read), as by every
    other command, so a wrapper that always passes it works here too."""
    console.print(f"chatgate {__version__} (Python {platform.python_version()})")


def _console_script() -> str:
    """How to call this very command again, e.g. `.venv/bin/chatgate`."""
    import shutil
    import sys

    script = Path(sys.argv[0])
    if script.name == "chatgate" and shutil.which("chatgate") != str(script.resolve()):
        try:
            return str(script.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return "chatgate"


def main() -> None:
    app()


__all__ = ["Path", "app", "main"]
