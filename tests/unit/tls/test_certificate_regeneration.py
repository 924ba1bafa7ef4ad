"""A virtual host added to a server with a generated certificate (issue 10, item 18):
the certificate is regenerated to name it, and the log says so loudly, naming the
old and the new fingerprints, since clients that trusted the old one stop matching.
`chatgate check` tells it before the start that does it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from typer.testing import CliRunner

from chatgate.cli import app
from chatgate.config import load_config
from chatgate.tls import ensure_certificate

BASE = """
[server]
domain = "localhost"
data_dir = "var"
"""


def fingerprint(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":")


def write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "chatgate.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_a_new_host_regenerates_the_certificate_with_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, _key = ensure_certificate(load_config(write(tmp_path, BASE)))
    old = fingerprint(cert)
    config = write(tmp_path, BASE + '[hosts."example.net"]\n')
    with caplog.at_level(logging.INFO, logger="chatgate.tls"):
        cert_again, _ = ensure_certificate(load_config(config))
    assert cert_again == cert
    new = fingerprint(cert)
    assert new != old
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert "REPLACED" in message
    assert "example.net" in message  # the name that was missing
    assert f"old sha256 {old}" in message
    assert f"new sha256 {new}" in message
    assert str(cert) in message


def test_an_unchanged_host_list_keeps_the_certificate_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write(tmp_path, BASE + '[hosts."example.net"]\n'))
    cert, _key = ensure_certificate(config)
    before = fingerprint(cert)
    with caplog.at_level(logging.INFO, logger="chatgate.tls"):
        ensure_certificate(config)
    assert fingerprint(cert) == before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_check_says_the_certificate_will_be_replaced(tmp_path: Path) -> None:
    cert, _key = ensure_certificate(load_config(write(tmp_path, BASE)))
    old = fingerprint(cert)
    config = write(tmp_path, BASE + '[hosts."example.net"]\n')
    result = CliRunner().invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "REPLACED at the next start" in out
    assert "does not name example.net" in out
    assert fingerprint(cert) == old  # check itself changes nothing
