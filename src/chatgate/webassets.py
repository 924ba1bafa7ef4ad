"""The web chat's JavaScript, fetched by the project's own build step: no Node, no CDN.

`make run` must serve converse.js at /chat/ on a machine that has only python3, make
and git, and the browser tests need Strophe.js; both are npm packages.  So this module
downloads their tarballs from the npm registry with the standard library, checks each
against the sha512 `integrity` pinned in a committed lock file (``web/assets.lock.json``),
and unpacks only the files the lock names into ``<dest>/<package name>/``.  Nothing is
fetched at run time: the server serves the unpacked files.

Run it as ``python -m chatgate.webassets fetch [DEST]`` (``make web-assets``).  A package
whose files are already present and unchanged is skipped without any network access, so
the step costs a few milliseconds on every ``make run``.

A tarball is refused whole when its digest differs from the lock, or when any member
would land outside the destination (an absolute name, a ``..`` part) or a selected member
is not a regular file (a link could point anywhere); members are copied out one by one,
never with ``extractall``.  A package is unpacked beside its final place and renamed into
it, so an interrupted run leaves the previous copy or none, never half of one.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "DEFAULT_DEST",
    "DEFAULT_LOCK",
    "STAMP",
    "AssetError",
    "Package",
    "check_integrity",
    "download",
    "ensure",
    "installed_version",
    "is_current",
    "load_lock",
    "main",
    "unpack",
]

#: where `make` keeps the lock and the unpacked files (relative to the checkout)
DEFAULT_LOCK = Path("web/assets.lock.json")
DEFAULT_DEST = Path("web/dist")
#: written last into each package's folder: what was unpacked, with every file's sha256
STAMP = ".chatgate-asset.json"
#: the public registry; CHATGATE_NPM_REGISTRY names a mirror (the digest is still checked)
NPM_REGISTRY = "https://registry.npmjs.org"
#: bounds on what one package may bring: converse.js 14 is 8.7 MB packed, 41 MB unpacked
MAX_TARBALL_BYTES = 64 * 1024 * 1024
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
#: npm's integrity algorithms, strongest first; sha1 (old packages) is not accepted
_ALGORITHMS = ("sha512", "sha384", "sha256")

Fetch = Callable[[str], bytes]


class AssetError(Exception):
    """A package could not be fetched, verified or unpacked; the message says which and why."""


@dataclass(frozen=True)
class Package:
    """One lock entry: which tarball, its digest, and which of its files to keep."""

    name: str
    version: str
    tarball: str
    integrity: str
    #: the folder inside the tarball whose matching files land in <dest>/<name>/
    root: str
    #: fnmatch patterns relative to `root` (``*`` also crosses ``/``)
    include: tuple[str, ...]
    #: files (paths inside the tarball) copied to <dest>/<name>/ under their base name
    licenses: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The entry as the stamp records it: a changed lock entry means a new unpack."""
        return {
            "name": self.name,
            "version": self.version,
            "tarball": self.tarball,
            "integrity": self.integrity,
            "root": self.root,
            "include": list(self.include),
            "licenses": list(self.licenses),
        }


def load_lock(path: Path = DEFAULT_LOCK) -> list[Package]:
    """Read the lock file; a malformed one is an `AssetError` naming the entry."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = raw["packages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AssetError(f"cannot read the asset lock {path}: {exc}") from exc
    packages = []
    for name, entry in entries.items():
        try:
            package = Package(
                name=name,
                version=str(entry["version"]),
                tarball=str(entry["tarball"]),
                integrity=str(entry["integrity"]),
                root=str(entry["root"]).strip("/"),
                include=tuple(str(p) for p in entry["include"]),
                licenses=tuple(str(p) for p in entry.get("licenses", ())),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise AssetError(f"{path}: entry {name!r} lacks or misspells {exc}") from exc
        if not _safe_parts(name) or "/" in name:
            raise AssetError(f"{path}: {name!r} is not usable as a folder name")
        packages.append(package)
    return packages


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise `AssetError` unless `data` has the digest of the lock's Subresource-Integrity
    string (``sha512-<base64>``, as npm publishes it); the strongest algorithm given wins."""
    digests: dict[str, str] = {}
    for token in integrity.split():
        algorithm, _, value = token.partition("-")
        digests.setdefault(algorithm, value)
    for algorithm in _ALGORITHMS:
        if algorithm in digests:
            actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
            if actual != digests[algorithm]:
                raise AssetError(
                    f"integrity mismatch: expected {algorithm}-{digests[algorithm]}, "
                    f"got {algorithm}-{actual}"
                )
            return
    raise AssetError(f"no sha512, sha384 or sha256 digest in integrity {integrity!r}")


def _mirrored(url: str) -> str:
    mirror = os.environ.get("CHATGATE_NPM_REGISTRY", "").rstrip("/")
    if mirror and url.startswith(NPM_REGISTRY + "/"):
        return mirror + url[len(NPM_REGISTRY) :]
    return url


def download(url: str, *, attempts: int = 3, timeout: float = 60.0) -> bytes:
    """GET `url` (at most `MAX_TARBALL_BYTES`), retrying network faults twice: a CI run
    should not fail on one dropped connection.  An HTTP 4xx is final."""
    url = _mirrored(url)
    request = urllib.request.Request(url, headers={"User-Agent": "chatgate-webassets"})
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data: bytes = response.read(MAX_TARBALL_BYTES + 1)
            if len(data) > MAX_TARBALL_BYTES:
                raise AssetError(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
            return data
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts:
                raise AssetError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            if attempt == attempts:
                raise AssetError(f"{url}: {exc}") from exc
        time.sleep(attempt)
    raise AssetError(f"{url}: no attempt made")  # pragma: no cover - attempts >= 1


def _safe_parts(name: str) -> bool:
    """True when `name` is a relative path with no ``..``, empty or absolute part."""
    if not name or "\x00" in name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and all(part not in ("..", "") for part in path.parts)


def _selected(package: Package, member: str) -> str | None:
    """Where `member` (a tarball path) lands inside <dest>/<name>/, or None to skip it."""
    if member in package.licenses:
        return PurePosixPath(member).name
    prefix = package.root + "/"
    if not member.startswith(prefix):
        return None
    relative = member[len(prefix) :]
    if any(fnmatch.fnmatchcase(relative, pattern) for pattern in package.include):
        return relative
    return None


def unpack(data: bytes, package: Package, target: Path) -> dict[str, str]:
    """Copy the selected files of the tarball `data` into the new folder `target`;
    returns {relative path: sha256}.  Refuses the whole archive on any unsafe member."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            files = _copy_selected(archive, package, target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AssetError(f"{package.name}: not a readable tar archive: {exc}") from exc
    missing = [p for p in package.include if not any(fnmatch.fnmatchcase(f, p) for f in files)]
    missing += [p for p in package.licenses if PurePosixPath(p).name not in files]
    if missing:
        raise AssetError(f"{package.name} {package.version}: nothing matches {missing}")
    return files


def _copy_selected(archive: tarfile.TarFile, package: Package, target: Path) -> dict[str, str]:
    members = archive.getmembers()
    for member in members:
        if not _safe_parts(member.name.removeprefix("./")):
            raise AssetError(f"{package.name}: unsafe path in tarball: {member.name!r}")
    target.mkdir(parents=True)
    files: dict[str, str] = {}
    total = 0
    for member in members:
        relative = _selected(package, member.name.removeprefix("./"))
        if relative is None or member.isdir():
            continue
        if not member.isreg():
            raise AssetError(f"{package.name}: {member.name!r} is a link or device")
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise AssetError(f"{package.name}: more than {MAX_UNPACKED_BYTES} bytes")
        path = target.joinpath(*PurePosixPath(relative).parts)
        if not path.resolve().is_relative_to(target.resolve()):
            raise AssetError(f"{package.name}: {member.name!r} leaves the destination")
        source = archive.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            raise AssetError(f"{package.name}: no data for {member.name!r}")
        content = source.read()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)
        files[relative] = hashlib.sha256(content).hexdigest()
    return files


def _stamp(folder: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_current(package: Package, dest: Path) -> bool:
    """True when <dest>/<name>/ holds exactly what this lock entry unpacks, unmodified."""
    folder = Path(dest) / package.name
    stamp = _stamp(folder)
    if stamp is None or stamp.get("package") != package.describe():
        return False
    files = stamp.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for relative, digest in files.items():
        try:
            content = (folder / relative).read_bytes()
        except OSError:
            return False
        if hashlib.sha256(content).hexdigest() != digest:
            return False
    return True


def installed_version(dest: Path, name: str) -> str | None:
    """The version unpacked in <dest>/<name>/ (for cache-busting URLs), or None."""
    stamp = _stamp(Path(dest) / name)
    described = stamp.get("package") if stamp else None
    version = described.get("version") if isinstance(described, dict) else None
    return version if isinstance(version, str) else None


def ensure(package: Package, dest: Path, fetch: Fetch = download) -> bool:
    """Make <dest>/<name>/ current; True when it had to fetch, False when it was already."""
    dest = Path(dest)
    if is_current(package, dest):
        return False
    data = fetch(package.tarball)
    check_integrity(data, package.integrity)
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{package.name}-", dir=dest))
    try:
        staged = work / "new"
        files = unpack(data, package, staged)
        stamp = {"package": package.describe(), "files": files}
        (staged / STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        staged.chmod(0o755)
        final = dest / package.name
        if final.exists() or final.is_symlink():
            final.rename(work / "old")
        staged.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True


def fetch_all(packages: Iterable[Package], dest: Path, fetch: Fetch = download) -> int:
    """`ensure` each package, one line of output each; returns how many were fetched."""
    fetched = 0
    for package in packages:
        if ensure(package, dest, fetch):
            fetched += 1
            print(f"{package.name} {package.version}: fetched into {Path(dest) / package.name}")
        else:
            print(f"{package.name} {package.version}: present")
    return fetched


def pin(spec: str, fetch: Fetch = download) -> dict[str, str]:
    """The lock fields of NAME@VERSION from the registry's metadata (for upgrades)."""
    name, at, version = spec.rpartition("@")
    if not at or not name:
        raise AssetError(f"expected NAME@VERSION, got {spec!r}")
    meta = json.loads(fetch(f"{NPM_REGISTRY}/{name}/{version}"))
    dist = meta["dist"]
    return {"version": meta["version"], "tarball": dist["tarball"], "integrity": dist["integrity"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatgate.webassets",
        description="Fetch the web chat's pinned npm packages (no Node needed).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("fetch", "download, verify and unpack what is missing or changed"),
        ("check", "exit 1 unless every package is present and unmodified (no network)"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST)
        sub.add_argument("--lock", type=Path, default=DEFAULT_LOCK)
    sub = commands.add_parser("pin", help="print lock fields for NAME@VERSION from the registry")
    sub.add_argument("spec")
    args = parser.parse_args(argv)
    try:
        if args.command == "pin":
            print(json.dumps(pin(args.spec), indent=2))
            return 0
        packages = load_lock(args.lock)
        if args.command == "check":
            stale = [p.name for p in packages if not is_current(p, args.dest)]
            for name in stale:
                print(f"{name}: missing or modified in {args.dest}", file=sys.stderr)
            return 1 if stale else 0
        fetch_all(packages, args.dest)
        return 0
    except AssetError as exc:
        print(f"web assets: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
