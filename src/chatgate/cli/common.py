"""What every `chatgate` subcommand shares: the --config option and config loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chatgate.config import Config, load_config
from chatgate.xmpp.errors import ConfigError

err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file.", show_default=True),
]
DEFAULT_CONFIG = Path("chatgate.toml")


def load_or_exit(path: Path) -> Config:
    """Load the configuration; a problem is printed without a traceback and exits 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        err_console.print("error:", str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
