"""The web-asset fetcher (`chatgate.webassets`) on tarballs built here, never the network:
a digest that differs from the lock, a member that would land outside the destination
or a link are refused and leave nothing behind; a current copy is not fetched again; a
changed file or lock entry is; the committed lock pins every package by sha512."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chatgate import webassets
from chatgate.webassets import AssetError, Package

ROOT = Path(__file__).resolve().parents[2]

FILES = {
    "package/dist/lib.min.js": b"window.Lib = {};\n",
    "package/dist/lib.js": b"// unminified: not selected\n",
    "package/dist/chunks/locales/de.js": b"export default {};\n",
    "package/src/index.js": b"// source: not selected\n",
    "package/LICENSE": b"MIT\n",
}


def tarball(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A gzipped tar like npm's, with `files` and symbolic `links` ({name: target});
    the same arguments give the same bytes (gzip's header time is fixed)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return gzip.compress(out.getvalue(), mtime=0)


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def package_for(data: bytes, **changes: object) -> Package:
    fields: dict[str, object] = {
        "name": "lib",
        "version": "1.0.0",
        "tarball": "https://registry.npmjs.org/lib/-/lib-1.0.0.tgz",
        "integrity": sri(data),
        "root": "package/dist",
        "include": ("lib.min.js", "chunks/*"),
        "licenses": ("package/LICENSE",),
    }
    fields.update(changes)
    return Package(**fields)  # type: ignore[arg-type]


class Registry:
    """Stands in for the network: serves one tarball and counts the requests."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.requests.append(url)
        return self.data


def test_selected_files_and_licenses_are_unpacked_with_a_stamp(tmp_path: Path) -> None:
    data = tarball(FILES)
    registry = Registry(data)
    assert webassets.ensure(package_for(data), tmp_path, registry) is True
    folder = tmp_path / "lib"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        webassets.STAMP,
        "LICENSE",
        "chunks/locales/de.js",
        "lib.min.js",
    ]
    assert (folder / "lib.min.js").read_bytes() == FILES["package/dist/lib.min.js"]
    assert (folder / "lib.min.js").stat().st_mode & 0o777 == 0o644
    assert webassets.installed_version(tmp_path, "lib") == "1.0.0"
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]  # no staging folder left


def test_a_current_copy_is_not_fetched_again(tmp_path: Path) -> None:
    data = tarball(FILES)
    registry = Registry(data)
    webassets.ensure(package_for(data), tmp_path, registry)
    assert webassets.ensure(package_for(data), tmp_path, registry) is False
    assert len(registry.requests) == 1


def test_a_modified_file_or_a_changed_lock_entry_is_fetched_again(tmp_path: Path) -> None:
    data = tarball(FILES)
    registry = Registry(data)
    webassets.ensure(package_for(data), tmp_path, registry)
    (tmp_path / "lib" / "lib.min.js").write_text("tampered")
    assert webassets.ensure(package_for(data), tmp_path, registry) is True
    assert (tmp_path / "lib" / "lib.min.js").read_bytes() == FILES["package/dist/lib.min.js"]
    wider = package_for(data, include=("lib.min.js", "chunks/*", "lib.js"))
    assert webassets.ensure(wider, tmp_path, registry) is True
    assert (tmp_path / "lib" / "lib.js").exists()
    assert len(registry.requests) == 3


def test_an_integrity_mismatch_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    data = tarball(FILES)
    other = tarball({**FILES, "package/dist/lib.min.js": b"window.Evil = {};\n"})
    with pytest.raises(AssetError, match="integrity mismatch"):
        webassets.ensure(package_for(data), tmp_path / "dest", Registry(other))
    assert not (tmp_path / "dest").exists()


def test_a_failed_update_keeps_the_previous_copy(tmp_path: Path) -> None:
    data = tarball(FILES)
    webassets.ensure(package_for(data), tmp_path, Registry(data))
    newer = tarball({**FILES, "package/dist/lib.min.js": b"v2"})
    with pytest.raises(AssetError):
        webassets.ensure(package_for(newer, version="2.0.0"), tmp_path, Registry(data))
    assert (tmp_path / "lib" / "lib.min.js").read_bytes() == FILES["package/dist/lib.min.js"]
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]


@pytest.mark.parametrize(
    "name",
    [
        "package/dist/../../../escaped.js",
        "../escaped.js",
        "/tmp/escaped.js",
        "package/dist/chunks/..\\..\\escaped.js",
    ],
)
def test_a_member_outside_the_destination_refuses_the_whole_archive(
    tmp_path: Path, name: str
) -> None:
    data = tarball({**FILES, name: b"escaped"})
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(AssetError, match="unsafe path"):
        webassets.ensure(package_for(data), dest, Registry(data))
    assert not list(tmp_path.rglob("escaped.js"))
    assert not (dest / "lib").exists()


def test_a_selected_link_is_refused(tmp_path: Path) -> None:
    data = tarball(FILES, links={"package/dist/chunks/passwd": "/etc/passwd"})
    with pytest.raises(AssetError, match="link"):
        webassets.ensure(package_for(data), tmp_path, Registry(data))
    assert not (tmp_path / "lib").exists()


def test_a_pattern_matching_nothing_is_an_error(tmp_path: Path) -> None:
    """A typo in the lock, or a release that moved its files, must not pass silently."""
    data = tarball(FILES)
    typo = package_for(data, include=("lib.min.js", "chunk/*"))
    with pytest.raises(AssetError, match="nothing matches"):
        webassets.ensure(typo, tmp_path, Registry(data))


def test_integrity_strings() -> None:
    data = b"abc"
    webassets.check_integrity(data, sri(data))
    sha256 = "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    webassets.check_integrity(data, f"sha1-ignored {sha256}")
    with pytest.raises(AssetError, match="no sha512"):
        webassets.check_integrity(data, "sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")
    with pytest.raises(AssetError, match="integrity mismatch"):
        webassets.check_integrity(b"abd", sri(data))


def test_the_committed_lock_pins_each_package_by_sha512() -> None:
    packages = webassets.load_lock(ROOT / webassets.DEFAULT_LOCK)
    assert {p.name for p in packages} >= {"converse.js", "strophe.js"}
    for p in packages:
        assert p.integrity.startswith("sha512-"), p.name
        assert p.tarball == f"{webassets.NPM_REGISTRY}/{p.name}/-/{p.name}-{p.version}.tgz"
        assert p.include and p.licenses, p.name


def test_check_command_reports_missing_packages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tarball(FILES)
    lock = tmp_path / "lock.json"
    entry = package_for(data).describe()
    entry.pop("name")
    lock.write_text(json.dumps({"packages": {"lib": entry}}))
    dest = tmp_path / "dist"
    assert webassets.main(["check", str(dest), "--lock", str(lock)]) == 1
    assert "lib: missing" in capsys.readouterr().err
    webassets.ensure(webassets.load_lock(lock)[0], dest, Registry(data))
    assert webassets.main(["check", str(dest), "--lock", str(lock)]) == 0


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server standing in for the registry (or a mirror)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "lib-1.0.0.tgz").write_bytes(tarball(FILES))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_download_over_http_and_a_final_404(local_registry: str) -> None:
    assert webassets.download(f"{local_registry}/lib-1.0.0.tgz") == tarball(FILES)
    with pytest.raises(AssetError, match="HTTP 404"):
        webassets.download(f"{local_registry}/missing.tgz", attempts=1)


def test_a_mirror_replaces_the_registry_prefix(
    local_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATGATE_NPM_REGISTRY", local_registry + "/")
    data = webassets.download(f"{webassets.NPM_REGISTRY}/lib-1.0.0.tgz")
    webassets.check_integrity(data, sri(tarball(FILES)))


def test_a_corrupt_tarball_is_an_asset_error(tmp_path: Path) -> None:
    data = tarball(FILES)[:200]
    with pytest.raises(AssetError, match="not a readable tar archive"):
        webassets.ensure(package_for(data), tmp_path, Registry(data))
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["run", "test"])
def test_make_run_and_make_test_fetch_the_web_assets_first(target: str) -> None:
    """Before the server starts or the tests run, with the system Python (no venv needed)."""
    plan = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    fetch = plan.index("-m chatgate.webassets fetch web/dist")
    last = "chatgate serve" if target == "run" else "pytest"
    assert fetch < plan.index(last)
