"""The interop harness's own parts, without network or servers: the sdist fetcher's checks,
the reading of unittest's and the servers' output, and the Prosody configuration it writes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from tests.interop import fetch_slixmpp_itests as fetch
from tests.interop import itest_runner, itest_servers

TOP = f"slixmpp-{fetch.VERSION}"


def make_sdist(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


GOOD = {
    f"{TOP}/itests/__init__.py": b"",
    f"{TOP}/itests/test_ping.py": b"# a test\n",
    f"{TOP}/run_integration_tests.py": b"# runner\n",
    f"{TOP}/slixmpp/__init__.py": b"# the library's sources: never unpacked\n",
    f"{TOP}/setup.py": b"",
}


def pin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(fetch, "SHA256", hashlib.sha256(data).hexdigest())


def test_unpacks_only_the_itests_and_ci_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_sdist(GOOD)
    pin(monkeypatch, data)
    target = fetch.destination(tmp_path)
    fetch.unpack(data, target)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == [
        fetch.STAMP,
        "itests/__init__.py",
        "itests/test_ping.py",
        "run_integration_tests.py",
    ]
    assert fetch.is_current(tmp_path)


def test_a_wrong_digest_unpacks_nothing(tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match="sha256"):
        fetch.unpack(make_sdist(GOOD), fetch.destination(tmp_path))
    assert not fetch.destination(tmp_path).exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind


@pytest.mark.parametrize(
    "members, links",
    [
        ({**GOOD, f"{TOP}/itests/../../evil.py": b"x"}, None),
        ({**GOOD, "/etc/evil.py": b"x"}, None),
        (GOOD, {f"{TOP}/itests/link.py": "/etc/passwd"}),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_unsafe_members_refuse_the_whole_sdist(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    members: dict[str, bytes],
    links: dict[str, str] | None,
) -> None:
    target = fetch.destination(tmp_path)
    target.mkdir(parents=True)
    (target / "previous").write_text("kept")
    data = make_sdist(members, links)
    pin(monkeypatch, data)
    with pytest.raises(fetch.FetchError):
        fetch.unpack(data, target)
    assert (target / "previous").read_text() == "kept"  # the previous copy is untouched
    assert not (tmp_path / "evil.py").exists()


def test_a_current_copy_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_sdist(GOOD)
    pin(monkeypatch, data)
    fetch.unpack(data, fetch.destination(tmp_path))

    def no_network(url: str, accept: str | None = None) -> bytes:
        raise AssertionError(f"fetched {url}")

    monkeypatch.setattr(fetch, "_get", no_network)
    assert fetch.ensure(tmp_path) == fetch.destination(tmp_path)


def test_the_index_must_list_the_pinned_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    def page(digest: str) -> bytes:
        entry = {"filename": fetch.FILENAME, "url": "https://files/x.tar.gz"}
        return json.dumps({"files": [{**entry, "hashes": {"sha256": digest}}]}).encode()

    monkeypatch.setattr(fetch, "_get", lambda url, accept=None: page(fetch.SHA256))
    assert fetch.sdist_url("https://index") == "https://files/x.tar.gz"
    monkeypatch.setattr(fetch, "_get", lambda url, accept=None: page("0" * 64))
    with pytest.raises(fetch.FetchError, match="not " + fetch.SHA256):
        fetch.sdist_url("https://index")
    monkeypatch.setattr(fetch, "_get", lambda url, accept=None: b"<html>")
    with pytest.raises(fetch.FetchError, match="PEP 691"):
        fetch.sdist_url("https://index")


FAILED_RUN = """\
test_nick (itests.test_muc.TestMUC.test_nick)
Check nicks ... FAIL

======================================================================
FAIL: test_nick (itests.test_muc.TestMUC.test_nick)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/x/case.py", line 10, in test_nick
    self.assertEqual(pres['status'], 'boooring')
AssertionError: '' != 'boooring'
+ boooring

----------------------------------------------------------------------
Ran 1 test in 1.3s

FAILED (failures=1)
"""

ERROR_RUN = """\
ERROR: test_x (itests.test_x.T.test_x)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/x/a.py", line 1, in f
    raise KeyError
KeyError

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/b.py", line 2, in g
    await wait_until('x')
TimeoutError

----------------------------------------------------------------------
Ran 1 test in 30.0s

FAILED (errors=1)
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("test_a ... ok\n\n---\nRan 1 test in 0.1s\n\nOK\n", ("pass", "")),
        (
            "test_a ... skipped 'Not in woodpecker CI'\n---\nRan 1 test\n\nOK (skipped=1)\n",
            ("skip", "Not in woodpecker CI"),
        ),
        (FAILED_RUN, ("fail", "AssertionError: '' != 'boooring' | + boooring")),
        (ERROR_RUN, ("error", "TimeoutError")),
        ("Segmentation fault\n", ("error", "no unittest summary: Segmentation fault")),
    ],
    ids=["ok", "skipped", "failure", "chained-error", "no-summary"],
)
def test_unittest_outcomes(text: str, expected: tuple[str, str]) -> None:
    assert itest_runner.parse_unittest_output(text) == expected


def test_server_tracebacks_are_listed_by_their_exception() -> None:
    log = (
        "INFO start\n"
        "ERROR asyncio: Exception in callback\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "    g()\n"
        "OpenSSL.SSL.Error: [('SSL routines', '', 'protocol is shutdown')]\n"
        "INFO later\n"
        "Traceback (most recent call last):\n"
        '  File "y.py", line 2, in h\n'
        "ValueError: bad\n"
    )
    assert itest_runner.traceback_summaries(log) == [
        "OpenSSL.SSL.Error: [('SSL routines', '', 'protocol is shutdown')]",
        "ValueError: bad",
    ]


def test_prosody_config_overrides_each_option_once(tmp_path: Path) -> None:
    """slixmpp's CI file, with the throwaway paths set once (Prosody rejects nothing set twice,
    but its duplicate-option warning fails on some paths)."""
    itests = tmp_path / "itests"
    itests.mkdir()
    (itests / "prosody.cfg.lua").write_text(
        'daemonize = true\npidfile = "/run/prosody/prosody.pid"\nmodules_enabled = { "mam" }\n'
        'log = {{levels = {min = "debug"}, to = "console"}}\ncertificates = "certs"\n\n'
        'VirtualHost "prosody"\n\nComponent "muc.prosody" "muc"\n'
    )
    text = itest_servers.ProsodyItestServer(itests).config_text(tmp_path / "w")
    for option in ("daemonize", "pidfile", "log", "certificates", "data_path"):
        assert len(re.findall(rf"^{option} = ", text, re.MULTILINE)) == 1, option
    assert 'modules_enabled = { "mam" }' in text
    assert text.index("daemonize = false") < text.index('VirtualHost "prosody"')
    assert text.rstrip().endswith('Component "muc.prosody" "muc"')


def test_workers_have_distinct_accounts_and_the_first_has_slixmpp_ci_names() -> None:
    first = itest_servers.account_pair(0)
    assert [a.jid for a in first] == ["slix-ci-1@prosody", "slix-ci-2@prosody"]
    assert [a.password for a in first] == ["slix-ci-1-pass", "slix-ci-2-pass"]
    jids = [a.jid for w in range(8) for a in itest_servers.account_pair(w)]
    assert len(set(jids)) == 16


def test_only_selects_by_dotted_prefix() -> None:
    ping, component = "itests.test_ping.TestPing.test_ping", "itests.test_component.C.test_ping"
    assert itest_runner.selected(ping, [])
    assert itest_runner.selected(ping, ["test_ping"])
    assert not itest_runner.selected(component, ["test_ping"])
    assert itest_runner.selected(ping, ["test_ping.TestPing.test_ping"])
    assert not itest_runner.selected("itests.test_pingx.T.t", ["test_ping"])


def test_chatgate_serves_the_ci_component_as_prosody_does(tmp_path: Path) -> None:
    """slixmpp's test_component connects to port 5347 as slixmpp.prosody with the
    secret 'secret' (its prosody.cfg.lua): chatgate's itest configuration says the same;
    and test_sos finds the status file at the address the configuration publishes."""
    from chatgate.config import load_config

    path = tmp_path / "chatgate.toml"
    path.write_text(
        itest_servers.CHATGATE_CONFIG.format(
            domain=itest_servers.DOMAIN,
            data=tmp_path / "var",
            starttls=itest_servers.STARTTLS_PORT,
            direct=itest_servers.DIRECT_TLS_PORT,
            component=itest_servers.COMPONENT_PORT,
            status=itest_servers.STATUS_PORT,
        )
    )
    config = load_config(path)
    assert config.modules["disco"]["status_addresses"] == [
        f"http://{itest_servers.DOMAIN}:{itest_servers.STATUS_PORT}/status.json"
    ]
    [component] = config.components
    assert component.domain == f"slixmpp.{itest_servers.DOMAIN}"
    assert config.component_secret(component) == "secret"
    assert config.component_listener.port == itest_servers.COMPONENT_PORT == 5347
    assert config.component_parent(component) == itest_servers.DOMAIN
