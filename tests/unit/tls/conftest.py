"""What the TLS unit tests share: a server certificate, a client CA, and a
`ServerTls` built the way the server builds it (`server_tls`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatgate.config import TlsConfig
from chatgate.tls import build_server_tls, generate_self_signed
from chatgate.xmpp.transports.openssl_tls import ServerTls
from tests.certgen import Issued, make_ca


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("server")
    cert, key = folder / "localhost.crt", folder / "localhost.key"
    generate_self_signed("localhost", cert, key)
    return cert, key


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Issued, Path]:
    authority = make_ca()
    path, _ = authority.write(tmp_path_factory.mktemp("ca"), "ca")
    return authority, path


def server_tls(server_cert: tuple[Path, Path], **options: Any) -> ServerTls:
    """`[tls]` `options` (plus `trust_files`) over the module's server certificate."""
    trust = options.pop("trust_files", [])
    return build_server_tls(TlsConfig(**options), *server_cert, trust_files=trust, trust_dirs=[])
