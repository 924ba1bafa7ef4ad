"""The authority scenario's setup (issue 12): the rules chatgate is started with, and the
tokens and stream keys the generator presents, made the way an operator makes them.

Tokens come from ``chatgate streams tokens issue STREAM --action play``, one per stream;
stream keys from ``chatgate streams keys issue USER``, for a few accounts. Both run against the
prepared data directory while the server is stopped, once per run (not measured, about ten
seconds). A command
this chatgate does not have leaves its figure "not available" with the reason; a command that
exists and fails fails the scenario (the run's other scenarios still run).

Streams are ``bench/live0`` .. ``bench/live9``: the generator spreads its viewers over them so
that no stream nears the live registry's 10,000 viewers (its figures stop at 80,000 requests).
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import accounts

APP = "bench"
STREAMS = 10
KEY_ACCOUNTS = 4
#: the rules chatgate runs with: plays under bench/ with a token, or by any account (a
#: password or a stream key proves one)
RULES = (f"play {APP}/* token", f"play {APP}/* authenticated")
#: outlives any run (a full one takes under 20 minutes)
TOKEN_TTL = "6h"
CLI_TIMEOUT = 120.0
#: token commands run at once (each is mostly the interpreter's start)
PARALLEL = 4


def stream_names() -> list[str]:
    """The stream names nginx reports (``name``); the streams are ``APP/NAME``."""
    return [f"live{i}" for i in range(STREAMS)]


def _has_command(command: list[str], words: list[str]) -> str | None:
    """None when `chatgate WORDS --help` works, else why not."""
    try:
        out = subprocess.run(
            [*command, *words, "--help"], capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`chatgate {' '.join(words)}` did not run: {e}"
    if out.returncode != 0:
        return f"this chatgate has no `chatgate {' '.join(words)}`"
    return None


def _secret(command: list[str], args: list[str], config: Path) -> str:
    """The first line a `chatgate` command prints: the secret it made."""
    out = subprocess.run(
        [*command, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        cwd=config.parent,
    )
    words = out.stdout.split()
    if out.returncode != 0 or not words:
        raise RuntimeError(
            f"chatgate {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return words[0]


def provision(command: list[str], config: Path) -> dict[str, Any]:
    """Tokens and stream keys for the generator (`bench.loadgen.authority`)."""
    names = stream_names()
    creds: dict[str, Any] = {"app": APP, "names": names, "tokens": {}, "keys": []}
    missing = _has_command(command, ["streams", "tokens", "issue"])
    if missing is None:
        issue = ["streams", "tokens", "issue"]
        play = ["--action", "play", "--ttl", TOKEN_TTL]

        def token(name: str) -> str:
            return _secret(command, [*issue, f"{APP}/{name}", *play], config)

        # the first makes the installation's token key if there is none; the others only
        # read the database, so they run side by side
        first = token(names[0])
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            creds["tokens"] = dict(zip(names, [first, *pool.map(token, names[1:])], strict=True))
        creds["tokens_issued_by"] = "chatgate streams tokens issue"
    else:
        creds["tokens_unavailable"] = missing
    missing = _has_command(command, ["streams", "keys", "issue"])
    if missing is None:
        creds["keys"] = [
            _secret(command, ["streams", "keys", "issue", accounts.username(n)], config)
            for n in range(KEY_ACCOUNTS)
        ]
        creds["keys_issued_by"] = "chatgate streams keys issue"
    else:
        creds["keys_unavailable"] = missing
    return creds
