"""The benchmark's accounts: the same users and passwords on every server.

User n is `u<n>` with password `pw<n>` on host `localhost`. For the peers whose storage we write
directly (Prosody's internal_hashed files, ejabberd's Mnesia `passwd` table) the SCRAM-SHA-1
credentials are computed here once, with a per-user salt derived from the name, and cached in
`bench/.cache/`; the generator's SCRAM client reads the same cache, so neither the load generator
nor account creation pays PBKDF2 twice. Servers still verify every proof themselves.

Salts are 32 hex characters used as raw bytes, so they are printable in Lua data files.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "localhost"
ITERATIONS = 4096
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def username(n: int) -> str:
    return f"u{n}"


def password(n: int) -> str:
    return f"pw{n}"


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What a server stores for SCRAM-SHA-1 (RFC 5802 section 3), plus the client's cache."""

    user: str
    password: str
    salt: bytes
    iterations: int
    salted_password: bytes
    stored_key: bytes
    server_key: bytes


def _salt(user: str) -> bytes:
    return hashlib.sha256(b"chatgate-bench-salt:" + user.encode()).hexdigest()[:32].encode()


def _derive(n: int) -> tuple[str, str, str, int, str, str, str]:
    user, pw = username(n), password(n)
    salt = _salt(user)
    salted = hashlib.pbkdf2_hmac("sha1", pw.encode(), salt, ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha1")
    stored = hashlib.sha1(client_key).digest()
    server = hmac.digest(salted, b"Server Key", "sha1")
    return user, pw, salt.decode(), ITERATIONS, salted.hex(), stored.hex(), server.hex()


def _cache_file() -> Path:
    return CACHE_DIR / f"accounts-scram-sha1-{ITERATIONS}.json"


def load(count: int) -> list[ScramCredential]:
    """The first `count` accounts, computing (in parallel) and caching any not yet cached."""
    path = _cache_file()
    rows: list[list[object]] = []
    if path.exists():
        rows = json.loads(path.read_text())
    if len(rows) < count:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            rows.extend(list(r) for r in pool.map(_derive, range(len(rows), count), chunksize=256))
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(path)
    return [
        ScramCredential(
            user=str(u),
            password=str(p),
            salt=str(s).encode(),
            iterations=int(i),  # type: ignore[call-overload]
            salted_password=bytes.fromhex(str(sp)),
            stored_key=bytes.fromhex(str(st)),
            server_key=bytes.fromhex(str(sv)),
        )
        for u, p, s, i, sp, st, sv in rows[:count]
    ]


def write_import_file(path: Path, count: int) -> None:
    """`username password` lines, the format of `chatgate user import`."""
    path.write_text("".join(f"{username(n)} {password(n)}\n" for n in range(count)))
