"""The data directory: created 0700, files 0600, whatever the umask; what an earlier
version left readable tightened at start, and nothing outside chatgate's reach.

Creation under a permissive umask runs in a subprocess (``os.umask(0)``): the
umask belongs to the whole process.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatgate.auth.internal import bump_credentials_stamp
from chatgate.datadir import secure_data_dir, tighten


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def run_with_umask_0(code: str) -> None:
    script = "import os\nos.umask(0)\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_made_under_umask_0_the_directory_and_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "var"
    run_with_umask_0(
        f"""
        from pathlib import Path
        from chatgate.auth.internal import bump_credentials_stamp
        from chatgate.datadir import secure_data_dir, write_private_file

        secure_data_dir(Path("{data_dir}"))
        write_private_file(Path("{data_dir}/secret"), b"x")
        bump_credentials_stamp(Path("{tmp_path}/b/var"))  # the CLI, on a fresh data dir
        """
    )
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "secret") == 0o600
    assert mode(tmp_path / "b" / "var") == 0o700
    assert mode(tmp_path / "b" / "var" / "credentials.stamp") == 0o600


def test_an_earlier_install_is_tightened_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    (data_dir / "certs").mkdir(parents=True)
    (data_dir / "certs" / "localhost.key").write_bytes(b"key")
    (data_dir / "chatgate.db").write_bytes(b"")
    tool = data_dir / "hook.sh"
    tool.write_text("#!/bin/sh\n")
    for path, bits in (
        (data_dir, 0o755),
        (data_dir / "certs", 0o755),
        (data_dir / "certs" / "localhost.key", 0o644),
        (data_dir / "chatgate.db", 0o644),
        (tool, 0o755),
    ):
        path.chmod(bits)
    with caplog.at_level(logging.WARNING, logger="chatgate.datadir"):
        secure_data_dir(data_dir)
    assert mode(data_dir) == mode(data_dir / "certs") == 0o700
    assert mode(data_dir / "certs" / "localhost.key") == mode(data_dir / "chatgate.db") == 0o600
    assert mode(tool) == 0o700  # the owner's bits are kept: only others lose theirs
    assert f"{data_dir / 'chatgate.db'}: permissions tightened from 0644 to 0600" in caplog.text
    caplog.clear()
    secure_data_dir(data_dir)
    assert "tightened" not in caplog.text  # once is enough


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "public.txt").write_text("x")
    outside.chmod(0o755)
    (outside / "public.txt").chmod(0o644)
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / "link").symlink_to(outside)
    (data_dir / "file-link").symlink_to(outside / "public.txt")
    secure_data_dir(data_dir)
    assert mode(outside) == 0o755
    assert mode(outside / "public.txt") == 0o644


def test_a_shared_sticky_directory_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-elses").write_text("x")
    (shared / "someone-elses").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="chatgate.datadir"):
        secure_data_dir(shared)
    assert mode(shared) == 0o1777
    assert mode(shared / "someone-elses") == 0o644
    assert "is a shared directory" in caplog.text


def test_tighten_ignores_missing_paths(tmp_path: Path) -> None:
    assert tighten(tmp_path / "missing") is False


def test_the_credentials_stamp_is_rewritten_private(tmp_path: Path) -> None:
    bump_credentials_stamp(tmp_path)
    stamp = tmp_path / "credentials.stamp"
    stamp.chmod(0o644)
    before = os.stat(stamp).st_ino
    bump_credentials_stamp(tmp_path)
    assert os.stat(stamp).st_ino != before  # replaced, so running servers notice
    assert mode(stamp) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.stamp"]  # no temporary left
