"""Fetch slixmpp's own integration tests from its source distribution on PyPI.

Issue 15 measures chatgate with slixmpp's ``itests/`` (written by slixmpp's authors, run by
their CI against Prosody), never copied into this repository: ``make test`` runs this script,
which downloads the pinned sdist from PyPI with the standard library, checks its sha256 against
the digest pinned below, and unpacks only what running the itests needs (``itests/``, the
runner and slixmpp's CI files that say how they are configured) into a cache folder outside the
tracked files (``.cache/interop/``, ignored by git).

Run it as ``python tests/interop/fetch_slixmpp_itests.py [CACHE]``; it prints the folder. A
folder whose stamp names the pinned digest is used as it is, without any network access, so
the step is free on every ``make test`` after the first.

The version is the one ``pyproject.toml`` installs (slixmpp 1.17.0): the itests drive the
installed slixmpp, and only the sdist's ``itests/`` and CI files are unpacked, never its
``slixmpp/`` sources (which would shadow the installed package and need its Rust parts).

``pip download --no-binary :all: slixmpp==1.17.0`` is not used: pip builds the sdist's metadata
to check it, and the 1.17.0 sdist reports version 0.0.0 when built outside its git checkout,
so pip refuses it. The simple index's JSON form (PEP 691) gives the file's URL and digest.
CHATGATE_PYPI_SIMPLE names a mirror of the simple index (the pinned digest is still checked).

A member is refused (and the whole sdist with it) when its name is absolute or has a ``..``
part, or when it is not a regular file or folder; files are unpacked beside the final folder
and renamed into it, so an interrupted run leaves the previous copy or none.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

NAME = "slixmpp"
VERSION = "1.17.0"
FILENAME = f"{NAME}-{VERSION}.tar.gz"
#: the sdist's sha256 as PyPI lists it (checked before anything is unpacked)
SHA256 = "05257ee0f2aecb42d6479f6071c89ad3c734fda0ee753eb4625ecdc6114d90b1"
SIMPLE_INDEX = "https://pypi.org/simple"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO / ".cache" / "interop"
#: written last into the unpacked folder: the digest it came from
STAMP = ".fetched-sha256"
#: what is unpacked, relative to the sdist's top folder (a folder takes everything under it)
WANTED = (
    "itests/",
    "run_integration_tests.py",
    ".woodpecker/test-integration.yml",
    "compose.yml",
    "Containerfile",
    "LICENSE",
    "PKG-INFO",
)
MAX_SDIST_BYTES = 16 * 1024 * 1024
TIMEOUT = 60.0


class FetchError(Exception):
    """The sdist could not be found, downloaded, verified or unpacked; the message says why."""


def destination(cache: Path = DEFAULT_CACHE) -> Path:
    """The folder the itests are unpacked into (``CACHE/slixmpp-1.17.0``)."""
    return cache / f"{NAME}-{VERSION}"


def is_current(cache: Path = DEFAULT_CACHE) -> bool:
    stamp = destination(cache) / STAMP
    return stamp.is_file() and stamp.read_text().strip() == SHA256


def _get(url: str, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            data: bytes = response.read(MAX_SDIST_BYTES + 1)
    except OSError as exc:
        raise FetchError(f"cannot fetch {url}: {exc}") from exc
    if len(data) > MAX_SDIST_BYTES:
        raise FetchError(f"{url} is larger than {MAX_SDIST_BYTES} bytes")
    return data


def sdist_url(index: str) -> str:
    """The sdist's URL from the simple index's JSON form, whose digest must be the pinned one."""
    page = _get(f"{index.rstrip('/')}/{NAME}/", accept="application/vnd.pypi.simple.v1+json")
    try:
        files = json.loads(page)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{index}/{NAME}/ is not a PEP 691 JSON page: {exc}") from exc
    for entry in files:
        if entry.get("filename") == FILENAME:
            listed = entry.get("hashes", {}).get("sha256")
            if listed != SHA256:
                raise FetchError(f"the index lists {FILENAME} with sha256 {listed}, not {SHA256}")
            return str(entry["url"])
    raise FetchError(f"{FILENAME} is not on {index}/{NAME}/")


def check_digest(data: bytes) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != SHA256:
        raise FetchError(f"{FILENAME} has sha256 {actual}, expected {SHA256}")


def _wanted(relative: PurePosixPath) -> bool:
    text = relative.as_posix()
    return any(text == w or (w.endswith("/") and text.startswith(w)) for w in WANTED)


def unpack(data: bytes, target: Path) -> None:
    """Unpack the wanted members of the sdist `data` into `target`, replacing it whole."""
    check_digest(data)
    top = PurePosixPath(f"{NAME}-{VERSION}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise FetchError(f"{FILENAME}: unsafe member name {member.name!r}")
                if path.parts[:1] != top.parts or not _wanted(path.relative_to(top)):
                    continue
                if member.isdir():
                    continue
                if not member.isfile():
                    raise FetchError(f"{FILENAME}: {member.name} is not a regular file")
                out = staging.joinpath(*path.relative_to(top).parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                out.write_bytes(source.read())
        if not (staging / "itests" / "__init__.py").is_file():
            raise FetchError(f"{FILENAME} has no itests/ package")
        (staging / STAMP).write_text(SHA256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def ensure(cache: Path = DEFAULT_CACHE, index: str | None = None) -> Path:
    """The unpacked itests folder, fetched and verified first when it is missing or stale."""
    target = destination(cache)
    if is_current(cache):
        return target
    index = index or os.environ.get("CHATGATE_PYPI_SIMPLE") or SIMPLE_INDEX
    unpack(_get(sdist_url(index)), target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        print(ensure(args.cache))
    except FetchError as exc:
        print(f"fetch_slixmpp_itests: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
